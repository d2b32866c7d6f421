"""Identity initialisation of ReLU RNNs (IRNN; Le, Jaitly & Hinton 2015)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.errors import ConfigError
from rnnkit.nn.recurrent import GRU, LSTM, RNN


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.01])
def test_identity_init_gives_scaled_identity(scale):
    rnn = RNN(3, 6, num_layers=2, bidirectional=True, nonlinearity="relu", init="identity",
              init_scale=scale, dtype="float64", rng=0)
    for name, p in rnn.parameters().items():
        if name.endswith("W_h"):
            np.testing.assert_array_equal(p, scale * np.eye(6))
        elif name.endswith(".b"):
            np.testing.assert_array_equal(p, 0.0)
        else:  # W_x keeps its random (Xavier) initialisation
            assert np.abs(p).max() > 0
    W_x = [p for n, p in rnn.parameters().items() if n.endswith("W_x")]
    assert [w.shape for w in W_x] == [(3, 6), (3, 6), (12, 6), (12, 6)]


def _no_input(rnn: RNN) -> RNN:
    for name, p in rnn.parameters().items():
        if name.endswith("W_x"):
            p[...] = 0.0
    return rnn


def test_irnn_keeps_a_nonnegative_state_and_its_gradient():
    """With W_h = I and no input, ReLU(h I) = h for h >= 0: the state is carried unchanged and
    the gradient reaching h_0 from the last step is the upstream gradient itself -- neither
    vanishes nor explodes, the point of the IRNN."""
    B, T, H = 2, 50, 4
    rnn = _no_input(RNN(3, H, nonlinearity="relu", init="identity", init_scale=1.0,
                        dtype="float64", rng=0))
    h0 = np.abs(np.random.default_rng(1).standard_normal((1, B, H))) + 0.1
    out, hT, cache = rnn.forward(np.random.default_rng(2).standard_normal((B, T, 3)), h0)
    np.testing.assert_array_equal(hT, h0)
    np.testing.assert_array_equal(out, np.broadcast_to(h0[0][:, None], (B, T, H)))
    dout = np.zeros((B, T, H))
    dout[:, -1] = np.random.default_rng(3).standard_normal((B, H))
    _, dh0 = rnn.backward(dout, cache)
    np.testing.assert_array_equal(dh0[0], dout[:, -1])


def test_scaled_identity_decays_geometrically():
    rnn = _no_input(RNN(2, 3, nonlinearity="relu", init="identity", init_scale=0.5,
                        dtype="float64", rng=0))
    h0 = np.ones((1, 1, 3))
    out, _, _ = rnn.forward(np.zeros((1, 4, 2)), h0)
    np.testing.assert_allclose(out[0, :, 0], 0.5 ** np.arange(1, 5))


def test_identity_init_is_for_the_vanilla_rnn_only():
    for klass in (GRU, LSTM):
        with pytest.raises(ConfigError, match="vanilla RNN only"):
            klass(3, 4, init="identity")


def test_language_model_takes_the_identity_init():
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    cfg = LMConfig(vocab_size=9, cell="rnn", embed_size=4, hidden_size=5, num_layers=2,
                   nonlinearity="relu", init="identity", init_scale=0.5, dtype="float64")
    lm = LanguageModel(cfg, rng=0)
    for name, p in lm.parameters().items():
        if name.endswith("W_h"):
            np.testing.assert_array_equal(p, 0.5 * np.eye(5))
    assert LMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="vanilla RNN"):
        LMConfig(vocab_size=9, cell="gru", init="identity")
    with pytest.raises(ConfigError, match="init must be"):
        LMConfig(vocab_size=9, init="zeros")


def test_rnnkit_train_init_identity(tmp_path, capsys):
    from rnnkit.cli.main import main
    from rnnkit.train.checkpoint import load_checkpoint

    text = tmp_path / "t.txt"
    text.write_text("abcabcabd\n" * 40, encoding="utf-8")
    common = ["train", "--data", str(text), "--hidden", "8", "--embed", "4", "--layers", "1",
              "--bptt", "8", "--batch-size", "2", "--no-progress", "--sample-length", "0",
              "--max-steps", "3"]
    assert main([*common, "--cell", "rnn", "--nonlinearity", "relu", "--init", "identity",
                 "--out", str(tmp_path / "r")]) == 0
    model = load_checkpoint(tmp_path / "r" / "last").config["model"]
    assert (model["init"], model["init_scale"]) == ("identity", 1.0)  # the IRNN default
    assert main([*common, "--init", "uniform", "--out", str(tmp_path / "u")]) == 0
    assert load_checkpoint(tmp_path / "u" / "last").config["model"]["init_scale"] == 0.1
    capsys.readouterr()
    assert main([*common, "--cell", "lstm", "--init", "identity",
                 "--out", str(tmp_path / "l")]) == 2
    assert "--init identity is for --cell rnn only" in capsys.readouterr().err
    assert not (tmp_path / "l").exists()
