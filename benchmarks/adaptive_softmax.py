"""Step time of the output layer, full softmax against adaptive softmax, rnnkit beside PyTorch.

Per case, the time of one training step of the output layer alone (forward, loss and backward
from N = B*T hidden vectors of width D to the mean cross-entropy over V tokens):

* ``full``: ``Linear(D, V)`` + softmax cross-entropy (rnnkit ``softmax_cross_entropy``;
  torch ``F.cross_entropy``);
* ``adaptive``: rnnkit ``AdaptiveSoftmax.nll``; torch ``nn.AdaptiveLogSoftmaxWithLoss``
  (``head_bias=True``, ``div_value=4``), same cut-offs;

and, with ``--lm``, one whole training step of rnnkit's ``LanguageModel`` (2 x 650 LSTM, PTB
sizes) with each output layer.  Targets are drawn from a Zipf distribution over the ids (ids
are sorted by frequency, as a vocabulary is), so the tail clusters get the share of rows a
real text gives them.  Timing: ``benchutil.measure`` (interleaved rounds, median).

    .venv/bin/python benchmarks/adaptive_softmax.py --quick --threads 1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/adaptive_softmax.py --lm
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from benchutil import load_average, measure, print_header, start

# (name, N = B*T, D, V, cut-offs)
CASES = [
    ("PTB (B 20, T 35, D 650, V 10k)", 700, 650, 10_000, [2000, 5000]),
    ("synthetic (B 20, T 35, D 512, V 100k)", 700, 512, 100_000, [2000, 10_000, 50_000]),
]


def zipf_targets(rng, N, V, a=1.1):
    """Ids from a Zipf law truncated to ``V`` (id 0 the most frequent)."""
    ranks = np.arange(1, V + 1, dtype=np.float64)
    p = ranks ** -a
    p /= p.sum()
    return rng.choice(V, size=N, p=p)


def output_layer_fns(N, D, V, cut, rng):
    import torch

    from rnnkit.nn.adaptive_softmax import AdaptiveSoftmax
    from rnnkit.nn.layers import Linear
    from rnnkit.nn.losses import softmax_cross_entropy

    x = rng.standard_normal((N, D)).astype(np.float32)
    y = zipf_targets(rng, N, V)
    lin = Linear(D, V, rng=rng)
    asm = AdaptiveSoftmax(D, V, cut, rng=rng)

    def ours_full():
        z, cache = lin.forward(x)
        _, dz, _ = softmax_cross_entropy(z, y, overwrite=True)
        lin.backward(dz, cache)

    def ours_adaptive():
        asm.nll(x, y)

    xt = torch.tensor(x, requires_grad=True)
    yt = torch.from_numpy(y)
    tlin = torch.nn.Linear(D, V)
    tasm = torch.nn.AdaptiveLogSoftmaxWithLoss(D, V, cut, div_value=4.0, head_bias=True)

    def torch_full():
        torch.nn.functional.cross_entropy(tlin(xt), yt).backward()

    def torch_adaptive():
        tasm(xt, yt).loss.backward()

    share = {f"cluster {i}": float(np.mean((y >= lo) & (y < hi)))
             for i, (lo, hi) in enumerate(zip(cut, [*cut[1:], V]))}
    return {"rnnkit full": ours_full, "rnnkit adaptive": ours_adaptive,
            "torch full": torch_full, "torch adaptive": torch_adaptive}, share


def lm_fns(rng):
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    V, B, T = 10_000, 20, 35
    ids = zipf_targets(rng, B * (T + 1), V).reshape(B, T + 1)
    fns = {}
    for name, cut in (("rnnkit LM full", None), ("rnnkit LM adaptive", [2000, 5000])):
        cfg = LMConfig(vocab_size=V, cell="lstm", embed_size=650, hidden_size=650, num_layers=2,
                       dropout=0.5, adaptive_softmax=cut)
        model = LanguageModel(cfg, rng=0)
        drop = np.random.default_rng(1)

        def step(model=model, drop=drop):
            model.zero_grad()
            model.loss(ids[:, :-1], ids[:, 1:], rng=drop)

        fns[name] = step
    return fns


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=None, help="BLAS and torch threads")
    p.add_argument("--quick", action="store_true", help="3 short rounds per case")
    p.add_argument("--lm", action="store_true", help="also time whole LM training steps")
    args = p.parse_args(argv)
    info, clock = start("adaptive_softmax.py", args.threads, "wall")
    print_header(info)
    print(f"load average (1 min) before: {info['load_before']:.2f}")
    repeats, target, budget = (3, 0.05, 5.0) if args.quick else (9, 0.2, 30.0)
    rng = np.random.default_rng(0)
    for name, N, D, V, cut in CASES:
        fns, share = output_layer_fns(N, D, V, cut, rng)
        m = measure(fns, repeats, target, budget, clock)["median_s"]
        shares = ", ".join(f"{k} {v:.0%}" for k, v in share.items())
        print(f"\n{name}, cut-offs {cut}; rows per tail: {shares}")
        print(f"{'':18s} {'ms/step':>9s}")
        for k, s in m.items():
            print(f"{k:18s} {1e3 * s:9.2f}")
        print(f"full / adaptive: rnnkit {m['rnnkit full'] / m['rnnkit adaptive']:.2f}x, "
              f"torch {m['torch full'] / m['torch adaptive']:.2f}x; rnnkit adaptive vs torch "
              f"adaptive: {m['torch adaptive'] / m['rnnkit adaptive']:.2f} (above 1: rnnkit "
              "faster)")
    if args.lm:
        m = measure(lm_fns(rng), repeats, target, budget, clock)["median_s"]
        print("\nrnnkit LanguageModel training step, 2 x 650 LSTM, B 20, T 35, V 10k")
        for k, s in m.items():
            print(f"{k:20s} {1e3 * s:9.1f} ms  ({700 / s:,.0f} tokens/s)")
        print(f"full / adaptive: {m['rnnkit LM full'] / m['rnnkit LM adaptive']:.2f}x")
    print(f"\nload average (1 min) after: {load_average():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
