"""A training loop of one's own on several processes with :mod:`rnnkit.distributed`.

A character language model on a small text, the global batch of ``B`` streams split across
the ranks; one ``Allreduce`` per step gives every rank the gradient of the global batch, so
the run takes the same steps on any number of processes::

    python examples/distributed_loop.py                      # one process
    mpiexec -n 2 python examples/distributed_loop.py         # two: the same losses

It prints the global mean loss every 10 steps (rank 0 only) and, at the end, the sum of the
weights (after checking that every rank holds the same ones).
"""

from __future__ import annotations

import numpy as np

from rnnkit import distributed as dist
from rnnkit.tasks.lm.model import LanguageModel, LMConfig
from rnnkit.text.batching import batchify, get_window, num_windows
from rnnkit.train.optim import clip_grad_norm, make_optimizer

TEXT = "".join(f"the {w} sat on the {v} mat. " for w in ("cat", "dog", "hen", "fox")
               for v in ("red", "big", "old"))


def main(steps: int = 40, B: int = 6, T: int = 12) -> None:
    world = dist.world()
    chars = sorted(set(TEXT))
    ids = np.array([chars.index(c) for c in TEXT * 4])
    cfg = LMConfig(vocab_size=len(chars), embed_size=8, hidden_size=16, dtype="float64")
    model = LanguageModel(cfg, rng=np.random.default_rng(world.rank))  # differs per rank...
    dist.broadcast_parameters(model)  # ... until every rank takes rank 0's weights
    opt = make_optimizer("adam", model.parameters(), lr=0.01)
    lo, hi = world.part(B)
    streams = batchify(ids, B, T)[lo:hi]  # this rank's streams of the global batch
    state = None
    for step in range(steps):
        i = step % num_windows(streams, T)
        if i == 0:
            state = None
        x, y = get_window(streams, i, T)
        model.zero_grad()
        loss, n, state = model.loss(x, y, state)
        n_all, (loss_sum,) = dist.allreduce_grads(model, count=n, extra=[loss * n])
        clip_grad_norm(model.grads(), 1.0)
        opt.step(model.grads())
        if world.rank == 0 and (step + 1) % 10 == 0:
            print(f"step {step + 1}: loss {loss_sum / n_all:.6f}")
    world.check_weights(model)
    if world.rank == 0:
        print(f"sum of the weights {sum(float(p.sum()) for p in model.parameters().values()):.8f}")


if __name__ == "__main__":
    main()
