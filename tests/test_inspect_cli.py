"""``rnnkit inspect ...`` end to end on tiny models, and loading checkpoints of any kind."""

import re
from dataclasses import asdict, dataclass

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.errors import CheckpointError
from rnnkit.inspect.models import recurrent_layers
from rnnkit.nn.module import Module
from rnnkit.nn.recurrent import make_recurrent
from rnnkit.tasks import REGISTRY, TaskSpec, load_model
from rnnkit.tasks.classify.model import ClassifierConfig, SequenceClassifier
from rnnkit.tasks.classify.task import ClassifierVocab
from rnnkit.tasks.lm.model import LanguageModel, LMConfig
from rnnkit.tasks.seq2seq.data import SentenceTokenizer
from rnnkit.tasks.seq2seq.model import Seq2Seq, Seq2SeqConfig
from rnnkit.tasks.tag.model import SequenceTagger, TaggerConfig
from rnnkit.tasks.tag.task import TaggerVocab
from rnnkit.text.tokenizers import CharTokenizer
from rnnkit.train.checkpoint import save_checkpoint
from rnnkit.train.runlog import MetricsLog

TEXT = "def f(x):\n    return [x, (x + 1) * 2]  # 'quoted'\n" * 8


@pytest.fixture
def lm_ckpt(tmp_path):
    tok = CharTokenizer().fit(TEXT)
    cfg = LMConfig(vocab_size=len(tok.vocab), cell="lstm", embed_size=5, hidden_size=6,
                   num_layers=2)
    lm = LanguageModel(cfg, rng=0)
    (tmp_path / "text.txt").write_text(TEXT)
    return save_checkpoint(tmp_path / "ck", kind="lm", config={"model": cfg.to_dict()},
                           weights=lm.state_dict(), vocab=tok.to_dict())


def test_gradients_comparison_of_fresh_cells(tmp_path, capsys):
    png = tmp_path / "g.png"
    rc = main(["inspect", "gradients", "--cell", "rnn", "lstm", "--forget-bias", "1", "3",
               "--hidden", "8", "--length", "30", "--batch", "2", "--every", "10",
               "--out", str(png)])
    out = capsys.readouterr().out
    assert rc == 0 and png.read_bytes()[:4] == b"\x89PNG"
    header = out.splitlines()[1]
    assert "rnn h" in header and "lstm (forget bias 3) c" in header
    assert [ln.split()[0] for ln in out.splitlines()[2:6]] == ["1", "11", "21", "30"]
    assert re.search(r"rnn: \|\|dL/dh_1\|\| / \|\|dL/dh_T\|\| = \d\.\d+e[-+]\d+", out)


