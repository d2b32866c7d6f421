"""Train a language model: :func:`train_lm`, the library function behind ``rnnkit train``.

>>> # from rnnkit.text import default_corpus, split_fraction
>>> # texts = split_fraction(default_corpus(), 0.975, 0.025, at_lines=True)
>>> # r = train_lm(texts, "runs/lm", model=LMConfig(vocab_size=1, hidden_size=128),
>>> #              train=TrainConfig(minutes=1))
>>> # r.summary["best_figures"]["ppl"]
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ...errors import ConfigError, DataError
from ...text.tokenizers import make_tokenizer
from ...train.memory import check_memory, recurrent_parameters, training_bytes
from ...train.trainer import TrainConfig, Trainer
from .model import LanguageModel, LMConfig
from .output_recurrent import ORConfig, OutputRecurrentLM
from .output_recurrent_task import OutputRecurrentTask
from .task import LMTask, evaluate_lm


@dataclass
class LMRun:
    """What :func:`train_lm` returns: the trainer's ``summary``, the trained ``model`` (the
    last weights; the best are in ``out/best``), its ``tokenizer``, the encoded ``ids`` of each
    split, ``steps`` taken in this call, and ``test``: the best checkpoint's figures on the
    test split (``None`` without one)."""

    summary: dict
    model: object
    tokenizer: object
    ids: dict
    steps: int
    test: dict | None


def encode_texts(tokenizer, texts: dict, warn=None) -> dict:
    """``{split: ids}`` (``None`` for an absent split); warnings about unknown tokens go to
    ``warn(message)`` (default: stderr)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = {k: (tokenizer.encode(v) if v else None) for k, v in texts.items()}
    for w in caught:
        (warn or (lambda m: print(f"warning: {m}", file=sys.stderr)))(str(w.message))
    return ids


def fit_tokenizer(level: str, texts: dict, *, min_count: int = 1, max_vocab: int | None = None):
    """The tokenizer of a new run.  Characters: every one of the text (as char-rnn and nanoGPT
    do), so that a rare one in the validation part is not ``<unk>``; words: the training part
    only."""
    fit_on = texts["train"] if level == "word" else "".join(t or "" for t in texts.values())
    return make_tokenizer(level).fit(fit_on, min_count=min_count, max_size=max_vocab)


def train_lm(texts: dict, out, *, model: LMConfig | ORConfig, tokenizer=None,
             level: str = "char", train: TrainConfig | None = None, batch_size: int = 32,
             bptt: int = 64, eval_batch_size: int = 32, bptt_jitter: bool = False,
             ss_prob: float = 0.0,
             feedback: str = "sample", min_count: int = 1, max_vocab: int | None = None,
             data_info: dict | None = None, resume: bool = False, reserve_s: float = 0.0,
             echo=None, announce=None, warn=None, memory_check: bool = True) -> LMRun:
    """Train a language model on ``texts`` (``{"train": str, "valid": str | None, "test": ...}``)
    into the run directory ``out`` (``best/``, ``last/``, ``metrics.jsonl``, ``training.png``).

    ``model`` is an :class:`LMConfig` or, for the output-recurrent model, an :class:`ORConfig`;
    its ``vocab_size`` is replaced by the tokenizer's.  ``tokenizer`` (a resumed run's) or else
    a new one of ``level`` fitted by :func:`fit_tokenizer`.  ``resume``: continue the run in
    ``out`` (the caller passes the run's tokenizer, model config and options).  ``bptt_jitter``:
AWD-LSTM's random window lengths (:class:`LMTask`).  ``ss_prob`` and
    ``feedback``: scheduled sampling of the output-recurrent model.  ``reserve_s``: seconds of a
    time budget kept for the caller's own work.  ``echo(line)``: the trainer's progress;
    ``announce(line)``: one line describing the model and data before training; ``warn(message)``:
    unknown tokens.  Ctrl-C saves ``last/`` and raises ``KeyboardInterrupt``.  Before the model
    is built, a run needing more memory than is available is refused
    (:func:`rnnkit.train.memory.check_memory`; ``memory_check=False`` skips it).
    """
    train = train or TrainConfig()
    info = dict(data_info or {})
    if tokenizer is None:
        tokenizer = fit_tokenizer(level, texts, min_count=min_count, max_vocab=max_vocab)
    info["level"] = tokenizer.level
    ids = encode_texts(tokenizer, texts, warn)
    cfg = model
    if cfg.vocab_size != len(tokenizer.vocab):
        cfg = replace(model, vocab_size=len(tokenizer.vocab))
    if memory_check:
        check_memory(f"{out}/last" if resume else "the model options",
                     lm_training_bytes(cfg, train, batch_size, bptt))
    rng = np.random.default_rng(train.seed)
    common = dict(batch_size=batch_size, bptt=bptt, eval_batch_size=eval_batch_size,
                  data_info=info)
    if bptt_jitter and isinstance(cfg, ORConfig):
        raise ConfigError("--bptt-jitter is not available with --cell output-recurrent")
    try:
        if isinstance(cfg, ORConfig):
            net = OutputRecurrentLM(cfg, rng=rng)
            task = OutputRecurrentTask(net, tokenizer, ids["train"], ids.get("valid"),
                                       ids.get("test"), ss_prob=ss_prob, feedback=feedback,
                                       **common)
        else:
            net = LanguageModel(cfg, rng=rng)
            task = LMTask(net, tokenizer, ids["train"], ids.get("valid"), ids.get("test"),
                          bptt_jitter=bptt_jitter, seed=train.seed, **common)
    except DataError as e:
        raise DataError(f"{info.get('source', 'data')}: {e}") from None
    if announce is not None:
        announce(f"{tokenizer.level}-level {cfg.cell.upper()} {cfg.num_layers}x{cfg.hidden_size}, "
             f"vocab {cfg.vocab_size}, {net.num_parameters():,} parameters, "
             f"{len(ids['train']):,} training tokens -> {out}")
    trainer = Trainer(task, train, out, resume=resume, reserve_s=reserve_s,
                      echo=echo or (lambda s: None))
    step_before = trainer.step
    summary = trainer.fit()
    test = None
    # a budget spent before the first step saved no best/: the caller says so
    if ids.get("test") is not None and (trainer.out / "best").exists():
        from .inference import load_lm

        best, _, _ = load_lm(trainer.out / "best")
        test = evaluate_lm(best, ids["test"], eval_batch_size, bptt,
                           world=trainer.world if trainer.world.size > 1 else None)
    return LMRun(summary, net, tokenizer, ids, trainer.step - step_before, test)


def lm_training_bytes(cfg, train: TrainConfig, batch_size: int, bptt: int) -> int:
    """About how many bytes training ``cfg`` takes (see :mod:`rnnkit.train.memory`)."""
    V, H = cfg.vocab_size, cfg.hidden_size
    if isinstance(cfg, ORConfig):
        n = recurrent_parameters("rnn", V, H, 1) + H * V + V
        per_token = 3 * H + 3 * V
    else:
        E, L = cfg.embed_size, cfg.num_layers
        n = V * E + recurrent_parameters(cfg.cell, E, H, L) + cfg.output_size * V + V
        per_token = E + L * (4 + 2) * H + 3 * V
    itemsize = np.dtype(cfg.dtype).itemsize
    return training_bytes(n, itemsize, optimizer=train.optimizer, momentum=train.momentum,
                          ema=bool(train.ema), activations=batch_size * bptt * per_token)
