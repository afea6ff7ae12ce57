"""Every layer against torch.nn with copied weights: outputs, states, every gradient."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pack_sequence

import rnnkit
from conftest import D, assert_all_close, states_of

KINDS = {
    "rnn_tanh": (rnnkit.RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnkit.RNN, nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (rnnkit.LSTM, nn.LSTM, {}),
    "lstm_proj": (rnnkit.LSTM, nn.LSTM, {"proj_size": 3}),
    "gru": (rnnkit.GRU, nn.GRU, {}),
}
BACKENDS = ["reference", "fused", "native", "auto"]
# (num_layers, bidirectional, batch_first, with hx, bias): pairwise-style coverage
SHAPES = [(1, False, False, False, True), (2, True, False, True, True),
          (2, False, True, True, False), (1, True, True, False, True)]


def make_pair(kind, backend, layers, bidirectional, batch_first, bias=True, from_torch=True):
    ours_cls, torch_cls, kw = KINDS[kind]
    args = dict(input_size=4, hidden_size=5, num_layers=layers, bias=bias,
                batch_first=batch_first, bidirectional=bidirectional, dtype=D, **kw)
    ours, theirs = ours_cls(backend=backend, **args), torch_cls(**args)
    # Both directions of state_dict travel: torch.nn -> rnnkit, or rnnkit -> torch.nn.
    if from_torch:
        ours.load_state_dict(theirs.state_dict())
    else:
        theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def outputs_and_grads(module, x, hx):
    out, h = module(x, hx)
    out_t = out.data if isinstance(out, nn.utils.rnn.PackedSequence) else out
    states = states_of(h)
    loss = (out_t * torch.linspace(-1, 1, out_t.numel(), dtype=D).view_as(out_t)).sum()
    loss = loss + sum((s.sin()).sum() for s in states)
    leaves = [x.data if isinstance(x, nn.utils.rnn.PackedSequence) else x]
    leaves += [s for s in states_of(hx)] if hx is not None else []
    grads = torch.autograd.grad(loss, leaves + list(module.parameters()))
    return [out_t, *states, *grads]


def initial_state(kind, layers, bidirectional, batch, unbatched=False):
    d = 2 if bidirectional else 1
    out = 3 if kind == "lstm_proj" else 5
    shape = (layers * d, out) if unbatched else (layers * d, batch, out)
    h = torch.randn(shape, dtype=D, requires_grad=True)
    if kind.startswith("lstm"):
        cshape = (layers * d, 5) if unbatched else (layers * d, batch, 5)
        return (h, torch.randn(cshape, dtype=D, requires_grad=True))
    return h


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "L{}-bi{}-bf{}-hx{}-bias{}".format(*s))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_batched(kind, backend, shape):
    layers, bidirectional, batch_first, with_hx, bias = shape
    torch.manual_seed(0)
    ours, theirs = make_pair(kind, backend, layers, bidirectional, batch_first, bias,
                             from_torch=layers == 1)
    x = torch.randn((3, 6, 4) if batch_first else (6, 3, 4), dtype=D, requires_grad=True)
    hx = initial_state(kind, layers, bidirectional, 3) if with_hx else None
    assert_all_close(outputs_and_grads(ours, x, hx), outputs_and_grads(theirs, x, hx))


@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_unbatched(kind, backend, with_hx):
    torch.manual_seed(1)
    ours, theirs = make_pair(kind, backend, 2, True, False)
    x = torch.randn(6, 4, dtype=D, requires_grad=True)
    hx = initial_state(kind, 2, True, 1, unbatched=True) if with_hx else None
    assert_all_close(outputs_and_grads(ours, x, hx), outputs_and_grads(theirs, x, hx))


@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_packed(kind, backend, enforce_sorted):
    torch.manual_seed(2)
    ours, theirs = make_pair(kind, backend, 2, True, False)
    lengths = [6, 4, 4, 1] if enforce_sorted else [4, 6, 1, 4]
    seqs = [torch.randn(n, 4, dtype=D) for n in lengths]
    packed = pack_sequence(seqs, enforce_sorted=enforce_sorted)
    packed.data.requires_grad_()
    hx = initial_state(kind, 2, True, 4)
    a, b = outputs_and_grads(ours, packed, hx), outputs_and_grads(theirs, packed, hx)
    assert_all_close(a, b)
    out, _ = ours(packed, hx)
    assert torch.equal(out.batch_sizes, packed.batch_sizes)
    if not enforce_sorted:
        assert torch.equal(out.sorted_indices, packed.sorted_indices)


@pytest.mark.parametrize("backend", ["reference", "fused", "native"])
def test_lengths_equal_torch_packed(backend):
    """lengths= on a padded batch equals torch.nn fed the PackedSequence."""
    torch.manual_seed(3)
    for kind in KINDS:
        ours, theirs = make_pair(kind, backend, 2, True, True)
        x = torch.randn(4, 6, 4, dtype=D, requires_grad=True)
        lengths = torch.tensor([3, 6, 1, 5])
        out, h = ours(x, lengths=lengths)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        p_out, p_h = theirs(packed)
        p_out, _ = nn.utils.rnn.pad_packed_sequence(p_out, batch_first=True, total_length=6)
        assert_all_close([out, *states_of(h)], [p_out, *states_of(p_h)])
        g1 = torch.autograd.grad(out.sum() + states_of(h)[0].sum(), [x, *ours.parameters()])
        g2 = torch.autograd.grad(p_out.sum() + states_of(p_h)[0].sum(),
                                 [x, *theirs.parameters()])
        assert_all_close(g1, g2)


def test_dropout_between_layers_draws_like_torch():
    """Inter-layer dropout uses torch's generator in torch.nn's order (on CPU)."""
    for kind in ("lstm", "gru"):
        results = []
        for backend in ("reference", "fused", "native", None):
            if backend is None:
                m = KINDS[kind][1](4, 5, num_layers=3, dropout=0.5, bidirectional=True, dtype=D)
            else:
                m = KINDS[kind][0](4, 5, num_layers=3, dropout=0.5, bidirectional=True,
                                   dtype=D, backend=backend)
            torch.manual_seed(9)
            m.load_state_dict(results[0][0].state_dict()) if results else None
            x = torch.randn(6, 3, 4, dtype=D)
            torch.manual_seed(10)
            results.append((m, m(x)[0]))
        for _, out in results[1:]:
            torch.testing.assert_close(out, results[0][1], rtol=1e-10, atol=1e-12)


def test_all_weights_and_flat_order_match_torch():
    ours, theirs = make_pair("lstm_proj", "auto", 2, True, False)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.all_weights, theirs.all_weights):
        assert [t.shape for t in a] == [t.shape for t in b]
        assert all(torch.equal(p, q) for p, q in zip(a, b))
