"""The options of each ``rnnkit`` subcommand, with their help."""

from __future__ import annotations

import argparse
import textwrap


def add_train(sub, run, tasks, config_keys) -> None:
    p = sub.add_parser(
        "train", help="train a model (charlm: characters, wordlm: words, classify: labels "
                      "of texts, tag: a tag per word)",
        # the raw formatter keeps the config-key table as written: wrap the prose here
        description=textwrap.fill(
            "Train a language model with truncated BPTT, a text classifier or a sequence "
            "tagger. Settings come from --config "
            "(default: configs/<task>/default.toml), then from the options below, then from "
            "--section.key=value overrides.", 79),
        epilog=config_keys(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=tasks, help="charlm (character level, bits per character), "
                                               "wordlm (word level, perplexity), classify "
                                               "(a label per text: accuracy, macro-F1) or tag "
                                               "(a tag per word: token accuracy, per-tag F1)")
    p.add_argument("--config", help="a TOML config file (sections [data], [model], [train], "
                                    "and [sample] or [tokenizer])")
    p.add_argument("--data", help="charlm/wordlm: a UTF-8 text file of yours, 'shakespeare' or "
                                  "'brown' (sets data.corpus); classify: a .csv, .tsv or "
                                  ".jsonl file, a folder with one subfolder per class, or "
                                  "'mr', 'spam', 'bbc' (sets data.train); tag: a CoNLL, "
                                  "CoNLL-U or word/TAG file, 'brown', 'porttinari' or "
                                  "'petrogold' "
                                  "(sets data.corpus)")
    add_columns(p, "classify: ")
    p.add_argument("--out", help="run directory for checkpoints, metrics and plots "
                                 "(default: runs/<task>)")
    p.add_argument("--max-steps", type=int, help="optimiser steps in all (train.max_steps); "
                                                 "with --resume, the new total")
    p.add_argument("--time-budget", type=float,
                   help="stop after this many seconds of training (train.time_budget)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly where its checkpoint stopped, "
                        "with the run's own settings (--config is ignored; options and "
                        "--section.key=value still apply, [model] must stay the same)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON summary on stdout (step, train_loss, val_loss, "
                        "val_bpc or val_ppl; classify and tag: val_ and test_accuracy, "
                        "val_ and test_macro_f1; out) and no progress bar")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_sample(sub, run) -> None:
    p = sub.add_parser("sample", help="generate text from a trained run",
                       description="Generate text from a run's best checkpoint.")
    p.add_argument("dir", help="the run directory (train's --out)")
    p.add_argument("--prompt", help="text to continue (default: the config's sample.prompt)")
    p.add_argument("--length", type=int, help="tokens to generate (default: sample.length)")
    p.add_argument("--temperature", type=float,
                   help="softmax temperature; 0 always picks the likeliest token")
    p.add_argument("--top-k", type=int, help="sample among the k likeliest tokens only")
    p.add_argument("--top-p", type=float,
                   help="nucleus sampling: the smallest set of tokens holding this probability")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed: the same seed gives the same text (default: 0)")
    p.set_defaults(func=run)


def add_columns(p, prefix: str = "") -> None:
    p.add_argument("--text-column", help=f"{prefix}the column (CSV/TSV header, JSON key) "
                                         "holding the text (data.text_column)")
    p.add_argument("--label-column", help=f"{prefix}the column holding the label "
                                          "(data.label_column)")


def add_eval(sub, run) -> None:
    p = sub.add_parser("eval", help="test-split metrics of a trained run",
                       description="Evaluate a run's best checkpoint on its data's test "
                                   "split, or on a whole file. A classifier also writes "
                                   "metrics.json, confusion.png and misclassified.jsonl into "
                                   "DIR/report (DIR/report-<file name> with --data).")
    p.add_argument("dir", help="the run directory (train's --out)")
    p.add_argument("--data", help="evaluate on this file instead of the test split (a UTF-8 "
                                  "text for a language model; labelled examples for a "
                                  "classifier)")
    add_columns(p, "classifier, with --data: ")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def add_predict(sub, run) -> None:
    p = sub.add_parser("predict", help="label texts with a trained classifier or tagger",
                       description="Label texts with a run's best checkpoint: a classifier "
                                   "gives the likeliest label and its probability for each "
                                   "text, a tagger each word with its tag (word/TAG).")
    p.add_argument("dir", help="the run directory (train's --out)")
    p.add_argument("texts", nargs="*", help="texts to label (or --input)")
    p.add_argument("--input", help="a file of texts: one a line (.txt), or a .csv, .tsv or "
                                   ".jsonl table (see --text-column)")
    p.add_argument("--text-column", help="--input table: the column holding the text "
                                         "(default: text)")
    p.add_argument("--output", help="write the predictions, with every label's probability, "
                                    "to this .jsonl, .csv or .tsv file")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout: the predictions, or with --output "
                        "a summary")
    p.set_defaults(func=run)


def add_vanishing(sub, run) -> None:
    from rnnkit.demo import DemoConfig

    defaults = DemoConfig()
    p = sub.add_parser(
        "vanishing",
        help="vanishing gradients: train a plain RNN and an LSTM on one task",
        description="Train a plain RNN and an LSTM to recall the first symbol of a long "
                    "sequence; print their accuracy and how ‖∂L/∂h_t‖ decays through time, "
                    "and save the gradient-flow plot.")
    p.add_argument("--out", default="runs/vanishing",
                   help="directory for the plot (default: %(default)s)")
    p.add_argument("--steps", type=int, default=defaults.steps,
                   help="sequence length T, the distance to remember (default: %(default)s)")
    p.add_argument("--train-steps", type=int, default=defaults.train_steps,
                   help="optimisation steps per model (default: %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="random seed (default: %(default)s)")
    p.set_defaults(func=run)
