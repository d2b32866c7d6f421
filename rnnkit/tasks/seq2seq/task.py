"""Sequence-to-sequence training task: length-bucketed batches, scheduled sampling, evaluation.

Each epoch the pairs are cut into batches of similar source length by
:func:`rnnkit.text.batching.bucket_batches` (shuffled, pools of 50 batches sorted by length,
batches shuffled; seeded by ``seed`` and the epoch, so a resumed run repeats the order).
Targets become ``tgt_in = <bos> y`` and ``tgt_out = y <eos>`` (:func:`make_batch`).

Scheduled sampling (Bengio et al. 2015): at training step ``i`` each decoder input is the
reference token with probability ``eps_i`` (teacher forcing) and the model's own previous
argmax otherwise::

    linear           eps_i = max(min_tf, k - c i)
    exponential      eps_i = max(min_tf, k^i)                 0 < k < 1
    inverse-sigmoid  eps_i = max(min_tf, k / (k + exp(i / k)))  k >= 1
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ...checks import config_from_dict
from ...errors import ConfigError
from ...metrics import corpus_bleu, sequence_scores
from ...text.batching import bucket_batches, epoch_rng, num_bucket_batches
from .model import BOS_ID, EOS_ID, PAD_ID

SCHEDULES = ("none", "linear", "exponential", "inverse-sigmoid")


@dataclass(frozen=True)
class SamplingSchedule:
    """Teacher-forcing probability as a function of the training step (see module docstring)."""

    kind: str = "none"
    k: float = 1.0
    c: float = 1e-4
    min_tf: float = 0.0

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ConfigError(f"scheduled-sampling schedule must be one of {list(SCHEDULES)}, "
                              f"got {self.kind!r}")
        if self.kind == "exponential" and not 0 < self.k < 1:
            raise ConfigError(f"the exponential schedule needs 0 < k < 1, got {self.k}")
        if self.kind == "inverse-sigmoid" and self.k < 1:
            raise ConfigError(f"the inverse-sigmoid schedule needs k >= 1, got {self.k}")
        if self.kind == "linear" and self.c < 0:
            raise ConfigError(f"the linear schedule needs c >= 0, got {self.c}")
        if not 0 <= self.min_tf <= 1:
            raise ConfigError(f"min_tf must be in [0, 1], got {self.min_tf}")

    def teacher_forcing(self, step: int) -> float:
        """Probability of feeding the reference token at training step ``step`` (from 0)."""
        if self.kind == "none":
            return 1.0
        if self.kind == "linear":
            eps = self.k - self.c * step
        elif self.kind == "exponential":
            eps = self.k ** step
        else:
            eps = self.k / (self.k + math.exp(min(step / self.k, 700.0)))
        return float(min(1.0, max(self.min_tf, eps)))

    def sample_prob(self, step: int) -> float:
        """Probability of feeding the model's own prediction instead."""
        return 1.0 - self.teacher_forcing(step)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SamplingSchedule:
        return config_from_dict(cls, d, "scheduled-sampling")


def make_batch(srcs, tgts=None):
    """Id sequences -> ``(src (B, S), lengths (B,), tgt_in (B, T), tgt_out (B, T))``, padded
    with ``<pad>`` 0; ``tgt_in = <bos> y``, ``tgt_out = y <eos>``, ``T = max len(y) + 1``."""
    B = len(srcs)
    lengths = np.array([len(s) for s in srcs], np.int64)
    src = np.full((B, int(lengths.max())), PAD_ID, np.int64)  # (B, S)
    for b, s in enumerate(srcs):
        src[b, : len(s)] = s
    if tgts is None:
        return src, lengths, None, None
    T = max(len(t) for t in tgts) + 1
    tgt_in = np.full((B, T), PAD_ID, np.int64)  # (B, T)
    tgt_out = np.full((B, T), PAD_ID, np.int64)
    for b, t in enumerate(tgts):
        n = len(t)
        tgt_in[b, 0] = BOS_ID
        tgt_in[b, 1 : n + 1] = t
        tgt_out[b, :n] = t
        tgt_out[b, n] = EOS_ID
    return src, lengths, tgt_in, tgt_out


