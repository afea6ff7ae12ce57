from collections import Counter

import torch

D = torch.float64


def assert_all_close(actual, expected, rtol=1e-10, atol=1e-12):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol)


def states_of(h):
    return h if isinstance(h, tuple) else (h,)


def count_kernel_launches(monkeypatch) -> Counter:
    """Count the fused backend's Triton kernel launches by kernel name, from now on."""
    from rnnkit.backends import _triton_common

    counts, launch = Counter(), _triton_common.launch

    def counted(kernel, *args, **flags):
        counts[kernel.fn.__name__] += 1
        launch(kernel, *args, **flags)

    monkeypatch.setattr(_triton_common, "launch", counted)
    return counts
