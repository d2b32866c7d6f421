"""Language-model training task: B parallel streams, windows of T steps, state carried.

As in Zaremba et al. (2014): the training text is one stream cut into ``B`` contiguous rows;
window ``i`` is columns ``[iT, iT + T)`` of every row, so row ``b`` of window ``i + 1`` continues
row ``b`` of window ``i`` and the final state of one window is the initial state of the next
(truncated BPTT: no gradient crosses the window boundary).  The state is reset at the start of
every epoch and for evaluation.
"""

from __future__ import annotations

import math

import numpy as np

from ..cells.lstm import LSTMState
from ..errors import DataError
from ..text.batching import batchify, get_window, num_windows


def evaluate_lm(model, ids: np.ndarray, batch_size: int = 10, bptt: int = 64) -> dict:
    """Mean NLL (nats per token), perplexity and bits per token of ``model`` on ``ids``."""
    was_training = model.training
    model.eval()
    B = max(1, min(batch_size, len(ids) // (bptt + 1) or 1))
    if len(ids) < B * 2:
        B = 1
    streams = batchify(ids, B, min(bptt, max(1, len(ids) // B - 1)))
    state, total, n = None, 0.0, 0
    for i in range(num_windows(streams, bptt)):
        x, y = get_window(streams, i, bptt)
        loss, k, state = model.loss(x, y, state, backward=False)
        total += loss * k
        n += k
    model.train(was_training)
    mean = total / max(n, 1)
    return {"loss": mean, "ppl": math.exp(mean) if mean < 700 else math.inf,
            "bits": mean / math.log(2), "tokens": n}


class LMTask:
    """Glue between :class:`~rnnkit.models.lm.LanguageModel` and the trainer."""

    kind = "lm"
    metric = ("loss", "min")

    def __init__(self, model, tokenizer, train_ids, valid_ids=None, test_ids=None, *,
                 batch_size: int = 32, bptt: int = 64, eval_batch_size: int = 32,
                 data_info: dict | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.B, self.T = batch_size, bptt
        train_ids = np.asarray(train_ids)
        if len(train_ids) < batch_size * (bptt + 1):
            raise DataError(
                f"the training text has {len(train_ids)} tokens, fewer than one batch window "
                f"needs ({batch_size} streams x {bptt + 1} tokens = {batch_size * (bptt + 1)}); "
                "use more text or a smaller --batch-size or --bptt")
        self.streams = batchify(train_ids, batch_size, bptt)  # (B, N)
        self.valid_ids, self.test_ids = valid_ids, test_ids
        self.eval_batch_size = eval_batch_size
        self.data_info = data_info or {}
        self.carry = None

    def num_batches(self) -> int:
        return num_windows(self.streams, self.T)

    def eval_size(self) -> int:
        """Tokens one validation pass reads (for the trainer's time budget)."""
        return 0 if self.valid_ids is None else len(self.valid_ids)

    def start_epoch(self, epoch: int) -> None:
        self.carry = None  # the same windows every epoch; only the state is reset

    def train_batch(self, i: int, rng: np.random.Generator):
        x, y = get_window(self.streams, i, self.T)
        loss, n, self.carry = self.model.loss(x, y, self.carry, rng=rng)
        return loss, n

    def evaluate(self, split: str):
        ids = self.valid_ids if split == "valid" else self.test_ids
        if ids is None or len(ids) < 2:
            return None
        r = evaluate_lm(self.model, ids, self.eval_batch_size, self.T)
        out = {"loss": r["loss"], "ppl": r["ppl"]}
        if self.tokenizer.level == "char":
            out["bpc"] = r["bits"]
        return out

    def state(self):
        if self.carry is None:
            return {"carry": None}, {}
        if isinstance(self.carry, tuple):
            return {"carry": "lstm"}, {"h": self.carry[0], "c": self.carry[1]}
        return {"carry": "h"}, {"h": self.carry}

    def load_state(self, meta: dict, arrays: dict) -> None:
        kind = meta.get("carry")
        if kind == "lstm":
            self.carry = LSTMState(arrays["h"], arrays["c"])
        elif kind == "h":
            self.carry = arrays["h"]
        else:
            self.carry = None

    def payload(self):
        config = {"model": self.model.cfg.to_dict(), "data": self.data_info,
                  "batch_size": self.B, "bptt": self.T}
        return config, self.tokenizer.to_dict()
