"""The language model with the newer layer options (projection LSTM, minGRU/minLSTM, LayerNorm
cells, adaptive softmax): gradients through the whole model, generation, checkpoints and the
``rnnkit train`` options."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gradcheck import check_module_grads

from rnnkit.cli.main import main
from rnnkit.tasks.lm.inference import load_lm
from rnnkit.tasks.lm.model import LanguageModel, LMConfig
from rnnkit.train.trainer import Trainer

V = 9
# (LMConfig overrides, id)
VARIANTS = [
    pytest.param({"cell": "lstm", "proj_size": 3}, id="lstmp"),
    pytest.param({"cell": "lstm", "proj_size": 3, "tie_weights": True, "embed_size": 3},
                 id="lstmp-tied"),
    pytest.param({"cell": "mingru"}, id="mingru"),
    pytest.param({"cell": "gru", "adaptive_softmax": [3, 6]}, id="adaptive"),
    pytest.param({"cell": "lstm", "proj_size": 2, "adaptive_softmax": [4]}, id="lstmp-adaptive"),
    pytest.param({"cell": "lstm", "layer_norm": True}, id="ln-lstm"),
    pytest.param({"cell": "gru", "layer_norm": True, "tie_weights": True, "embed_size": 5},
                 id="ln-gru-tied"),
    pytest.param({"cell": "minlstm", "tie_weights": True, "embed_size": 5}, id="minlstm-tied"),
]


def _model(opts, seed=0, dropout=0.0):
    cfg = LMConfig(**{"vocab_size": V, "embed_size": 4, "hidden_size": 5, "num_layers": 2,
                      "dropout": dropout, "dtype": "float64", **opts})
    return LanguageModel(cfg, rng=np.random.default_rng(seed))


def _ids(B=2, T=6, seed=1):
    return np.random.default_rng(seed).integers(0, V, size=(B, T))


@pytest.mark.parametrize("opts", VARIANTS)
def test_gradcheck_of_the_whole_model(opts):
    model = _model(opts, dropout=0.2)
    ids = _ids()

    def fwd():
        logits, state, cache = model.forward(ids, rng=np.random.default_rng(3))
        return logits, cache

    def bwd(dlogits, cache):
        model.backward(dlogits, cache)
        return {}

    errors = check_module_grads(fwd, bwd, {}, model.parameters(), model.grads())
    assert set(errors) == set(model.parameters())


@pytest.mark.parametrize("opts", VARIANTS)
def test_step_equals_forward_and_checkpoint_round_trip(opts, tmp_path):
    from rnnkit.text.tokenizers import CharTokenizer
    from rnnkit.train.checkpoint import save_checkpoint

    model = _model(opts).eval()
    ids = _ids()
    logits, _, _ = model.forward(ids)
    state = model.initial_state(2)
    for t in range(ids.shape[1]):
        lt, state = model.step(ids[:, t], state)
        np.testing.assert_allclose(lt, logits[:, t], rtol=0, atol=1e-12)
    tok = CharTokenizer().fit("abcdef")  # 3 specials + 6 characters = V
    save_checkpoint(tmp_path / "ck", kind="lm", config={"model": model.cfg.to_dict()},
                    weights=model.state_dict(), vocab=tok.to_dict())
    loaded, _, _ = load_lm(tmp_path / "ck")
    assert loaded.cfg == model.cfg
    np.testing.assert_array_equal(loaded.forward(ids)[0], logits)


def test_old_configs_load_with_the_new_fields_at_their_defaults():
    old = {"vocab_size": V, "cell": "lstm", "embed_size": 4, "hidden_size": 5, "num_layers": 1,
           "dropout": 0.0, "tie_weights": False, "init": "default", "init_scale": 0.1,
           "nonlinearity": "tanh", "dtype": "float32"}
    cfg = LMConfig.from_dict(old)
    assert cfg.proj_size == 0 and not cfg.layer_norm and cfg.adaptive_softmax is None
    assert type(LanguageModel(cfg, rng=0).rnn).__name__ == "LSTM"


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_adaptive_loss_and_its_gradients_equal_the_full_log_probabilities(dropout):
    model = _model({"cell": "lstm", "adaptive_softmax": [3, 6]}, dropout=dropout)
    ids, targets = _ids(seed=1), _ids(seed=2)
    mask = np.ones(ids.shape, bool)
    mask[1, 4:] = False
    loss, n, _ = model.loss(ids, targets, mask=mask, rng=np.random.default_rng(4))
    fast = {k: v.copy() for k, v in model.grads().items()}
    model.zero_grad()
    from rnnkit.nn.losses import softmax_cross_entropy

    logp, _, cache = model.forward(ids, rng=np.random.default_rng(4))
    ref, dlogp, n_ref = softmax_cross_entropy(logp, targets, mask)  # softmax(log p) = p
    model.backward(dlogp, cache)
    assert n == n_ref == 10
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
    for k, g in model.grads().items():
        np.testing.assert_allclose(fast[k], g, rtol=1e-9, atol=1e-12, err_msg=k)


def test_a_word_level_model_learns_with_the_adaptive_softmax():
    from rnnkit.train.optim import Adam

    rng = np.random.default_rng(0)
    V = 60
    cfg = LMConfig(vocab_size=V, cell="lstm", embed_size=16, hidden_size=32, num_layers=1,
                   adaptive_softmax=[10, 30], dtype="float64")
    model = LanguageModel(cfg, rng=1)
    # a Zipf-like stream where each token predicts the next: t -> (3 t + 1) mod V
    stream = [int(rng.zipf(1.5)) % V]
    for _ in range(1999):
        stream.append((3 * stream[-1] + 1) % V if rng.random() < 0.9 else int(rng.integers(V)))
    data = np.array(stream).reshape(20, -1)
    opt = Adam(model.parameters(), lr=0.02)
    first = last = None
    for _epoch in range(12):
        for i in range(0, data.shape[1] - 21, 20):
            model.zero_grad()
            loss, _, _ = model.loss(data[:, i : i + 20], data[:, i + 1 : i + 21])
            opt.step(model.grads())
            first = loss if first is None else first
            last = loss
    assert first > np.log(V) - 0.5 and last < 1.5, (first, last)


# -- rnnkit train -----------------------------------------------------------------------------
TINY = ["--hidden", "16", "--embed", "8", "--layers", "1", "--bptt", "8", "--batch-size", "2",
        "--no-progress", "--sample-length", "10", "--epochs", "1"]
TEXT = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(12))


@pytest.fixture
def text_file(tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "_plot", lambda self: None)
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.mark.parametrize("args,saved", [
    (["--proj", "6"], {"proj_size": 6}),
    (["--cell", "mingru"], {"cell": "mingru"}),
    (["--adaptive-softmax", "10,20", "--level", "char"], {"adaptive_softmax": [10, 20]}),
    (["--cell", "gru", "--layer-norm"], {"cell": "gru", "layer_norm": True}),
    (["--cell", "minlstm", "--layers", "2", "--dropout", "0.1"], {"cell": "minlstm"}),
])
def test_train_option_reaches_the_checkpoint_and_eval_reads_it(tmp_path, text_file, capsys,
                                                               args, saved):
    out = tmp_path / "run"
    assert main(["train", "--data", str(text_file), *TINY, *args, "--out", str(out)]) == 0
    cfg = json.loads((out / "best" / "config.json").read_text())["model"]
    assert {k: cfg[k] for k in saved} == saved
    capsys.readouterr()
    assert main(["eval", str(out / "best"), str(text_file)]) == 0
    assert "perplexity" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--proj", "4", "--cell", "gru"], "--proj is for --cell lstm"),
    (["--proj", "16"], "must be below --hidden (16)"),
    (["--layer-norm", "--cell", "rnn"], "--layer-norm is for --cell lstm or gru"),
    (["--adaptive-softmax", "10,5"], "invalid cut-offs value: '10,5'"),
    (["--adaptive-softmax", "10,500"],
     "--adaptive-softmax: adaptive softmax cutoffs must increase within 1..26"),
])
def test_bad_options_are_one_line(tmp_path, text_file, capsys, args, message):
    try:
        rc = main(["train", "--data", str(text_file), *TINY, *args, "--out", str(tmp_path / "r")])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    assert rc != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("opts,blocks", [({"cell": "mingru"}, 0), ({"cell": "lstm",
                                          "proj_size": 3}, 8), ({"cell": "gru",
                                                                 "layer_norm": True}, 6)])
def test_gate_and_spectrum_monitors_take_the_new_layers(opts, blocks):
    from rnnkit.inspect.gates import GateMonitor
    from rnnkit.inspect.spectrum import recurrent_spectrum

    model = _model(opts)
    with GateMonitor(model) as gates:
        model.loss(_ids(), _ids(seed=2))
    spectra = recurrent_spectrum(model)
    assert len(spectra) == blocks and len(gates.record()) == 4 * blocks
    assert all(np.isnan(b.spectral_radius) == ("proj_size" in opts) for b in spectra)
