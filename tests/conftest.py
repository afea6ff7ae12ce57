import torch

D = torch.float64


def assert_all_close(actual, expected, rtol=1e-10, atol=1e-12):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol)


def states_of(h):
    return h if isinstance(h, tuple) else (h,)
