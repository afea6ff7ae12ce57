"""Checkpoints written atomically and read without unpickling arbitrary objects.

A checkpoint is one ``torch.save`` file holding plain data only (tensors, numbers,
strings, lists, dicts): the model, optimiser and scheduler states, the RNG states, the
carried recurrent state, the step and the run's config. It is written to a temporary
file beside the target, flushed to disk, then renamed over it, so the file on disk is
always a whole checkpoint. It is read with ``weights_only=True``: a checkpoint from a
stranger cannot run code.
"""

from __future__ import annotations

import os
import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import torch

from rnnkit._io import atomic_path

FORMAT = 1


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plain data and tensors) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **payload}, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint; ``ValueError`` (one line) if it is missing, corrupt or foreign."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch warns before refusing; the refusal says enough
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():
            raise ValueError(f"{path} holds Python objects other than plain data; it is not "
                             "an rnnkit checkpoint and was not loaded (it could run code)"
                             ) from None
        raise ValueError(f"checkpoint {path} is corrupt or not an rnnkit checkpoint "
                         "(not a readable torch file)") from None
    except Exception as e:  # a truncated zip, garbage bytes: unreadable
        raise ValueError(f"checkpoint {path} is corrupt or not an rnnkit checkpoint "
                         f"({_first_line(e)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an rnnkit checkpoint (format {FORMAT})")
    return payload


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:120] if text else type(e).__name__


def rng_states() -> dict[str, Any]:
    """Every random generator a run draws from, as plain data."""
    states = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
