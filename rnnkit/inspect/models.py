"""Any checkpoint -> model, and the few kind-specific steps the inspectors need.

The inspectors work on the recurrent layers found inside a model (:func:`recurrent_layers`
walks ``model.named_modules()``), so they serve every model type.  Only three things depend on
the kind, each through a small registry that skips kinds whose modules do not exist (yet):

* loading (:data:`LOADERS`): ``kind -> [(module, loader function), ...]``, tried in order (two
  model classes share the kind ``lm``); a loader returns a model or a tuple whose first item is
  the model.  Without a loader, the model class (a Module subclass with ``kind`` set) is rebuilt
  from ``config["model"]`` with its config dataclass's ``from_dict``;
* running a batch (:data:`FORWARDS`) and a loss with backward (:data:`LOSSES`).  Kinds without
  an entry are *probed*: each recurrent layer runs alone on random N(0, 1) inputs.
"""

from __future__ import annotations

import importlib
import inspect as pyinspect
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import CheckpointError, ConfigError
from ..module import Module
from ..recurrent import Recurrent

LOADERS: dict[str, list[tuple[str, str]]] = {
    "lm": [("rnnkit.models.lm", "load_lm"),
           ("rnnkit.models.output_recurrent", "load_output_recurrent")],
    "classifier": [("rnnkit.models.classifier", "load_classifier")],
    "tagger": [("rnnkit.models.tagger", "load_tagger")],
    "seq2seq": [("rnnkit.models.seq2seq", "load_seq2seq")],
}


@dataclass
class LoadedModel:
    model: Module
    kind: str
    checkpoint: object  # rnnkit.checkpoint.Checkpoint
    tokenizer: object | None  # a text tokenizer when the checkpoint's vocab holds one


def recurrent_layers(model: Module) -> list[tuple[str, Recurrent]]:
    """Every :class:`~rnnkit.recurrent.Recurrent` inside ``model`` (or ``model`` itself), with
    its dotted module name (``"rnn"``, ``"encoder.rnn"``, ...); nested stacks are not descended."""
    if isinstance(model, Recurrent):
        return [(model.cell, model)]
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, Recurrent) and not any(name.startswith(n + ".") for n, _ in out):
            out.append((name, mod))
    return out


def load_model(path) -> LoadedModel:
    """Load a checkpoint of any kind (a checkpoint or run directory) in eval mode."""
    from ..checkpoint import load_checkpoint

    ck = load_checkpoint(path, weights_only=True)
    candidates = LOADERS.get(ck.kind, [(f"rnnkit.models.{ck.kind}", f"load_{ck.kind}")])
    first_error = None
    for module_name, loader in candidates:
        try:
            mod = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            first_error = first_error or CheckpointError(
                f"{ck.path}: checkpoints of kind {ck.kind!r} need {module_name}, which this "
                "rnnkit does not have")
            continue
        try:
            fn = getattr(mod, loader, None)
            if fn is not None:
                got = fn(ck.path)
                model = got[0] if isinstance(got, tuple) else got
            else:
                model = _rebuild(mod, ck)
        except CheckpointError as e:  # e.g. the other model class of the same kind
            first_error = first_error or e
            continue
        model.eval()
        return LoadedModel(model, ck.kind, ck, _tokenizer(ck.vocab))
    raise first_error


def _rebuild(mod, ck) -> Module:
    klass = next((c for c in vars(mod).values() if isinstance(c, type)
                  and issubclass(c, Module) and getattr(c, "kind", None) == ck.kind), None)
    if klass is None:
        raise CheckpointError(f"{ck.path}: {mod.__name__} has no model class of kind {ck.kind!r}")
    params = list(pyinspect.signature(klass.__init__).parameters.values())[1:]
    ann = params[0].annotation if params else None
    cfg_cls = getattr(mod, ann, None) if isinstance(ann, str) else ann
    if cfg_cls is None or not hasattr(cfg_cls, "from_dict"):
        raise CheckpointError(f"{ck.path}: cannot tell how to rebuild a {klass.__name__}")
    try:
        model = klass(cfg_cls.from_dict(ck.config.get("model", ck.config)), rng=0)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ck.path}: config unreadable ({e})") from None
    model.load_state_dict(ck.weights)
    return model


