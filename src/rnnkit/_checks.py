"""Argument checks that fail with one line naming what was expected and what was given."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def probability(name: str, value, *, allow_one: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    upper_ok = value <= 1 if allow_one else value < 1
    if not (value >= 0 and upper_ok):
        bound = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be a probability in {bound}, got {value}")
    return float(value)


def tensor(name: str, value) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def same_dtype(name: str, value: Tensor, expected: torch.dtype) -> None:
    if value.dtype != expected:
        raise TypeError(f"{name} must have dtype {expected} like the weights, got {value.dtype}")


def shape(name: str, value: Tensor, expected: tuple[int, ...], layout: str) -> None:
    if tuple(value.shape) != tuple(expected):
        raise ValueError(
            f"expected {name} of shape {layout} = {tuple(expected)}, got {tuple(value.shape)}"
        )
