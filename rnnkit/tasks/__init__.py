"""The tasks rnnkit trains, and the one registry that maps a checkpoint's kind to them.

Each task is a package here (``lm``, ``classify``, ``tag``, ``seq2seq``, ``ngram``) holding its
model, its data preparation, its training task with a library function that trains it, the
loading/evaluation/prediction of its checkpoints (``inference``) and its command-line argument
mapping (``cli``).  :data:`REGISTRY` is the only place that dispatches on a checkpoint's kind:
``rnnkit eval``, ``predict`` and ``inspect`` and the list of ``rnnkit`` commands all read it.
A new task is one package plus one :class:`TaskSpec` line below.

Entries name functions as ``"package.module:function"`` (relative to ``rnnkit.tasks``) so that
reading the registry imports nothing; :meth:`TaskSpec.get` imports on first use.

>>> sorted(REGISTRY)
['classifier', 'conditioned', 'lm', 'ngram', 'seq2seq', 'tagger']
>>> REGISTRY["lm"].commands[0].name
'train'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ..errors import CheckpointError


@dataclass(frozen=True)
class Command:
    """An ``rnnkit`` sub-command: its ``name``, the module (relative to ``rnnkit.tasks``) that
    defines ``add_arguments(parser)`` and ``run(args)``, and a one-line ``help``."""

    name: str
    module: str
    help: str


@dataclass(frozen=True)
class TaskSpec:
    """What a checkpoint kind needs (each a ``"module:function"`` reference):

    * ``load(path)``: a tuple whose first item is the model (in evaluation mode);
    * ``evaluate(path, args)``: ``rnnkit eval`` figures, ``{name: value}``;
    * ``predict(path, args)``: for ``rnnkit predict``, a predictor (see ``rnnkit.cli.predict``);
    * ``forward(model, ids)`` and ``loss(model, batch, loss)``: how ``rnnkit inspect`` runs a
      batch of token ids (B, T) and a loss with its backward pass;
    * ``commands``: the ``rnnkit`` sub-commands the task adds;
    * ``serve(path)``: the object ``rnnkit serve`` runs the checkpoint with: ``endpoints``
      (the names of its methods among ``generate``, ``predict``, ``translate``) and
      ``info()`` (see :mod:`rnnkit.serve`).
    """

    kind: str
    load: str
    evaluate: str | None = None
    predict: str | None = None
    forward: str | None = None
    loss: str | None = None
    commands: tuple[Command, ...] = field(default=())
    serve: str | None = None

    def get(self, what: str):
        """The function named by field ``what``, imported; ``None`` if the task has none.  (A
        field may also hold the function itself.)"""
        ref = getattr(self, what)
        if ref is None or callable(ref):
            return ref
        module, name = ref.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)


REGISTRY: dict[str, TaskSpec] = {spec.kind: spec for spec in [
    TaskSpec("lm", load="lm.inference:load_lm", evaluate="lm.inference:evaluate_checkpoint",
             forward="lm.inference:inspect_forward", loss="lm.inference:inspect_loss",
             serve="lm.inference:LMService",
             commands=(Command("train", "lm.cli", "train a language model (default: a character "
                                                  "LSTM on the Python standard library's source)"),
                       Command("sample", "lm.sample_cli",
                               "generate text from a language-model checkpoint"))),
    TaskSpec("ngram", load="ngram.model:load_ngram", evaluate="ngram.task:evaluate_checkpoint"),
    TaskSpec("conditioned", load="lm.conditioned:load_conditioned"),
    TaskSpec("classifier", load="classify.inference:load_classifier",
             evaluate="classify.inference:evaluate_checkpoint",
             predict="classify.inference:predictor", forward="classify.inference:inspect_forward",
             serve="classify.inference:ClassifierService",
             commands=(Command("train-classifier", "classify.cli",
                               "train a sequence classifier"),)),
    TaskSpec("tagger", load="tag.inference:load_tagger",
             evaluate="tag.inference:evaluate_checkpoint", predict="tag.inference:predictor",
             forward="classify.inference:inspect_forward", serve="tag.inference:TaggerService",
             commands=(Command("train-tagger", "tag.cli", "train a sequence tagger"),)),
    TaskSpec("seq2seq", load="seq2seq.inference:load_seq2seq",
             evaluate="seq2seq.inference:evaluate_checkpoint",
             serve="seq2seq.inference:Seq2SeqService",
             commands=(Command("train-seq2seq", "seq2seq.cli", "train an encoder-decoder model"),
                       Command("translate", "seq2seq.translate_cli",
                               "translate with a seq2seq checkpoint"))),
]}


def spec(kind: str, path=None) -> TaskSpec:
    """The :class:`TaskSpec` of ``kind``; an unknown kind is a :class:`CheckpointError`."""
    if kind not in REGISTRY:
        where = f"{path}: " if path is not None else ""
        raise CheckpointError(f"{where}unknown checkpoint kind {kind!r} (this rnnkit knows: "
                              f"{', '.join(sorted(REGISTRY))})")
    return REGISTRY[kind]


def checkpoint_task(path, what: str):
    """``(checkpoint path, kind, the function `what` of its task)`` for a checkpoint or run
    directory; the function is ``None`` where the task has none."""
    from ..train.checkpoint import find_checkpoint, load_checkpoint

    path = find_checkpoint(path)
    kind = load_checkpoint(path, weights_only=True).kind
    return path, kind, spec(kind, path).get(what)


@dataclass
class LoadedModel:
    """A model loaded by :func:`load_model`, with what the inspection tools need from its task:
    ``forward(model, ids)`` and ``loss(model, batch, loss)`` (``None`` where the task has
    none), and the text ``tokenizer`` its vocabulary holds (``None`` if it holds none)."""

    model: object
    kind: str
    checkpoint: object  # rnnkit.train.checkpoint.Checkpoint
    tokenizer: object | None
    forward: object | None = None
    loss: object | None = None


def load_model(path) -> LoadedModel:
    """Load a checkpoint of any kind (a checkpoint or run directory), in evaluation mode."""
    from ..train.checkpoint import load_checkpoint

    ck = load_checkpoint(path, weights_only=True)
    task = spec(ck.kind, ck.path)
    got = task.get("load")(ck.path)
    model = got[0] if isinstance(got, tuple) else got
    if hasattr(model, "eval"):
        model.eval()
    return LoadedModel(model, ck.kind, ck, _tokenizer(ck.vocab), task.get("forward"),
                       task.get("loss"))


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