def test_gradients_of_a_checkpoint_on_text_and_probed(lm_ckpt, tmp_path, capsys):
    assert main(["inspect", "gradients", str(lm_ckpt), "--text", str(tmp_path / "text.txt"),
                 "--length", "12", "--batch", "3", "--out", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr().out
    assert "cross-entropy on text.txt" in out and "rnn (lstm) layer 1 c" in out
    assert main(["inspect", "gradients", str(lm_ckpt), "--length", "12", "--loss", "sum",
                 "--out", str(tmp_path / "b.png")]) == 0
    assert "probed" in capsys.readouterr().out


def test_spectrum_and_gates(lm_ckpt, tmp_path, capsys):
    assert main(["inspect", "spectrum", str(lm_ckpt), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "rnn.layers.1.fwd.o" in out and out.count("\n") == 1 + 2 * 4
    assert main(["inspect", "gates", str(lm_ckpt), "--text", str(tmp_path / "text.txt"),
                 "--length", "10"]) == 0
    out = capsys.readouterr().out
    assert "over text.txt" in out and "rnn.layers.0.fwd.f  sigmoid" in out
    assert main(["inspect", "gates", "--cell", "gru", "--hidden", "4", "--length", "5"]) == 0
    assert "gru.layers.0.fwd.n" in capsys.readouterr().out
    assert main(["inspect", "spectrum", "--cell", "rnn", "--hidden", "4"]) == 0
    assert "rnn.layers.0.fwd.h" in capsys.readouterr().out


def test_clipping(tmp_path, capsys):
    with MetricsLog(tmp_path / "metrics.jsonl") as log:
        for s, g in enumerate([0.5, 3.0, 2.0, 0.7], 1):
            log.log("step", epoch=1, step=s, grad_norm=g, clipped=g > 1, clip=1.0)
        log.log("epoch", epoch=1, step=4, clip_count=2)
    assert main(["inspect", "clipping", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "    1       4        2     50.0%" in out
    assert (tmp_path / "clipping.png").exists()


def test_activations(lm_ckpt, tmp_path, capsys):
    page = tmp_path / "p.html"
    assert main(["inspect", "activations", str(lm_ckpt), str(tmp_path / "text.txt"),
                 "--out", str(page), "--max-tokens", "50"]) == 0
    assert page.exists() and "page:" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["inspect", "spectrum", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such checkpoint" in err


# -- loading any kind -----------------------------------------------------------------------------


@dataclass
class ToyConfig:
    hidden_size: int = 3

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


class ToyModel(Module):
    kind = "toy"

    def __init__(self, cfg: "ToyConfig", rng=None):
        super().__init__()
        self.enc = self.add_module("encoder", make_recurrent("gru", 2, cfg.hidden_size, rng=rng))
        self.dec = self.add_module("decoder", make_recurrent("lstm", 2, cfg.hidden_size,
                                                             rng=rng))


def test_a_new_kind_is_one_registry_line(tmp_path, monkeypatch):
    def load_toy(path):
        from rnnkit.train.checkpoint import load_checkpoint

        ck = load_checkpoint(path, kind="toy", weights_only=True)
        return ck.restore(ToyModel, ToyConfig.from_dict(ck.config["model"])), ck

    monkeypatch.setitem(REGISTRY, "toy", TaskSpec("toy", load=load_toy))
    model = ToyModel(ToyConfig(), rng=1)
    path = save_checkpoint(tmp_path / "toy", kind="toy", config={"model": asdict(ToyConfig())},
                           weights=model.state_dict())
    loaded = load_model(path)
    assert isinstance(loaded.model, ToyModel) and loaded.tokenizer is None
    assert not loaded.model.training and loaded.forward is None and loaded.loss is None
    got = loaded.model.parameters()
    assert all(np.array_equal(got[k], v) for k, v in model.parameters().items())
    assert [n for n, _ in recurrent_layers(loaded.model)] == ["encoder", "decoder"]


def test_unknown_kind_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "x", kind="nosuchkind", config={}, weights={})
    with pytest.raises(CheckpointError, match="unknown checkpoint kind 'nosuchkind'"):
        load_model(path)


def test_every_registered_function_exists():
    for spec in REGISTRY.values():
        for what in ("load", "evaluate", "predict", "forward", "loss"):
            ref = getattr(spec, what)
            assert (ref is None) == (spec.get(what) is None) and (ref is None or callable(
                spec.get(what))), f"{spec.kind}.{what}"


def _other_model(kind):
    """A tiny model of another kind, as its training task would save it."""
    if kind == "classifier":
        cfg = ClassifierConfig(vocab_size=9, num_classes=2, embed_size=3, hidden_size=4)
        return SequenceClassifier(cfg, rng=0), cfg
    if kind == "tagger":
        cfg = TaggerConfig(vocab_size=9, num_tags=3, embed_size=3, hidden_size=4)
        return SequenceTagger(cfg, rng=0), cfg
    cfg = Seq2SeqConfig(src_vocab_size=9, tgt_vocab_size=8, embed_size=3, hidden_size=4)
    return Seq2Seq(cfg, rng=0), cfg


@pytest.mark.parametrize("kind", ["classifier", "tagger", "seq2seq"])
def test_checkpoints_of_other_model_kinds(kind, tmp_path, capsys):
    from rnnkit.text.vocab import Vocab

    model, cfg = _other_model(kind)
    words = Vocab(["<pad>", "<unk>", "<bos>", "a", "b", "c", "d", "e", "f"],
                  specials=("<pad>", "<unk>", "<bos>"))
    if kind == "classifier":
        vocab = ClassifierVocab(words, ["x", "y"]).to_dict()
    elif kind == "tagger":
        vocab = TaggerVocab(words, ["p", "q", "r"]).to_dict()
    else:
        src = SentenceTokenizer("char").fit(["abcde"])
        tgt = SentenceTokenizer("char").fit(["abcd"])
        vocab = {"source": src.to_dict(), "target": tgt.to_dict()}
    path = save_checkpoint(tmp_path / kind, kind=kind, config={"model": cfg.to_dict()},
                           weights=model.state_dict(), vocab=vocab)
    loaded = load_model(path)
    assert type(loaded.model) is type(model) and recurrent_layers(loaded.model)
    for action in (["spectrum"], ["gates", "--length", "5"], ["gradients", "--length", "5",
                                                              "--out", str(tmp_path / "g.png")]):
        assert main(["inspect", action[0], str(path), *action[1:]]) == 0
    out = capsys.readouterr().out
    assert "layers.0.fwd" in out
    if kind == "classifier":  # runs on a text through its word vocabulary
        (tmp_path / "t.txt").write_text("a b c zz\nd e f\n")
        assert main(["inspect", "gates", str(path), "--text", str(tmp_path / "t.txt"),
                     "--length", "3", "--batch", "2"]) == 0
        assert main(["inspect", "activations", str(path), str(tmp_path / "t.txt"),
                     "--out", str(tmp_path / "p.html")]) == 0


def test_a_model_without_recurrent_layers_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(REGISTRY, "flat", TaskSpec("flat", load=lambda path: (Module(), None)))
    path = save_checkpoint(tmp_path / "f", kind="flat", config={}, weights={})
    assert main(["inspect", "spectrum", str(path)]) == 2
    assert "has no RNN/GRU/LSTM layers to inspect" in capsys.readouterr().err
