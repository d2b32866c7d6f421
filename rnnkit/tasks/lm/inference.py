"""Language-model checkpoints (kind ``"lm"``): loading, evaluation on a text, and the two
calls ``rnnkit inspect`` makes on a loaded model.

Two model classes share the kind: :class:`~rnnkit.tasks.lm.model.LanguageModel` and, when
``config["model"]["cell"]`` is ``"output-recurrent"``,
:class:`~rnnkit.tasks.lm.output_recurrent.OutputRecurrentLM`; :func:`load_lm` picks the class,
so neither model module needs the other.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from ...errors import CheckpointError
from ...train.checkpoint import load_checkpoint
from .model import LanguageModel, LMConfig
from .output_recurrent import ORConfig, OutputRecurrentLM

OUTPUT_RECURRENT = "output-recurrent"


def load_lm(path):
    """``(model, tokenizer, checkpoint)`` from an ``"lm"`` checkpoint or run directory, the
    model in evaluation mode (either language-model class)."""
    ck = load_checkpoint(path, kind="lm", weights_only=True)
    if ck.config.get("model", {}).get("cell") == OUTPUT_RECURRENT:
        return build_from_checkpoint(ck, ORConfig, OutputRecurrentLM)
    return build_from_checkpoint(ck, LMConfig, LanguageModel)


def build_from_checkpoint(ck, config_cls, model_cls):
    """``(model, tokenizer, ck)`` from a loaded ``"lm"`` checkpoint, the model in evaluation
    mode; shared by every language-model class."""
    from ...text.tokenizers import tokenizer_from_dict

    cfg, tokenizer = ck.read(lambda: (config_cls.from_dict(ck.config["model"]),
                                      tokenizer_from_dict(ck.vocab)))
    if len(tokenizer.vocab) != cfg.vocab_size:
        raise CheckpointError(f"{ck.path}: vocabulary has {len(tokenizer.vocab)} tokens but the "
                              f"model expects {cfg.vocab_size}")
    return ck.restore(model_cls, cfg), tokenizer, ck


def evaluate_file(path, file, encoding="utf-8", batch_size=10, bptt=64) -> dict:
    """Loss, perplexity (and bits per character) of the checkpoint ``path`` on a text file."""
    from ...text.io import read_text
    from .task import evaluate_lm

    model, tokenizer, _ = load_lm(path)
    text = read_text(file, encoding)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = tokenizer.encode(text)
    for w in caught:
        print(f"rnnkit eval: warning: {w.message}", file=sys.stderr)
    if len(ids) < 2:
        raise ValueError(f"{file}: needs at least 2 tokens to evaluate, got {len(ids)}")
    r = evaluate_lm(model, ids, batch_size, bptt)
    figures = {"loss": r["loss"], "perplexity": r["ppl"]}
    if tokenizer.level == "char":
        figures["bits per char"] = r["bits"]
    figures["tokens"] = r["tokens"]
    return figures


def evaluate_checkpoint(path, args) -> dict:
    """The ``rnnkit eval`` entry point for checkpoints of kind ``"lm"``."""
    return evaluate_file(path, args.file, args.encoding, args.batch_size, args.bptt)


def inspect_forward(model, ids) -> None:
    """Run the model on token ids (B, T) (``rnnkit inspect gates`` and the viewer)."""
    model.forward(ids)


def inspect_loss(model, batch, loss: str) -> None:
    """Forward and backward of the loss on ``batch = (ids, targets)``: at the last step only
    (``loss="last"``) or over all steps (``"sum"``)."""
    from ...nn.losses import softmax_cross_entropy

    ids, targets = batch
    logits, _, cache = model.forward(ids)
    mask = None
    if loss == "last":
        mask = np.zeros(np.shape(targets), dtype=logits.dtype)
        mask[:, -1] = 1
    _, dlogits, _ = softmax_cross_entropy(logits, np.asarray(targets), mask)
    model.backward(dlogits, cache)
