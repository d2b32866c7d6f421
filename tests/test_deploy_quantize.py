"""int8 checkpoints (rnnkit quantize): the per-column error bound, a checkpoint every command
and load_model takes, outputs close to the float model's, and an ONNX export that carries the
int8 weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.deploy.quantize import quantizable, quantize_checkpoint
from rnnkit.errors import CheckpointError, RnnkitError
from rnnkit.nn.losses import log_softmax
from rnnkit.nn.quant import dequantize, dequantize_columns, quantize_columns, quantize_rows
from rnnkit.tasks import load_model
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
NEURAL = ["lm-char", "lm-word", "lm-irnn", "lm-output-recurrent", "conditioned", "classifier",
          "tagger", "seq2seq"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_error_is_at_most_half_a_step_per_column(dtype):
    rng = np.random.default_rng(0)
    W = (rng.normal(size=(40, 9)) * rng.uniform(0.01, 10, 9)).astype(dtype)
    W[:, 3] = 0  # an all-zero column
    W[5, 4] = -1e3  # an outlier only widens its own column's step
    q, s = quantize_columns(W)
    assert q.dtype == np.int8 and s.dtype == dtype and s.shape == (9,)
    assert np.abs(q).max() <= 127 and (np.abs(q).max(axis=0)[[0, 1, 2, 4]] == 127).all()
    err = np.abs(dequantize_columns(q, s) - W)
    assert (err <= s / 2 * (1 + 1e-6)).all()
    assert err[:, 3].max() == 0
    np.testing.assert_allclose(s[[0, 1, 2, 5]], np.abs(W[:, [0, 1, 2, 5]]).max(axis=0) / 127,
                               rtol=1e-6)


def test_rows_of_an_embedding_table_get_their_own_scale():
    E = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    E[2] *= 100
    q, s = quantize_rows(E)
    assert s.shape == (6,) and q.flags.c_contiguous
    assert (np.abs(dequantize(q, s, 0) - E) <= s[:, None] / 2 * (1 + 1e-6)).all()
    assert s[2] > 50 * s[1]


def test_which_weights_are_quantised():
    m = np.zeros((3, 4), np.float32)
    assert quantizable("rnn.layers.0.fwd.W_x", m) and quantizable("out.W", m)
    assert quantizable("attention.W_a", m) and quantizable("bridge_h.W", m)
    assert not quantizable("embed.W", m) and not quantizable("src_embed.W", m)
    assert not quantizable("chars.embed.W", m) and not quantizable("out.b", m[0])


@pytest.fixture(scope="module")
def quantised(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    return {name: quantize_checkpoint(FIXTURES / name / "ckpt", root / name) for name in NEURAL}


def test_checkpoint_files_hold_int8_and_no_pickle(quantised):
    path = quantised["seq2seq"]
    config = json.loads((path / "config.json").read_text())
    names = config["quantization"]["weights"]
    assert config["quantization"]["scheme"] == "int8-per-output"
    assert "encoder.layers.0.fwd.W_x" in names and "src_embed.W" not in names
    with np.load(path / "weights.npz", allow_pickle=False) as z:
        assert z["encoder.layers.0.fwd.W_h"].dtype == np.int8
        assert z["encoder.layers.0.fwd.W_h.scale"].dtype == np.float32
        assert z["src_embed.W"].dtype == np.float32
    before = (FIXTURES / "seq2seq" / "ckpt" / "weights.npz").stat().st_size
    assert (path / "weights.npz").stat().st_size < before


@pytest.mark.parametrize("name", NEURAL)
def test_every_kind_loads_with_weights_close_to_float(name, quantised):
    fl, q = load_model(FIXTURES / name / "ckpt"), load_model(quantised[name])
    assert q.kind == fl.kind and q.checkpoint.quantized
    for key, (ints, scale, axis) in q.checkpoint.quantized.items():
        assert axis == 1
        W = fl.model.parameters()[key]
        got = q.model.parameters()[key]
        assert got.dtype == W.dtype
        assert (np.abs(got - W) <= scale / 2 * (1 + 1e-6) + 1e-7).all()
        assert np.abs(got - W).max() > 0
        np.testing.assert_array_equal(got, dequantize_columns(ints, scale))


@pytest.mark.parametrize("name", ["lm-char", "lm-word", "lm-irnn"])
def test_lm_outputs_close_to_float(name, quantised):
    fl, q = load_model(FIXTURES / name / "ckpt"), load_model(quantised[name])
    ids = fl.tokenizer.encode((FIXTURES / name / "input.txt").read_text())[None, :60]
    a = log_softmax(fl.model.forward(ids, grad=False)[0])
    b = log_softmax(q.model.forward(ids, grad=False)[0])
    assert 0 < np.abs(a - b).max() < 0.05


def test_classifier_and_tagger_outputs_close_to_float(quantised):
    for name in ("classifier", "tagger"):
        fl, q = load_model(FIXTURES / name / "ckpt"), load_model(quantised[name])
        ids, lengths = np.array([[4, 5, 6, 7], [8, 9, 0, 0]]), np.array([4, 2])
        if name == "classifier":
            a, b = (m.model.predict_proba(ids, lengths) for m in (fl, q))
        else:
            from rnnkit.text.chars import CharBatch

            chars = CharBatch(np.array([[3, 4, 0], [5, 6, 7]]), np.array([2, 3]),
                              np.array([[0, 1, 0, 1], [1, 0, 0, 0]]))
            a, b = (m.model.predict_proba(ids, lengths, chars) for m in (fl, q))
        assert 0 < np.abs(a - b).max() < 0.05


def test_every_command_runs_on_a_quantised_checkpoint(quantised, tmp_path, capsys):
    lm = str(quantised["lm-char"])
    assert main(["eval", lm, str(FIXTURES / "lm-char" / "input.txt")]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["sample", lm, "--length", "20", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out) >= 20
    text = tmp_path / "in.txt"
    text.write_text("very good film\nbad plot\n")
    assert main(["predict", str(quantised["classifier"]), str(text)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["predict", str(quantised["tagger"]), str(text)]) == 0
    assert capsys.readouterr().out.startswith("very/")
    assert main(["eval", str(quantised["tagger"]), str(FIXTURES / "tagger" / "input.txt")]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["translate", str(quantised["seq2seq"]), "65+3", "--beam", "2"]) == 0
    assert capsys.readouterr().out.strip()


def session(path, exact: bool = True):
    """An onnxruntime session; ``exact``: basic graph optimisations only.  The extended ones
    (onnxruntime's default) replace DequantizeLinear -> MatMul by the 8-bit kernel MatMulNBits,
    whose results differ from the dequantised float product by about 1e-4."""
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    if exact:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_export_of_a_quantised_checkpoint_carries_int8(quantised, tmp_path):
    onnx = pytest.importorskip("onnx")
    from rnnkit.deploy.export import export_checkpoint

    for name in ("lm-word", "seq2seq"):
        files = export_checkpoint(quantised[name], tmp_path / name / "model.onnx")
        m = onnx.load(files[0])
        onnx.checker.check_model(m, full_check=True)
        kinds = {i.data_type for i in m.graph.initializer}
        assert onnx.TensorProto.INT8 in kinds
        assert any(n.op_type == "DequantizeLinear" for n in m.graph.node)
        assert json.loads(files[-1].read_text())["quantized"]
    q = load_model(quantised["lm-word"])
    ids = q.tokenizer.encode((FIXTURES / "lm-word" / "input.txt").read_text())[None, :30]
    s = session(tmp_path / "lm-word" / "model.onnx")
    got = s.run(["log_probs"], {"ids": ids})[0]
    np.testing.assert_allclose(got, log_softmax(q.model.forward(ids, grad=False)[0]),
                               rtol=1e-5, atol=1e-5)
    q = load_model(quantised["seq2seq"])
    src, lengths = np.array([[4, 5, 6, 7], [8, 9, 10, 0]]), np.array([4, 3])
    s = session(tmp_path / "seq2seq" / "model.onnx")
    enc, state, _ = q.model.encode(src, lengths)
    memory, h0 = s.run(["memory", "h0"], {"src": src, "src_lengths": lengths})
    np.testing.assert_allclose(memory, enc.memory, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h0, state.rnn.h, rtol=1e-5, atol=1e-5)
    q = load_model(quantised["classifier"])
    m = export_checkpoint(quantised["classifier"], tmp_path / "classifier" / "m.onnx")[0]
    want = q.model.predict_proba(src, lengths)
    probs = session(m).run(["probs"], {"ids": src, "lengths": lengths})[0]
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-5)
    probs = session(m, exact=False).run(["probs"], {"ids": src, "lengths": lengths})[0]
    np.testing.assert_allclose(probs, want, atol=1e-3)  # onnxruntime's own int8 product
    m = onnx.load(export_checkpoint(quantised["tagger"], tmp_path / "tagger" / "m.onnx")[0])
    onnx.checker.check_model(m, full_check=True)


def test_refusals(quantised, tmp_path, capsys):
    with pytest.raises(ValueError, match="already exists"):
        quantize_checkpoint(FIXTURES / "lm-char" / "ckpt", quantised["lm-char"])
    with pytest.raises(RnnkitError, match="already quantised"):
        quantize_checkpoint(quantised["lm-char"], tmp_path / "again")
    assert main(["quantize", str(FIXTURES / "ngram" / "ckpt"), "--out",
                 str(tmp_path / "ng")]) == 2
    assert "nothing to quantise" in capsys.readouterr().err
    assert not (tmp_path / "ng").exists()
    assert main(["quantize", str(FIXTURES / "lm-char" / "ckpt"), "--out",
                 str(tmp_path / "ok")]) == 0
    assert "of the float checkpoint's" in capsys.readouterr().out


def test_a_malformed_quantisation_entry_is_a_checkpoint_error(tmp_path):
    ints = np.ones((2, 3), np.int8)
    save_checkpoint(tmp_path / "a", kind="lm", weights={"out.W": ints},
                    config={"quantization": {"scheme": "int8-per-output",
                                             "weights": ["out.W"]}})
    with pytest.raises(CheckpointError, match="'out.W' needs an int8 matrix"):
        load_checkpoint(tmp_path / "a")
    save_checkpoint(tmp_path / "b", kind="lm", weights={"out.W": ints},
                    config={"quantization": {"scheme": "int4"}})
    with pytest.raises(CheckpointError, match="unknown 'quantization' entry"):
        load_checkpoint(tmp_path / "b")


@pytest.mark.parametrize("name", ["lm-word", "tagger", "seq2seq"])
def test_embeddings_too(name, tmp_path, capsys):
    assert main(["quantize", str(FIXTURES / name / "ckpt"), "--out", str(tmp_path / "q"),
                 "--embeddings"]) == 0
    fl, q = load_model(FIXTURES / name / "ckpt"), load_model(tmp_path / "q")
    rows = {k for k, v in q.checkpoint.quantized.items() if v[2] == 0}
    assert rows == {k for k in fl.model.parameters() if k.endswith("embed.W")}
    for k in rows:
        ints, scale, _ = q.checkpoint.quantized[k]
        W = fl.model.parameters()[k]
        assert (np.abs(q.model.parameters()[k] - W) <= scale[:, None] / 2 * (1 + 1e-6)).all()
    onnx = pytest.importorskip("onnx")
    from rnnkit.deploy.export import build_graphs

    graphs = build_graphs(q.model, q.kind, q.checkpoint.quantized)
    first = next(iter(graphs.values()))
    assert {i.name for i in first.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    if name == "lm-word":  # tied: the int8 table is the output layer too
        ids = q.tokenizer.encode((FIXTURES / name / "input.txt").read_text())[None, :30]
        path = tmp_path / "m.onnx"
        onnx.save(graphs["model"], path)
        got = session(path).run(["log_probs"], {"ids": ids})[0]
        np.testing.assert_allclose(got, log_softmax(q.model.forward(ids, grad=False)[0]),
                                   rtol=1e-5, atol=1e-5)
    if name == "seq2seq":
        src, lengths = np.array([[4, 5, 6, 7], [8, 9, 10, 0]]), np.array([4, 3])
        path = tmp_path / "e.onnx"
        onnx.save(graphs["encoder"], path)
        memory = session(path).run(["memory"], {"src": src, "src_lengths": lengths})[0]
        np.testing.assert_allclose(memory, q.model.encode(src, lengths)[0].memory,
                                   rtol=1e-5, atol=1e-5)