# -- evaluation ---------------------------------------------------------------------------------
def decode_all(model, srcs, *, beam: int = 1, max_len: int = 50, alpha: float = 1.0,
               batch_size: int = 128):
    """Greedy (``beam == 1``, batched) or beam-search outputs for every source id sequence:
    ``(outputs, finished)``, lists of token-id lists and of bools (ended with ``<eos>``)."""
    outputs: list = [None] * len(srcs)
    finished: list = [None] * len(srcs)
    if beam == 1:
        for idx in bucket_batches([len(s) for s in srcs], batch_size):  # sorted by length
            src, lengths, _, _ = make_batch([srcs[i] for i in idx])
            tokens, _ = model.generate(src, lengths, max_len=max_len)
            for i, toks in zip(idx, tokens):
                outputs[i] = toks
                finished[i] = len(toks) < max_len  # <eos> came (generate drops it)
    else:
        for i, s in enumerate(srcs):
            h = model.beam_search(np.asarray(s), beam=beam, max_len=max_len, alpha=alpha)[0]
            outputs[i], finished[i] = h.tokens, h.finished
    return outputs, finished


def teacher_forced_loss(model, pairs, batch_size: int = 128) -> tuple[float, int]:
    """Mean NLL per target token (``<eos>`` included) with the reference fed."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    try:
        for lo in range(0, len(pairs), batch_size):
            chunk = pairs[lo : lo + batch_size]
            src, lengths, tgt_in, tgt_out = make_batch([s for s, _ in chunk],
                                                       [t for _, t in chunk])
            loss, k = model.loss(src, lengths, tgt_in, tgt_out, backward=False)
            total += loss * k
            n += k
    finally:
        model.train(was)
    return total / max(n, 1), n


def evaluate_pairs(model, tgt_tok, pairs, refs=None, *, beam: int = 1, max_len: int = 50,
                   alpha: float = 1.0, batch_size: int = 128, loss: bool = True,
                   world=None) -> dict:
    """Loss, exact match, token accuracy and BLEU of ``model`` on encoded ``pairs`` (lists of
    ``(src_ids, tgt_ids)``), decoding greedily or with a beam.

    ``refs`` are the reference target texts (default: the decoded target ids); outputs are
    scored against their tokens, so a reference word outside the vocabulary counts as missed
    even if the model writes ``<unk>``.  ``unfinished`` counts outputs cut at ``max_len``.
    With a :class:`~rnnkit.distributed.World`, each rank decodes its share of the pairs and
    the figures are those of all of them.
    """
    out: dict = {}
    lo, hi = (0, len(pairs)) if world is None else world.part(len(pairs))
    mine = pairs[lo:hi]
    mean = total = n = 0
    if loss and mine:
        mean, n = teacher_forced_loss(model, mine, batch_size)
        total = mean * n
    hyps, finished = decode_all(model, [s for s, _ in mine], beam=beam, max_len=max_len,
                                alpha=alpha, batch_size=batch_size) if mine else ([], [])
    if world is not None and world.size > 1:
        parts = world.allgather((total, n, hyps, finished), what="the validation outputs")
        total, n = sum(p[0] for p in parts), sum(p[1] for p in parts)
        hyps = [h for p in parts for h in p[2]]
        finished = [f for p in parts for f in p[3]]
        mean = total / max(n, 1)
    if loss:
        out["loss"] = mean
    if refs is None:
        refs = [tgt_tok.decode(t) for _, t in pairs]
    hyp_text = [tgt_tok.decode(h) for h in hyps]
    out["exact"], out["token_acc"] = sequence_scores(
        [tgt_tok.tokenize(h) for h in hyp_text], [tgt_tok.tokenize(r) for r in refs], finished)
    bleu = corpus_bleu(hyp_text, list(refs), tgt_tok.level)
    if bleu is not None:
        out["bleu"] = bleu
    out["unfinished"] = int(sum(not f for f in finished))
    return out


class Seq2SeqTask:
    """Glue between :class:`~rnnkit.tasks.seq2seq.model.Seq2Seq` and the trainer.

    ``train`` and ``valid`` are lists of ``(src_ids, tgt_ids)`` pairs of int arrays;
    ``valid_refs`` the validation target texts (for exact match and BLEU).
    """

    kind = "seq2seq"

    def __init__(self, model, src_tok, tgt_tok, train, valid=None, valid_refs=None, *,
                 batch_size: int = 64,
                 seed: int = 0, schedule: SamplingSchedule | None = None, max_len: int = 50,
                 alpha: float = 1.0, data_info: dict | None = None, select: str = "loss",
                 decode_valid: bool = True):
        if not train:
            raise ValueError("Seq2SeqTask: no training pairs")
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.model, self.src_tok, self.tgt_tok = model, src_tok, tgt_tok
        self.train, self.valid, self.valid_refs = train, valid, valid_refs
        self.B, self.seed = batch_size, seed
        self.schedule = schedule or SamplingSchedule()
        self.max_len, self.alpha = max_len, alpha
        self.data_info = data_info or {}
        if select not in ("loss", "exact", "bleu"):
            raise ValueError(f"select must be loss, exact or bleu, got {select!r}")
        self.metric = ("loss", "min") if select == "loss" else (select, "max")
        self.decode_valid = decode_valid or select != "loss"
        self.src_lengths = np.array([len(s) for s, _ in train])
        self.epoch = 1
        self.batches = None
        self.world = None

    def distribute(self, world) -> None:
        """Train on this rank's slice of every batch; validate on its share of the pairs."""
        self.world = world

    def num_batches(self) -> int:
        return num_bucket_batches(len(self.train), self.B)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches = bucket_batches(self.src_lengths, self.B, epoch_rng(self.seed, epoch))

    def train_batch(self, i: int, rng: np.random.Generator):
        if self.batches is None:
            self.start_epoch(self.epoch)
        idx = self.batches[i]
        if self.world is not None:
            idx = self.world.shard(idx)
            if len(idx) == 0:  # a short last batch leaves some processes without pairs
                return 0.0, 0
        src, lengths, tgt_in, tgt_out = make_batch([self.train[j][0] for j in idx],
                                                   [self.train[j][1] for j in idx])
        step = (self.epoch - 1) * self.num_batches() + i
        return self.model.loss(src, lengths, tgt_in, tgt_out, rng=rng,
                               sample_prob=self.schedule.sample_prob(step))

    def evaluate(self, split: str):
        if split != "valid" or not self.valid:
            return None
        if not self.decode_valid and self.world is None:
            loss, _ = teacher_forced_loss(self.model, self.valid)
            return {"loss": loss}
        if not self.decode_valid:
            lo, hi = self.world.part(len(self.valid))
            loss, n = teacher_forced_loss(self.model, self.valid[lo:hi]) if hi > lo else (0, 0)
            total, n = self.world.sum([loss * n, n])
            return {"loss": total / max(n, 1)}
        r = evaluate_pairs(self.model, self.tgt_tok, self.valid, self.valid_refs,
                           max_len=self.max_len, world=self.world)
        r.pop("unfinished")
        return r

    def eval_size(self) -> int:
        # teacher-forced loss plus greedy decoding: about two forward passes per token
        return 2 * sum(len(t) + 1 for _, t in self.valid or ())

    def state(self):
        return {"epoch": self.epoch}, {}

    def load_state(self, meta: dict, arrays: dict) -> None:
        self.start_epoch(int(meta.get("epoch", 1)))

    def payload(self):
        config = {"model": self.model.cfg.to_dict(), "data": self.data_info,
                  "batch_size": self.B, "schedule": self.schedule.to_dict(),
                  "max_len": self.max_len, "alpha": self.alpha}
        return config, {"source": self.src_tok.to_dict(), "target": self.tgt_tok.to_dict()}
