"""Language-model training task: B parallel streams, windows of T steps, state carried.

As in Zaremba et al. (2014): the training text is one stream cut into ``B`` contiguous rows;
window ``i`` is columns ``[iT, iT + T)`` of every row, so row ``b`` of window ``i + 1`` continues
row ``b`` of window ``i`` and the final state of one window is the initial state of the next
(truncated BPTT: no gradient crosses the window boundary).  The state is reset at the start of
every epoch and for evaluation.

With ``bptt_jitter`` the windows of an epoch have random lengths, as in AWD-LSTM: each is ``T``
with probability 0.95, else ``T / 2``, then ``N(that, 5)`` rounded down, at least 5 tokens, and
the learning rate of its step is scaled by ``length / T`` (:meth:`LMTask.lr_scale`), so every
token weighs about the same.  The lengths of epoch ``e`` come from a Generator seeded with
``(seed, e)``: a resumed run (and every process) reads the same windows.

Across ``N`` processes (:meth:`LMTask.distribute`) each rank reads its ``B/N`` of the streams,
carries their state, and scores its share of the validation streams; ``state()`` gathers the
carried state of every stream on rank 0, so a checkpoint does not depend on ``N``.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import DataError
from ...nn.cells.lstm import LSTMState
from ...text.batching import batchify, get_window, num_windows


def evaluate_lm(model, ids: np.ndarray, batch_size: int = 10, bptt: int = 64, *,
                world=None) -> dict:
    """Mean NLL (nats per token), perplexity and bits per token of ``model`` on ``ids``: every
    token after the first is scored once (see :func:`score_streams`)."""
    return score_streams(model, ids, batch_size, bptt, world=world)


def score_streams(model, ids, batch_size: int = 10, bptt: int = 64, *, world=None,
                  **loss_kw) -> dict:
    """Score ``ids`` as ``B`` parallel streams, each token after the first exactly once.

    The text is cut into ``B`` rows of ``N`` tokens (the layout of training) and read in
    windows of ``bptt`` with the state carried.  Two more passes make every prediction count:
    one step from each row's final state predicts the first token of the next row (and the
    first left-over token after the last row), then the last row's state reads the rest of the
    ``len(ids) % B`` left-over tokens.  So each token is predicted from all the text before it
    in its row, and the rows start from a zero state.  ``loss_kw`` goes to ``model.loss``.
    With a :class:`~rnnkit.distributed.World`, each rank scores its share of the rows (the rank
    of the last row also the left-over tokens) and the sums are added over the ranks.
    """
    ids = np.asarray(ids)
    was_training = model.training
    model.eval()
    try:
        B = max(1, min(batch_size, len(ids) // (bptt + 1) or 1))
        if len(ids) < B * 2:
            B = 1
        streams = batchify(ids, B, min(bptt, max(1, len(ids) // B - 1)))
        N = streams.shape[1]
        tail = ids[B * N:].astype(np.int64)
        lo, hi = (0, B) if world is None else world.part(B)
        state, total, n = None, 0.0, 0

        def score(x, y, state, mask=None):
            nonlocal total, n
            loss, k, state = model.loss(x, y, state, mask=mask, backward=False, **loss_kw)
            total += loss * k
            n += k
            return state

        rows = streams[lo:hi]
        for i in range(num_windows(streams, bptt) if hi > lo else 0):
            x, y = get_window(rows, i, bptt)
            state = score(x, y, state)
        if B > 1 and hi > lo:  # across each row boundary, and into the left-over tokens
            y = np.zeros((B, 1), np.int64)
            y[:-1, 0] = streams[1:, 0]
            mask = np.ones((B, 1), bool)
            if len(tail):
                y[-1, 0] = tail[0]
            else:
                mask[-1, 0] = False
            state = score(rows[:, N - 1:], y[lo:hi], state, mask[lo:hi])
            if hi == B:
                state = _last_row(state)
                for j in range(0, len(tail) - 1, bptt):
                    end = min(j + bptt, len(tail) - 1)
                    state = score(tail[None, j:end], tail[None, j + 1:end + 1], state)
    finally:
        model.train(was_training)
    if world is not None:
        total, n = world.sum([total, n])
        n = int(round(n))
    mean = total / max(n, 1)
    return {"loss": mean, "ppl": math.exp(mean) if mean < 700 else math.inf,
            "bits": mean / math.log(2), "tokens": n}


def _last_row(state):
    """The state of the last stream only (batch axis 1), for an LSTM's ``(h, c)`` or an array
    (``None`` stays ``None``)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return type(state)(*(s[:, -1:] for s in state))
    return state[:, -1:]


