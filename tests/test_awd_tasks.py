"""``--weight-drop``, ``--locked`` and ``--dropout-embed`` in the classifier, the tagger and the
encoder--decoder: gradient checks through each whole model in training mode (every mask drawn
again from a fresh Generator of one seed), mask semantics, and the training commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_classifier import gradcheck_classifier
from test_cli_classify import TINY, classification_file, run, tagging_file
from test_seq2seq import LEN, SRC, TGT_IN, gradcheck_model
from test_seq2seq import make as make_seq2seq
from test_tagger import LENGTHS as TAG_LENGTHS
from test_tagger import gradcheck_logits, random_batch

from rnnkit.errors import ConfigError
from rnnkit.tasks.classify.model import ClassifierConfig, SequenceClassifier
from rnnkit.tasks.tag.model import SequenceTagger, TaggerConfig

AWD = {"dropout_embed": 0.3, "weight_drop": 0.5, "locked": True}


def _randomise(model, seed=1):
    rng = np.random.default_rng(seed)
    for p in model.parameters().values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return model


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_classifier_gradcheck_with_awd_options(cell):
    cfg = ClassifierConfig(vocab_size=9, num_classes=3, cell=cell, embed_size=3, hidden_size=3,
                           num_layers=2, dropout=0.3, embed_dropout=0.2, dtype="float64",
                           pooling="mean", **AWD)
    model = _randomise(SequenceClassifier(cfg, rng=0))
    ids = np.array([[2, 3, 4, 5], [6, 2, 0, 0], [7, 8, 3, 0]])
    gradcheck_classifier(model, ids, np.array([4, 2, 3]), seed=5)
    # the masks: locked over time, weight drop on, all off in eval()
    _, cache = model.forward(ids, np.array([4, 2, 3]), rng=np.random.default_rng(0))
    emb_cache, m_e, rnn_cache = cache[:3]
    assert isinstance(emb_cache, tuple) and m_e.shape == (3, 1, 3)
    assert rnn_cache["layers"][1]["drop"].shape == (1, 3, 6)
    assert all(m is not None for lc in rnn_cache["layers"] for m in lc["wdrop"])
    model.eval()
    _, cache = model.forward(ids, np.array([4, 2, 3]), rng=np.random.default_rng(0))
    assert cache[1] is None and not isinstance(cache[0], tuple)
    assert all(m is None for lc in cache[2]["layers"] for m in lc["wdrop"])


def test_tagger_gradcheck_with_awd_options():
    from test_tagger import K, V

    cfg = TaggerConfig(vocab_size=V, num_tags=K, embed_size=3, hidden_size=3, num_layers=2,
                       dropout=0.3, embed_dropout=0.2, char_vocab_size=6, char_embed_size=2,
                       char_hidden_size=2, dtype="float64", **AWD)
    model = _randomise(SequenceTagger(cfg, rng=0))
    ids, chars, _ = random_batch()
    gradcheck_logits(model, ids, chars, seed=5)
    _, cache = model.forward(ids, TAG_LENGTHS, chars, rng=np.random.default_rng(0))
    m_e, m_o = cache[2], cache[4]
    assert m_e.shape[1] == 1 and m_o.shape[1] == 1  # one mask per sentence, every step


@pytest.mark.parametrize("kw", [{"attention": "general", "num_layers": 2, "dropout": 0.3},
                                {"cell": "gru", "bidirectional": True, "attention": "dot"}])
def test_seq2seq_gradcheck_with_awd_options(kw):
    model = make_seq2seq(**kw, **AWD)
    gradcheck_model(model)
    _, cache = model.forward(SRC, LEN, TGT_IN, rng=np.random.default_rng(0))
    assert isinstance(cache["ecache"][0], tuple)  # the source words dropped as rows
    assert all(m is not None for lc in cache["ecache"][2]["layers"] for m in lc["wdrop"])


def test_seq2seq_embedding_dropout_in_the_step_decoder():
    """Scheduled sampling decodes step by step: the embedding dropout is one draw per batch
    there too, and the gradient check goes through it."""
    model = make_seq2seq(attention="additive", input_feed=True, dropout_embed=0.3)
    gradcheck_model(model, sample_prob=0.5)
    with pytest.raises(ConfigError, match="input_feed decodes step by step"):
        make_seq2seq(attention="general", input_feed=True, weight_drop=0.5)
    model = make_seq2seq(weight_drop=0.5)
    with pytest.raises(ConfigError, match="not available with scheduled sampling"):
        model.forward(SRC, LEN, TGT_IN, rng=np.random.default_rng(0), sample_prob=0.5)


def test_old_configs_load_with_the_options_off():
    from rnnkit.tasks.seq2seq.model import Seq2SeqConfig

    for cls, d in ((ClassifierConfig, {"vocab_size": 5, "num_classes": 2}),
                   (TaggerConfig, {"vocab_size": 5, "num_tags": 2}),
                   (Seq2SeqConfig, {"src_vocab_size": 5, "tgt_vocab_size": 6})):
        cfg = cls.from_dict(d)
        assert (cfg.dropout_embed, cfg.weight_drop, cfg.locked) == (0.0, 0.0, False)


AWD_CLI = ["--dropout-embed", 0.1, "--weight-drop", 0.3, "--locked", "--dropout", 0.2]


def test_train_classifier_and_tagger_with_awd_options(tmp_path, capsys):
    train = classification_file(tmp_path / "train.txt", 60, 0)
    code, _, err = run(["train-classifier", "--train", train, "--valid", train, "--epochs", 1,
                        "--layers", 2, "--out", tmp_path / "c", *AWD_CLI, *TINY], capsys)
    assert code == 0, err
    model = json.loads((tmp_path / "c" / "best" / "config.json").read_text())["model"]
    assert (model["dropout_embed"], model["weight_drop"], model["locked"]) == (0.1, 0.3, True)
    tags = tagging_file(tmp_path / "tags.txt", 30, 0)
    code, _, err = run(["train-tagger", "--train", tags, "--valid", tags, "--epochs", 1,
                        "--out", tmp_path / "t", *AWD_CLI, *TINY], capsys)
    assert code == 0, err
    model = json.loads((tmp_path / "t" / "best" / "config.json").read_text())["model"]
    assert (model["dropout_embed"], model["weight_drop"], model["locked"]) == (0.1, 0.3, True)


def test_train_seq2seq_with_awd_options(tmp_path, capsys):
    from rnnkit.tasks.seq2seq.data import addition_pairs, write_pairs

    write_pairs(tmp_path / "train.tsv", addition_pairs(40, 1, rng=np.random.default_rng(0)))
    tiny = ["--src-level", "char", "--tgt-level", "char", "--hidden", 8, "--embed", 4,
            "--batch-size", 16, "--no-progress", "--valid-fraction", 0.2]
    code, _, err = run(["train-seq2seq", "--train", tmp_path / "train.tsv", "--epochs", 1,
                        "--out", tmp_path / "s", *AWD_CLI, *tiny], capsys)
    assert code == 0, err
    model = json.loads((tmp_path / "s" / "best" / "config.json").read_text())["model"]
    assert (model["dropout_embed"], model["weight_drop"], model["locked"]) == (0.1, 0.3, True)
    code, _, err = run(["train-seq2seq", "--train", tmp_path / "train.tsv", "--epochs", 1,
                        "--out", tmp_path / "s2", "--sampling", "linear", "--locked", *tiny],
                       capsys)
    assert code != 0
    assert err.strip().splitlines()[-1].endswith("not available with --sampling, which "
                                                 "decodes step by step")
