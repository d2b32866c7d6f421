"""Training task of the output-recurrent language model, with scheduled sampling.

The same streams and windows as :class:`~rnnkit.tasks.lm.task.LMTask`.  With ``ss_prob = 0``
every window is teacher-forced and nothing is carried; with ``ss_prob > 0`` each step feeds
back the model's own prediction with that probability (Bengio et al. 2015, with a constant
probability instead of a schedule), and the prediction made at the last step of a window is
carried to the first step of the next one.

Validation reports the teacher-forced figures (``loss``, ``ppl``, which pick the best
checkpoint) and, with ``free_eval``, the free-running ones (``free_loss``, ``free_ppl``):
every step fed back the model's own prediction, drawn with a fixed seed so that every
evaluation draws the same way, and the truth still read through ``x_t``.
"""

from __future__ import annotations

import numpy as np

from ...text.batching import get_window
from .task import LMTask, score_streams

EVAL_SEED = 1234  # free-running validation: the same draws every time, not the training RNG


def evaluate_free_running(model, ids: np.ndarray, batch_size: int = 10, bptt: int = 64, *,
                          feedback: str = "sample", seed: int = EVAL_SEED,
                          world=None) -> dict:
    """Mean NLL (nats per token), perplexity and bits of ``model`` on ``ids`` when every step
    feeds back the model's own previous prediction (``ss_prob = 1``).  The layout of streams
    and windows is that of :func:`~rnnkit.tasks.lm.task.evaluate_lm`, so the two losses are
    over the same tokens."""
    rank = 0 if world is None else world.rank  # each rank draws its own rows' feedback
    return score_streams(model, ids, batch_size, bptt, world=world,
                         rng=np.random.default_rng([seed, rank] if rank else seed),
                         ss_prob=1.0, feedback=feedback)


class OutputRecurrentTask(LMTask):
    """:class:`LMTask` for :class:`~rnnkit.tasks.lm.output_recurrent.OutputRecurrentLM`."""

    def __init__(self, model, tokenizer, train_ids, valid_ids=None, test_ids=None, *,
                 ss_prob: float = 0.0, feedback: str = "sample", free_eval: bool = True,
                 **kwargs):
        if not 0.0 <= ss_prob <= 1.0:
            raise ValueError(f"ss_prob must be in [0, 1], got {ss_prob}")
        super().__init__(model, tokenizer, train_ids, valid_ids, test_ids, **kwargs)
        self.ss_prob, self.feedback, self.free_eval = ss_prob, feedback, free_eval

    def train_batch(self, i: int, rng: np.random.Generator):
        x, y = get_window(self.rows, i, self.T)
        loss, n, self.carry = self.model.loss(x, y, self.carry, rng=rng, ss_prob=self.ss_prob,
                                              feedback=self.feedback)
        return loss, n

    def evaluate(self, split: str):
        out = super().evaluate(split)
        if out is None or not self.free_eval:
            return out
        ids = self.valid_ids if split == "valid" else self.test_ids
        r = evaluate_free_running(self.model, ids, self.eval_batch_size, self.T,
                                  feedback=self.feedback, world=self.world)
        out["free_loss"], out["free_ppl"] = r["loss"], r["ppl"]
        return out

    def payload(self):
        config, vocab = super().payload()
        config.update(ss_prob=self.ss_prob, feedback=self.feedback)
        return config, vocab