class WordsTokenizer:
    """Whitespace words looked up in a :class:`~rnnkit.text.vocab.Vocab`, lowercased or not: the
    input side of the classifier and tagger vocabularies (``{"words": ..., "lowercase": ...}``)."""

    level = "word"

    def __init__(self, vocab, lowercase: bool = False):
        self.vocab, self.lowercase = vocab, lowercase
        if lowercase:
            self.vocab = _Lowercased(vocab)

    def tokenize(self, text: str) -> list[str]:
        return text.split()


class _Lowercased:
    def __init__(self, vocab):
        self._vocab = vocab

    def encode(self, tokens, **kw):
        return self._vocab.encode([t.lower() for t in tokens], **kw)


def _tokenizer(vocab):
    """The text tokenizer saved in a checkpoint's vocab (at the top or one level down), or a
    :class:`WordsTokenizer` for ``{"words": vocab, ...}``; ``None`` if there is none."""
    from ..text.tokenizers import tokenizer_from_dict
    from ..text.vocab import Vocab

    if not isinstance(vocab, dict):
        return None
    try:
        for d in [vocab, *[v for v in vocab.values() if isinstance(v, dict)]]:
            if "level" in d:
                return tokenizer_from_dict(d)
        if isinstance(vocab.get("words"), dict):
            return WordsTokenizer(Vocab.from_dict(vocab["words"]), bool(vocab.get("lowercase")))
    except ValueError:
        return None
    return None


# -- running batches ------------------------------------------------------------------------


def _lm_forward(model, ids):
    model.forward(ids)


def _lm_loss(model, batch, loss: str):
    from ..losses import softmax_cross_entropy

    ids, targets = batch
    logits, _, cache = model.forward(ids)
    mask = None
    if loss == "last":
        mask = np.zeros(np.shape(targets), dtype=logits.dtype)
        mask[:, -1] = 1
    _, dlogits, _ = softmax_cross_entropy(logits, np.asarray(targets), mask)
    model.backward(dlogits, cache)


def _ids_forward(model, ids):
    """Models whose forward takes padded ids and lengths (classifier, tagger)."""
    B, T = np.shape(ids)
    model.forward(ids, lengths=np.full(B, T))


FORWARDS: dict[str, Callable] = {"lm": _lm_forward, "classifier": _ids_forward,
                                 "tagger": _ids_forward}
LOSSES: dict[str, Callable] = {"lm": _lm_loss}


def run_forward(model, kind: str, ids) -> None:
    """Run the model of ``kind`` on token ``ids`` (B, T)."""
    _entry(FORWARDS, kind, "run on token ids")(model, ids)


def run_loss(model, kind: str, batch, loss: str) -> None:
    """Forward and backward of the loss at the last step (``"last"``) or of the mean over all
    steps (``"sum"``)."""
    _entry(LOSSES, kind, "compute the loss of")(model, batch, loss)


def _entry(table: dict, kind: str, what: str) -> Callable:
    if kind not in table:
        raise ConfigError(f"rnnkit.inspect cannot {what} models of kind {kind!r} (it can: "
                          f"{', '.join(sorted(table))}); probe their recurrent layers instead")
    return table[kind]


def probe_inputs(layer: Recurrent, B: int, T: int, rng: np.random.Generator) -> np.ndarray:
    """Random N(0, 1) inputs (B, T, D) for a layer probed on its own."""
    return rng.standard_normal((B, T, layer.cfg.input_size)).astype(layer.np_dtype)


@contextmanager
def capture_forward(model):
    """Inside the block, every forward pass of a recurrent layer inside ``model`` appends
    ``(name, layer, cache)`` to the yielded list (the layers' ``forward`` is wrapped on the
    instances and restored on exit)."""
    found: list = []
    layers = recurrent_layers(model)
    for name, layer in layers:
        def forward(*args, _layer=layer, _name=name, **kwargs):
            out = type(_layer).forward(_layer, *args, **kwargs)
            found.append((_name, _layer, out[2]))
            return out

        layer.forward = forward
    try:
        yield found
    finally:
        for _, layer in layers:
            layer.__dict__.pop("forward", None)
