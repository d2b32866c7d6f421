"""Shared test fixtures: the cell variants every layer test runs over, and a PyTorch twin of
the word-level models (embedding, recurrent stack, output layer) with the same weights."""

from __future__ import annotations

import pytest

# every recurrent cell and option that changes its equations, as (cell, options)
CELLS = [
    pytest.param("rnn", {"nonlinearity": "tanh"}, id="rnn-tanh"),
    pytest.param("rnn", {"nonlinearity": "relu"}, id="rnn-relu"),
    pytest.param("gru", {"reset_after": True}, id="gru-after"),
    pytest.param("gru", {"reset_after": False}, id="gru-before"),
    pytest.param("lstm", {"peephole": False}, id="lstm"),
    pytest.param("lstm", {"peephole": True}, id="lstm-peephole"),
]


KERNELS = ["numpy", "numba"]


@pytest.fixture(params=KERNELS)
def kernels(request, monkeypatch):
    """Run the test once on the NumPy cells and once on the compiled kernels (skipped where
    numba is missing), through ``RNNKIT_KERNELS``: the one switch the dispatch reads."""
    if request.param == "numba":
        pytest.importorskip("numba")
        pytest.importorskip("scipy")
    monkeypatch.setenv("RNNKIT_KERNELS", request.param)
    return request.param


@pytest.fixture
def torch_twin():
    """The :class:`TorchTwin` class; skips where PyTorch is absent."""
    pytest.importorskip("torch")
    return TorchTwin


class TorchTwin:
    """A word-level model's embedding, recurrent stack and output layer as PyTorch tensors
    with the same weights (import torch first), to compare a loss and every gradient with."""

    def __init__(self, model):
        import torch

        from rnnkit.interop import to_torch

        self.torch = torch
        self.W_e = torch.tensor(model.embed.param["W"], requires_grad=True)
        self.W_o = torch.tensor(model.out.param["W"], requires_grad=True)
        self.b_o = torch.tensor(model.out.param["b"], requires_grad=True)
        self.rnn = to_torch(model.rnn)

    def recurrent(self, ids, lengths):
        """``(out (B, T, dirs*H) padded with zeros, final state)`` of the embedded ``ids``,
        run as packed sequences."""
        nn = self.torch.nn.utils.rnn
        packed = nn.pack_padded_sequence(self.W_e[self.torch.tensor(ids)],
                                         self.torch.tensor(lengths), batch_first=True,
                                         enforce_sorted=False)
        out, final = self.rnn(packed)
        return nn.pad_packed_sequence(out, batch_first=True)[0], final

    def logits(self, v):
        return v @ self.W_o + self.b_o

    def grads(self) -> dict:
        """The gradients after ``backward``, under the model's parameter names."""
        from rnnkit.interop import torch_grads_to_rnnkit

        want = {"embed.W": self.W_e.grad.numpy(), "out.W": self.W_o.grad.numpy(),
                "out.b": self.b_o.grad.numpy()}
        want.update({f"rnn.{k}": v for k, v in torch_grads_to_rnnkit(self.rnn).items()})
        return want
