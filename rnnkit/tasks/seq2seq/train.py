"""Train an encoder-decoder model: :func:`train_seq2seq`, the library function behind
``rnnkit train-seq2seq``.

>>> # from rnnkit.tasks.seq2seq.data import SentenceTokenizer, addition_pairs
>>> # pairs = addition_pairs(2000, 3)
>>> # src, tgt = (SentenceTokenizer("char").fit(side) for side in zip(*pairs))
>>> # cfg = Seq2SeqConfig(len(src.vocab), len(tgt.vocab), attention="general")
>>> # r = train_seq2seq({"train": pairs[200:], "valid": pairs[:200]}, "runs/add", model=cfg,
>>> #                   src_tok=src, tgt_tok=tgt, train=TrainConfig(minutes=2))
>>> # r.figures["valid"][1]["exact"]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...train.trainer import TrainConfig, Trainer
from .inference import load_seq2seq
from .model import Seq2Seq, Seq2SeqConfig
from .task import SamplingSchedule, Seq2SeqTask, evaluate_pairs


@dataclass
class Seq2SeqRun:
    """What :func:`train_seq2seq` returns: the trainer's ``summary``, the trained ``model``
    (the last weights; the best are in ``out/best``), and ``figures[split][beam]``: the best
    checkpoint's exact match, token accuracy and BLEU on each split with pairs."""

    summary: dict
    model: Seq2Seq
    figures: dict


def train_seq2seq(splits: dict, out, *, model: Seq2SeqConfig, src_tok, tgt_tok,
                  train: TrainConfig | None = None, schedule: SamplingSchedule | None = None,
                  max_len: int | None = None, batch_size: int = 32, alpha: float = 0.0,
                  select: str = "loss", decode_valid: bool = True, data_info: dict | None = None,
                  resume: bool = False, beams=(1,), echo=None, announce=None,
                  memory_check: bool = True) -> Seq2SeqRun:
    """Train on ``splits`` (``{"train": [(source, target), ...], "valid": [...], "test": ...}``,
    raw text) into the run directory ``out``, with the fitted tokenizers ``src_tok`` and
    ``tgt_tok`` (a resumed run's with ``resume``).

    ``schedule``: teacher forcing / scheduled sampling (default: teacher forcing);
    ``max_len``: longest output when decoding (default: twice the longest training target, at
    least 10); ``alpha``: the beam search's length penalty; ``select``: the validation figure
    that picks ``best/``; ``beams``: the beam widths of the final evaluation of ``best/``.
    Ctrl-C saves ``last/`` and raises ``KeyboardInterrupt``.
    """
    train = train or TrainConfig()
    schedule = schedule or SamplingSchedule("none")
    info = dict(data_info or {})
    if max_len is None:
        longest = max(len(tgt_tok.tokenize(b)) for _, b in splits["train"])
        max_len = max(10, 2 * longest)
    enc = {k: [(src_tok.encode(a, warn=False), tgt_tok.encode(b, warn=False)) for a, b in v]
           for k, v in splits.items()}
    refs = {k: [b for _, b in v] for k, v in splits.items()}  # raw text: <unk> never matches
    if memory_check:
        from ...train.memory import check_memory, config_training_bytes

        check_memory(f"{out}/last" if resume else "the model options", config_training_bytes(
            model, train.optimizer, train.momentum, bool(train.ema), batch_size))
    net = Seq2Seq(model, rng=np.random.default_rng(train.seed))
    task = Seq2SeqTask(net, src_tok, tgt_tok, enc["train"], enc.get("valid") or [],
                       refs.get("valid") or [], batch_size=batch_size, seed=train.seed,
                       schedule=schedule, max_len=max_len, alpha=alpha, data_info=info,
                       select=select, decode_valid=decode_valid)
    if announce is not None:
        cfg = model
        attn = "no attention" if cfg.attention == "none" else f"{cfg.attention} attention" + (
            " + input feeding" if cfg.input_feed else "")
        announce(f"{cfg.cell.upper()} {cfg.num_layers}x{cfg.hidden_size}"
                 f"{' bidirectional' if cfg.bidirectional else ''} -> "
                 f"{cfg.decoder_hidden_size}, {attn}, vocab {cfg.src_vocab_size}/"
                 f"{cfg.tgt_vocab_size}, {net.num_parameters():,} parameters, "
                 f"{len(enc['train']):,} training pairs, {len(enc.get('valid') or []):,} "
                 f"validation -> {out}")
    trainer = Trainer(task, train, out, resume=resume, echo=echo or (lambda s: None))
    summary = trainer.fit()
    best, _, _, _ = load_seq2seq(trainer.out / "best")
    figures: dict = {}
    world = trainer.world if trainer.world.size > 1 else None  # each rank decodes a share
    for split in ("valid", "test"):
        if enc.get(split):
            figures[split] = {beam: evaluate_pairs(best, tgt_tok, enc[split], refs[split],
                                                   beam=beam, max_len=max_len, alpha=alpha,
                                                   loss=False, world=world)
                              for beam in sorted(set(beams))}
    return Seq2SeqRun(summary, net, figures)