def jitter_windows(n: int, bptt: int, rng: np.random.Generator, min_len: int = 5
                   ) -> list[tuple[int, int]]:
    """``(start, length)`` of AWD-LSTM's random windows over streams of ``n`` tokens (``n - 1``
    predictions): lengths ``max(min_len, int(N(T', 5)))`` with ``T' = bptt`` (probability 0.95)
    or ``bptt / 2``, the last one cut to what is left.

    >>> jitter_windows(40, 10, np.random.default_rng(0))[:2]
    [(0, 9), (9, 10)]
    """
    out, i = [], 0
    while i < n - 1:
        base = bptt if rng.random() < 0.95 else bptt / 2
        length = max(min_len, int(rng.normal(base, 5)))
        length = min(length, n - 1 - i)
        out.append((i, length))
        i += length
    return out


class LMTask:
    """Glue between :class:`~rnnkit.tasks.lm.model.LanguageModel` and the trainer."""

    kind = "lm"
    metric = ("loss", "min")

    def __init__(self, model, tokenizer, train_ids, valid_ids=None, test_ids=None, *,
                 batch_size: int = 32, bptt: int = 64, eval_batch_size: int = 32,
                 data_info: dict | None = None, bptt_jitter: bool = False, seed: int = 0):
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
        self.jitter, self.seed = bptt_jitter, seed
        self.windows: list[tuple[int, int]] | None = None  # this epoch's, with jitter
        self.world, self.rows = None, self.streams  # this process's streams

    def distribute(self, world) -> None:
        """Read only this rank's share of the ``B`` streams, and score only its share of the
        validation streams."""
        lo, hi = world.part(self.B)
        if hi == lo:
            raise DataError(f"--batch-size {self.B} is smaller than the {world.size} processes: "
                            "each one needs at least one stream")
        self.world, self.rows = world, self.streams[lo:hi]

    def num_batches(self) -> int:
        if self.jitter:
            if self.windows is None:
                raise RuntimeError("LMTask: call start_epoch() first (the windows are random)")
            return len(self.windows)
        return num_windows(self.streams, self.T)

    def lr_scale(self, i: int) -> float:
        """The factor of the learning rate for batch ``i``: ``length / T`` with jitter."""
        return self.windows[i][1] / self.T if self.jitter else 1.0

    def eval_size(self) -> int:
        """Tokens one validation pass reads (for the trainer's time budget)."""
        return 0 if self.valid_ids is None else len(self.valid_ids)

    def start_epoch(self, epoch: int) -> None:
        self.carry = None  # the same windows every epoch; only the state is reset
        if self.jitter:
            rng = np.random.default_rng([self.seed, epoch])
            self.windows = jitter_windows(self.streams.shape[1], self.T, rng)

    def train_batch(self, i: int, rng: np.random.Generator):
        if self.jitter:
            start, length = self.windows[i]
            x = self.rows[:, start:start + length]  # (B, T')
            y = self.rows[:, start + 1:start + 1 + length]  # (B, T')
        else:
            x, y = get_window(self.rows, i, self.T)
        loss, n, self.carry = self.model.loss(x, y, self.carry, rng=rng)
        return loss, n

    def evaluate(self, split: str):
        ids = self.valid_ids if split == "valid" else self.test_ids
        if ids is None or len(ids) < 2:
            return None
        r = evaluate_lm(self.model, ids, self.eval_batch_size, self.T, world=self.world)
        out = {"loss": r["loss"], "ppl": r["ppl"]}
        if self.tokenizer.level == "char":
            out["bpc"] = r["bits"]
        return out

    def state(self):
        if self.carry is None:
            meta, arrays = {"carry": None}, {}
        elif isinstance(self.carry, tuple):
            meta, arrays = {"carry": "lstm"}, {"h": self.carry[0], "c": self.carry[1]}
        else:
            meta, arrays = {"carry": "h"}, {"h": self.carry}
        if self.world is None or self.world.size == 1:
            return meta, arrays
        # every rank's streams, in order, on rank 0 (the batch axis of a carried state is 1)
        parts = self.world.gather(arrays, what="the carried state")
        if parts is None:
            return meta, {}
        return meta, {k: np.concatenate([p[k] for p in parts], axis=1) for k in arrays}

    def load_state(self, meta: dict, arrays: dict) -> None:
        if self.world is not None and self.world.size > 1:  # this rank's streams
            lo, hi = self.world.part(self.B)
            arrays = {k: v[:, lo:hi] for k, v in arrays.items()}
        kind = meta.get("carry")
        if kind == "lstm":
            self.carry = LSTMState(arrays["h"], arrays["c"])
        elif kind == "h":
            self.carry = arrays["h"]
        else:
            self.carry = None

    def payload(self):
        config = {"model": self.model.cfg.to_dict(), "data": self.data_info,
                  "batch_size": self.B, "bptt": self.T, "eval_batch_size": self.eval_batch_size}
        if self.jitter:
            config["bptt_jitter"] = True
        return config, self.tokenizer.to_dict()
