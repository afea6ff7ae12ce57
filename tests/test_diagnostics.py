"""gradient_flow against ∂L/∂h_t computed by stepping a cell by hand."""

import torch

import rnnkit
from rnnkit.diagnostics import gradient_flow, plot_gradient_flow


def _by_hand(cell, x, loss_fn):
    """Step ``cell`` over x (T, B, I), keeping each h_t's gradient."""
    h = torch.zeros(x.shape[1], cell.hidden_size, dtype=x.dtype)
    c = torch.zeros_like(h)
    hs = []
    for t in range(x.shape[0]):
        if isinstance(cell, rnnkit.LSTMCell):
            h, c = cell(x[t], (h, c))
        else:
            h = cell(x[t], h)
        h.retain_grad()
        hs.append(h)
    loss_fn(torch.stack(hs)).backward()
    return torch.tensor([float(h.grad.norm()) for h in hs], dtype=torch.float64)


def test_matches_cell_stepped_by_hand():
    torch.manual_seed(0)
    x = torch.randn(7, 3, 4, dtype=torch.float64)
    loss_fn = lambda y: (y[-1] ** 2).sum() + y[2].sum()  # gradient enters at t = 6 and 2
    for layer_cls, cell_cls in [(rnnkit.RNN, rnnkit.RNNCell), (rnnkit.LSTM, rnnkit.LSTMCell),
                                (rnnkit.GRU, rnnkit.GRUCell)]:
        layer = layer_cls(4, 5, dtype=torch.float64)
        cell = cell_cls(4, 5, dtype=torch.float64)
        cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
        flow = gradient_flow(layer, x, loss_fn)
        assert flow.shape == (1, 7)
        torch.testing.assert_close(flow[0].double(), _by_hand(cell, x, loss_fn),
                                   rtol=1e-6, atol=0)


def test_reverse_direction_is_in_input_order():
    torch.manual_seed(1)
    layer = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    flow = gradient_flow(layer, x, lambda y: y[-1].sum())  # loss sees only position T-1
    # Top layer (rows 2, 3): the reverse direction meets position T-1 first, so only
    # h at that position reaches the loss; the forward direction is reached at every t.
    assert flow[3, -1] > 0 and torch.all(flow[3, :-1] == 0)
    assert torch.all(flow[2] > 0)
    # The lower layer feeds every top-layer step, so all of its states matter.
    assert torch.all(flow[:2] > 0)


def test_vanishing_in_rnn_not_in_lstm_with_forget_bias():
    """A tanh RNN loses the gradient geometrically; an LSTM with σ(f) ≈ 0.95 keeps it."""
    torch.manual_seed(2)
    x = torch.randn(80, 16, 8)
    loss_fn = lambda y: y[-1].pow(2).sum()
    rnn = gradient_flow(rnnkit.RNN(8, 32), x, loss_fn)[0]
    lstm = gradient_flow(rnnkit.LSTM(8, 32, forget_bias=3.0), x, loss_fn)[0]
    assert rnn[0] / rnn[-1] < 1e-8
    assert lstm[0] / lstm[-1] > 1e-3


def test_plot_is_written(tmp_path):
    path = tmp_path / "sub" / "flow.png"
    plot_gradient_flow({"a": torch.tensor([1.0, 0.1, 0.0])}, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
