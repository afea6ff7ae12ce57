"""Data: vocabularies, corpora from the package registries, and batching for recurrent models."""
