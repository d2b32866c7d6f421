"""ONNX export (rnnkit.deploy): every graph passes onnx.checker and onnxruntime gives rnnkit's
numbers (to 1e-5) on random and real inputs, with variable lengths, bidirectional and stacked
layers, for every cell variant; greedy decoding through the step graphs reproduces
``rnnkit sample --temperature 0`` and ``rnnkit translate --beam 1``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rnnkit.cli.main import main  # noqa: E402
from rnnkit.deploy.export import build_graphs, export_checkpoint  # noqa: E402
from rnnkit.deploy.graph import Graph, recurrent_stack  # noqa: E402
from rnnkit.errors import RnnkitError  # noqa: E402
from rnnkit.nn.losses import log_softmax  # noqa: E402
from rnnkit.nn.recurrent import make_recurrent  # noqa: E402
from rnnkit.tasks import load_model  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
TOL = {"rtol": 1e-5, "atol": 1e-5}


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run(model, **feeds):
    s = session(model)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, feeds)))


# -- the recurrent operators, every variant ---------------------------------------------------

VARIANTS = [
    ("rnn", {}), ("rnn", {"nonlinearity": "relu"}),
    ("gru", {}), ("gru", {"reset_after": False}),
    ("lstm", {}), ("lstm", {"peephole": True}),
]


@pytest.mark.parametrize("cell,opts", VARIANTS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_recurrent_stack_matches_rnnkit(cell, opts, bidirectional, layers):
    rng = np.random.default_rng(3)
    layer = make_recurrent(cell, 5, 4, layers, bidirectional=bidirectional, rng=1, **opts)
    for p in layer.parameters().values():  # non-zero peepholes, b_hn and biases
        p[...] = rng.uniform(-0.6, 0.6, p.shape)
    g = Graph("stack", {f"rnn.{k}": v for k, v in layer.parameters().items()})
    x = g.input("x", "float32", ["T", "B", 5])
    lengths = g.input("lengths", "int64", ["B"])
    h0 = g.input("h0", "float32", [None, "B", 4])
    c0 = g.input("c0", "float32", [None, "B", 4]) if cell == "lstm" else None
    y, hs, cs = recurrent_stack(g, layer, "rnn", x, g.op("Cast", [lengths], to=6), h0, c0)
    g.output(y, "y", "float32", ["T", "B", None])
    g.output(g.op("Concat", hs, axis=0), "h", "float32", [None, "B", 4])
    X = rng.normal(size=(3, 6, 5)).astype(np.float32)
    lens = np.array([6, 2, 4])
    n = layers * (2 if bidirectional else 1)
    H0 = rng.normal(size=(n, 3, 4)).astype(np.float32)
    C0 = rng.normal(size=(n, 3, 4)).astype(np.float32)
    feeds = {"x": X.transpose(1, 0, 2).copy(), "lengths": lens, "h0": H0}
    if cell == "lstm":
        g.output(g.op("Concat", cs, axis=0), "c", "float32", [None, "B", 4])
        feeds["c0"] = C0
    got = run(g.to_model(), **feeds)
    out, state, _ = layer.forward(X, (H0, C0) if cell == "lstm" else H0, lengths=lens,
                                  grad=False)
    assert np.abs(out).max() > 0.05  # the comparison is about real numbers
    np.testing.assert_allclose(got["y"].transpose(1, 0, 2), out, **TOL)
    np.testing.assert_allclose(got["h"], state.h if cell == "lstm" else state, **TOL)
    if cell == "lstm":
        np.testing.assert_allclose(got["c"], state.c, **TOL)


# -- language models ---------------------------------------------------------------------------


def lm_graphs(path):
    loaded = load_model(path)
    return loaded, build_graphs(loaded.model, "lm", loaded.checkpoint.quantized)


def check_lm(loaded, graphs, ids):
    model = loaded.model
    logits, state, _ = model.forward(ids, grad=False)
    got = run(graphs["model"], ids=ids)
    np.testing.assert_allclose(got["log_probs"], log_softmax(logits), **TOL)
    h = state.h if isinstance(state, tuple) else state
    np.testing.assert_allclose(got["h_n"], h, **TOL)
    # the step graph, token by token from the zero state, gives the same log-probabilities
    step = session(graphs["step"])
    names = [i.name for i in step.get_inputs()]
    st = {k: np.zeros(got[f"{k}_n"].shape, np.float32) for k in names if k in ("h", "c")}
    for t in range(ids.shape[1]):
        lp, *new = step.run(None, {"token": ids[:, t], **st})
        st = dict(zip([k for k in ("h", "c") if k in st], new))
        np.testing.assert_allclose(lp, got["log_probs"][:, t], **TOL)


@pytest.mark.parametrize("name", ["lm-char", "lm-word", "lm-irnn"])
def test_lm_fixtures_match(name):
    loaded, graphs = lm_graphs(FIXTURES / name / "ckpt")
    text = (FIXTURES / name / "input.txt").read_text()
    real = loaded.tokenizer.encode(text)[:40]
    check_lm(loaded, graphs, np.stack([real[:20], real[20:40]]))
    rng = np.random.default_rng(0)
    check_lm(loaded, graphs, rng.integers(0, loaded.model.cfg.vocab_size, (3, 9)))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_lm_stacked_and_tied_match(cell, tmp_path):
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    model = LanguageModel(LMConfig(vocab_size=11, cell=cell, embed_size=6, hidden_size=6,
                                   num_layers=2, tie_weights=cell == "gru"), rng=2).eval()
    graphs = build_graphs(model, "lm")
    loaded = type("L", (), {"model": model})
    check_lm(loaded, graphs, np.random.default_rng(1).integers(0, 11, (2, 7)))


@pytest.mark.parametrize("layers", [1, 2])
def test_projection_lstm_lm_matches(layers):
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    model = LanguageModel(LMConfig(vocab_size=11, cell="lstm", embed_size=4, hidden_size=6,
                                   proj_size=4, num_layers=layers, tie_weights=True), rng=3)
    graphs = build_graphs(model.eval(), "lm")
    scan = [n for n in graphs["model"].graph.node if n.op_type == "Scan"]
    assert len(scan) == layers
    loaded = type("L", (), {"model": model})
    check_lm(loaded, graphs, np.random.default_rng(2).integers(0, 11, (3, 8)))


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_parallel_scan_cells_lm_matches(cell):
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    model = LanguageModel(LMConfig(vocab_size=11, cell=cell, embed_size=5, hidden_size=6,
                                   num_layers=2), rng=4)
    for p in model.parameters().values():  # both branches of g(u), gates away from 1/2
        p[...] = np.random.default_rng(5).uniform(-1.5, 1.5, p.shape)
    graphs = build_graphs(model.eval(), "lm")
    assert sum(n.op_type == "Scan" for n in graphs["model"].graph.node) == 2
    loaded = type("L", (), {"model": model})
    check_lm(loaded, graphs, np.random.default_rng(6).integers(0, 11, (3, 9)))


def test_adaptive_softmax_lm_matches():
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    model = LanguageModel(LMConfig(vocab_size=30, cell="gru", embed_size=4, hidden_size=8,
                                   num_layers=2, adaptive_softmax=[10, 20]), rng=7).eval()
    graphs = build_graphs(model, "lm")
    loaded = type("L", (), {"model": model})
    ids = np.random.default_rng(8).integers(0, 30, (2, 6))
    check_lm(loaded, graphs, ids)
    got = run(graphs["model"], ids=ids)["log_probs"]
    np.testing.assert_allclose(np.exp(got).sum(-1), 1, atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_layer_norm_lm_matches(cell):
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    model = LanguageModel(LMConfig(vocab_size=11, cell=cell, embed_size=5, hidden_size=6,
                                   num_layers=2, layer_norm=True), rng=9)
    rng = np.random.default_rng(10)
    for k, p in model.parameters().items():  # gains and biases away from 1 and 0
        p[...] = rng.uniform(-1, 1, p.shape) + (1 if k.rsplit(".", 1)[-1].startswith("g_") else 0)
    graphs = build_graphs(model.eval(), "lm")
    assert sum(n.op_type == "Scan" for n in graphs["model"].graph.node) == 2
    check_lm(type("L", (), {"model": model}), graphs, rng.integers(0, 11, (3, 8)))


def onnx_greedy_lm(step_model, tokenizer, first, banned, length):
    step = session(step_model)
    names = [i.name for i in step.get_inputs()]
    shape = [d if isinstance(d, int) else 1 for d in step.get_inputs()[1].shape]
    st = {k: np.zeros(shape, np.float32) for k in names if k in ("h", "c")}
    tok, out = first, []
    for _ in range(length + 1):
        lp, *new = step.run(None, {"token": np.array([tok]), **st})
        st = dict(zip([k for k in ("h", "c") if k in st], new))
        if _ == length:
            break
        lp[:, banned] = -np.inf
        tok = int(lp[0].argmax())
        out.append(tok)
    return out


@pytest.mark.parametrize("name", ["lm-char", "lm-irnn"])
def test_greedy_generation_reproduces_rnnkit_sample(name, capsys):
    path = FIXTURES / name / "ckpt"
    assert main(["sample", str(path), "--temperature", "0", "--length", "60"]) == 0
    expected = capsys.readouterr().out[:-1]  # the command ends with a newline
    loaded, graphs = lm_graphs(path)
    vocab = loaded.tokenizer.vocab
    banned = [vocab.pad_id, vocab.bos_id, vocab.unk_id]
    toks = onnx_greedy_lm(graphs["step"], loaded.tokenizer, vocab.index("\n"), banned, 60)
    assert "".join(loaded.tokenizer.decode([t]) for t in toks) == expected


def test_word_level_greedy_generation_reproduces_rnnkit_sample(capsys):
    path = FIXTURES / "lm-word" / "ckpt"
    assert main(["sample", str(path), "--temperature", "0", "--length", "30"]) == 0
    expected = capsys.readouterr().out[:-1]
    loaded, graphs = lm_graphs(path)
    vocab = loaded.tokenizer.vocab
    toks = onnx_greedy_lm(graphs["step"], loaded.tokenizer, vocab.eos_id,
                          [vocab.pad_id, vocab.bos_id], 30)
    text, prev = "", "\n"
    for t in toks:  # words joined by spaces, <eos> as a line break
        word = "\n" if t == vocab.eos_id else loaded.tokenizer.decode([t])
        text += word if word == "\n" or prev == "\n" else " " + word
        prev = word
    assert text == expected and len(toks) == 30


# -- classifier and tagger --------------------------------------------------------------------


def padded(rng, V, lengths):
    ids = rng.integers(2, V, (len(lengths), max(lengths)))
    ids[np.arange(ids.shape[1])[None, :] >= np.asarray(lengths)[:, None]] = 0
    return ids


def test_classifier_fixture_matches_on_real_sentences():
    loaded = load_model(FIXTURES / "classifier" / "ckpt")
    from rnnkit.tasks.classify.inference import load_classifier

    model, vocab, _ = load_classifier(FIXTURES / "classifier" / "ckpt")
    lines = (FIXTURES / "classifier" / "input.txt").read_text().splitlines()
    texts = [line.split()[1:] for line in lines if line.strip()][:8]
    ids = [vocab.encode_texts([t])[0] for t in texts]
    from rnnkit.text.batching import pad_batch

    x, lengths = pad_batch(ids)
    got = run(build_graphs(loaded.model, "classifier")["model"], ids=x, lengths=lengths)
    np.testing.assert_allclose(got["probs"], model.predict_proba(x, lengths), **TOL)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_classifier_matches(cell, pooling):
    from rnnkit.tasks.classify.model import ClassifierConfig, SequenceClassifier

    model = SequenceClassifier(ClassifierConfig(
        vocab_size=13, num_classes=3, cell=cell, embed_size=5, hidden_size=4, num_layers=2,
        pooling=pooling, embed_init="normal"), rng=4).eval()
    rng = np.random.default_rng(5)
    lengths = np.array([5, 1, 3, 4])
    ids = padded(rng, 13, lengths)
    got = run(build_graphs(model, "classifier")["model"], ids=ids, lengths=lengths)
    np.testing.assert_allclose(got["probs"], model.predict_proba(ids, lengths), **TOL)


def test_tagger_fixture_with_characters_matches_on_real_sentences():
    from rnnkit.tasks.tag.inference import load_tagger
    from rnnkit.tasks.tag.task import EncodedSentences

    model, vocab, _ = load_tagger(FIXTURES / "tagger" / "ckpt")
    blocks = (FIXTURES / "tagger" / "input.txt").read_text().strip().split("\n\n")
    sentences = [[row.split()[0] for row in b.splitlines()] for b in blocks][:6]
    sentences.append(["Zyx", "unseen-word", "Bob"])  # unknown words reach the characters
    enc = EncodedSentences(vocab, vocab.char_table(), sentences)
    x, lengths, chars, _ = enc.batch(np.arange(len(sentences)))
    got = run(build_graphs(model, "tagger")["model"], ids=x, lengths=lengths,
              char_ids=chars.ids, char_lengths=chars.lengths, char_index=chars.index)
    want = model.predict_proba(x, lengths, chars)
    real = np.arange(x.shape[1])[None, :] < lengths[:, None]
    np.testing.assert_allclose(got["probs"][real], want[real], **TOL)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_tagger_stacked_matches(cell):
    from rnnkit.tasks.tag.model import SequenceTagger, TaggerConfig

    model = SequenceTagger(TaggerConfig(vocab_size=13, num_tags=4, cell=cell, embed_size=5,
                                        hidden_size=4, num_layers=2, embed_init="normal"),
                           rng=6).eval()
    rng = np.random.default_rng(7)
    lengths = np.array([2, 6, 3])
    ids = padded(rng, 13, lengths)
    got = run(build_graphs(model, "tagger")["model"], ids=ids, lengths=lengths)
    real = np.arange(6)[None, :] < lengths[:, None]
    np.testing.assert_allclose(got["probs"][real], model.predict_proba(ids, lengths)[real],
                               **TOL)


# -- seq2seq ------------------------------------------------------------------------------------


def onnx_greedy_translate(graphs, src, max_len, eos=3, bos=2):
    """Greedy decoding of one source (S,) through the encoder and decoder-step graphs."""
    enc = run(graphs["encoder"], src=src[None, :], src_lengths=np.array([len(src)]))
    dec = session(graphs["decoder"])
    names = [i.name for i in dec.get_inputs()]
    outs = [o.name for o in dec.get_outputs()]
    feeds = {"h": enc["h0"]}
    if "c" in names:
        feeds["c"] = enc["c0"]
    if "feed" in names:
        feeds["feed"] = np.zeros_like(enc["h0"][0])
    for k in ("memory", "keys"):
        if k in names:
            feeds[k] = enc[k]
    if "src_lengths" in names:
        feeds["src_lengths"] = np.array([len(src)])
    tok, out = bos, []
    for _ in range(max_len):
        got = dict(zip(outs, dec.run(None, {"token": np.array([tok]), **feeds})))
        feeds["h"] = got["h_out"]
        for k in ("c", "feed"):
            if k in names:
                feeds[k] = got[f"{k}_out"]
        tok = int(got["log_probs"][0].argmax())
        if tok == eos:
            break
        out.append(tok)
    return out, enc, got


def test_translation_equals_rnnkit_translate_beam_1(capsys):
    path = FIXTURES / "seq2seq" / "ckpt"
    loaded = load_model(path)
    from rnnkit.tasks.seq2seq.inference import load_seq2seq, output_limit

    model, src_tok, tgt_tok, ck = load_seq2seq(path)
    graphs = build_graphs(model, "seq2seq")
    sources = [line.split("\t")[0] for line in
               (FIXTURES / "seq2seq" / "input.tsv").read_text().splitlines()[:6]]
    for text in sources:
        assert main(["translate", str(path), text, "--beam", "1"]) == 0
        expected = capsys.readouterr().out.strip()
        toks, _, _ = onnx_greedy_translate(graphs, src_tok.encode(text), output_limit(ck, None))
        assert tgt_tok.decode(toks) == expected
    assert loaded.kind == "seq2seq"


@pytest.mark.parametrize("cfg", [
    {"cell": "gru", "attention": "additive", "bridge": "linear", "input_feed": True,
     "num_layers": 2, "bidirectional": True, "decoder_hidden_size": 7},
    {"cell": "rnn", "attention": "dot", "bridge": "zero", "bidirectional": False},
    {"cell": "lstm", "attention": "none", "bridge": "linear", "num_layers": 2,
     "decoder_hidden_size": 5},
    {"cell": "lstm", "attention": "general", "bridge": "concat", "bidirectional": True,
     "num_layers": 2, "input_feed": True},
])
def test_seq2seq_graphs_match(cfg):
    from rnnkit.tasks.seq2seq.model import Seq2Seq, Seq2SeqConfig

    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=12, tgt_vocab_size=10, embed_size=5,
                                  hidden_size=4, init="uniform", init_scale=0.5, **cfg),
                    rng=8).eval()
    graphs = build_graphs(model, "seq2seq")
    rng = np.random.default_rng(9)
    lengths = np.array([5, 2, 4])
    src = padded(rng, 12, lengths)
    enc, state, _ = model.encode(src, lengths)
    got = run(graphs["encoder"], src=src, src_lengths=lengths)
    np.testing.assert_allclose(got["memory"], enc.memory, **TOL)
    rnn = state.rnn
    np.testing.assert_allclose(got["h0"], rnn.h if isinstance(rnn, tuple) else rnn, **TOL)
    if enc.keys is not None and model.attention is not None:
        np.testing.assert_allclose(got["keys"], enc.keys, **TOL)
    # three decoder steps, state carried, against Seq2Seq.step
    dec = session(graphs["decoder"])
    names = [i.name for i in dec.get_inputs()]
    outs = [o.name for o in dec.get_outputs()]
    feeds = {"h": got["h0"], "c": got.get("c0"), "memory": got["memory"],
             "keys": got.get("keys"), "src_lengths": lengths,
             "feed": np.zeros((3, model.cfg.decoder_hidden_size), np.float32)}
    feeds = {k: v for k, v in feeds.items() if k in names}
    for tok in ([2, 2, 2], [4, 5, 6], [7, 3, 9]):
        tok = np.array(tok)
        logits, state, a = model.step(tok, state, enc)
        out = dict(zip(outs, dec.run(None, {"token": tok, **feeds})))
        np.testing.assert_allclose(out["log_probs"], log_softmax(logits), **TOL)
        if a is not None:
            np.testing.assert_allclose(out["attention"], a, **TOL)
        feeds["h"] = out["h_out"]
        for k in ("c", "feed"):
            if k in names:
                feeds[k] = out[f"{k}_out"]
    toks, _, _ = onnx_greedy_translate(graphs, src[0, :5], 8)
    assert toks == model.beam_search(src[0, :5], beam=1, max_len=8)[0].tokens


# -- files and errors --------------------------------------------------------------------------


@pytest.mark.parametrize("name,files", [
    ("lm-word", ["model.onnx", "model.step.onnx", "model.json"]),
    ("tagger", ["model.onnx", "model.json"]),
    ("seq2seq", ["model.onnx", "model.decoder.onnx", "model.json"]),
])
def test_export_command_writes_checked_graphs(name, files, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(FIXTURES / name / "ckpt"), "--format", "onnx",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
    for f in files[:-1]:
        m = onnx.load(tmp_path / f)
        onnx.checker.check_model(m, full_check=True)
        assert m.opset_import[0].version == 17
    assert capsys.readouterr().out.split() == [str(tmp_path / f) for f in files]


def test_a_dotted_name_keeps_its_stem(tmp_path):
    paths = export_checkpoint(FIXTURES / "seq2seq" / "ckpt", tmp_path / "fra.v1.onnx")
    assert [p.name for p in paths] == ["fra.v1.onnx", "fra.v1.decoder.onnx", "fra.v1.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_ngram_and_bad_out_are_refused(tmp_path, capsys):
    assert main(["export", str(FIXTURES / "ngram" / "ckpt"), "--out",
                 str(tmp_path / "m.onnx")]) == 2
    assert "n-gram model has no ONNX export" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--out"):
        export_checkpoint(FIXTURES / "lm-char" / "ckpt", tmp_path / "m.txt")
    with pytest.raises(RnnkitError, match="lm, classifier, tagger and seq2seq"):
        export_checkpoint(FIXTURES / "lm-output-recurrent" / "ckpt", tmp_path / "m.onnx")


def test_a_classifier_trained_here_exports_to_the_same_predictions(tmp_path, capsys):
    """Trained weights (not an initialisation): a 2-layer bidirectional GRU with mean pooling
    learns 'good' against 'bad'; the exported graph gives its probabilities."""
    from rnnkit.tasks.classify.inference import load_classifier
    from rnnkit.text.batching import pad_batch

    rng = np.random.default_rng(0)
    words = ["the", "film", "plot", "was", "very", "quite", "a", "story"]
    lines = []
    for _ in range(160):
        label = int(rng.integers(0, 2))
        ws = list(rng.choice(words, int(rng.integers(1, 6))))
        ws.insert(int(rng.integers(0, len(ws) + 1)), "good" if label else "bad")
        lines.append(f"{label} {' '.join(ws)}")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    assert main(["train-classifier", "--train", str(tmp_path / "train.txt"), "--cell", "gru",
                 "--layers", "2", "--bidirectional", "--pooling", "mean", "--embed", "8",
                 "--hidden", "8", "--batch-size", "16", "--epochs", "4", "--lr", "0.02",
                 "--no-progress", "--seed", "1", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "c.onnx")]) == 0
    model, vocab, _ = load_classifier(tmp_path / "run")
    texts = [line.split()[1:] for line in lines[:24]]
    x, lengths = pad_batch([vocab.encode_texts([t])[0] for t in texts])
    got = session(onnx.load(tmp_path / "c.onnx")).run(["probs"], {"ids": x, "lengths": lengths})
    want = model.predict_proba(x, lengths)
    np.testing.assert_allclose(got[0], want, **TOL)
    labels = np.array([int(line[0]) for line in lines[:24]])
    assert (want.argmax(axis=1) == labels).mean() > 0.8  # it did learn
