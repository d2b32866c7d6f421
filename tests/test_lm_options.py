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
    assert cfg.proj_size == 0
    assert type(LanguageModel(cfg, rng=0).rnn).__name__ == "LSTM"


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
])
def test_bad_options_are_one_line(tmp_path, text_file, capsys, args, message):
    assert main(["train", "--data", str(text_file), *TINY, *args,
                 "--out", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
