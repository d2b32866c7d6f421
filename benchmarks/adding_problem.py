"""The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015, section 4.1).

Each input is a sequence of T pairs ``(u_t, m_t)``: ``u_t ~ U(0, 1)`` and a marker ``m_t`` that
is 1 at exactly two steps, one drawn uniformly from the first half and one from the second
half, 0 elsewhere.  The target is the sum of the two marked numbers.  Predicting 1 whatever the
input scores MSE = Var(u + u') = 1/6 ~ 0.167; a model that solves the task gets far below it.

Models (one layer, H hidden units, a linear read-out of the last hidden state, squared error):

* ``tanh``: Elman RNN with tanh, orthogonal recurrent initialisation (rnnkit's default);
* ``irnn``: Elman RNN with ReLU and ``W_h = I`` (``init="identity", init_scale=1``), zero bias;
* ``gru``, ``lstm``: rnnkit's defaults (LSTM forget-gate bias 1).

All get the same number of updates, the same fresh random batches (one generator per T, so
every model sees the same data), Adam with the same learning rate and global-norm clipping.
The test set is 1,000 fixed sequences per T.  Prints a Markdown table of test MSE at several
points in training and the first evaluation at which MSE < 0.01.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/adding_problem.py            # ~10 min
    ... benchmarks/adding_problem.py --T 50 --steps 300 --models irnn lstm          # a quick look
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rnnkit.nn.layers import Linear
from rnnkit.nn.recurrent import GRU, LSTM, RNN
from rnnkit.train.optim import clip_grad_norm, make_optimizer

MODELS = ("tanh", "irnn", "gru", "lstm")


def adding_batch(rng: np.random.Generator, B: int, T: int):
    """``x`` (B, T, 2) float32 and targets ``y`` (B,)."""
    u = rng.random((B, T))
    m = np.zeros((B, T))
    half = T // 2
    rows = np.arange(B)
    m[rows, rng.integers(0, half, B)] = 1.0
    m[rows, rng.integers(half, T, B)] = 1.0
    x = np.stack([u, m], axis=-1).astype(np.float32)  # (B, T, 2)
    return x, (u * m).sum(axis=1).astype(np.float32)


def make_model(name: str, H: int, rng: np.random.Generator):
    if name == "tanh":
        rnn = RNN(2, H, nonlinearity="tanh", rng=rng)
    elif name == "irnn":
        rnn = RNN(2, H, nonlinearity="relu", init="identity", init_scale=1.0, rng=rng)
    elif name == "gru":
        rnn = GRU(2, H, rng=rng)
    elif name == "lstm":
        rnn = LSTM(2, H, rng=rng)
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return rnn, Linear(H, 1, rng=rng)


def predict(rnn, head, x):
    out, _, cache = rnn.forward(x)
    pred, head_cache = head.forward(out[:, -1])  # (B, 1)
    return pred[:, 0], (out.shape, cache, head_cache)


def train_one(name: str, T: int, args) -> dict:
    rnn, head = make_model(name, args.hidden, np.random.default_rng(args.seed))
    rnn.train()
    params = {**{f"rnn.{k}": v for k, v in rnn.parameters().items()},
              **{f"head.{k}": v for k, v in head.parameters().items()}}
    grads = {**{f"rnn.{k}": v for k, v in rnn.grads().items()},
             **{f"head.{k}": v for k, v in head.grads().items()}}
    opt = make_optimizer("adam", params, lr=args.lr)
    data = np.random.default_rng(1000 + T)  # the same batches for every model
    x_test, y_test = adding_batch(np.random.default_rng(2000 + T), args.test_size, T)
    curve, solved = {}, None
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = adding_batch(data, args.batch_size, T)
        rnn.zero_grad()
        head.zero_grad()
        pred, (shape, cache, head_cache) = predict(rnn, head, x)
        dpred = (2.0 / len(y)) * (pred - y)  # d mean squared error
        dlast = head.backward(dpred[:, None].astype(np.float32), head_cache)
        dout = np.zeros(shape, np.float32)
        dout[:, -1] = dlast
        rnn.backward(dout, cache)
        clip_grad_norm(grads, args.clip)
        opt.step(grads)
        if step % args.eval_every == 0 or step == args.steps:
            p, _ = predict(rnn, head, x_test)
            mse = float(np.mean((p - y_test) ** 2))
            curve[step] = mse
            if solved is None and mse < 0.01:
                solved = step
    return {"model": name, "T": T, "curve": curve, "final": curve[args.steps],
            "solved_at": solved, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--steps", type=int, default=1500, help="updates per model and T")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--test-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    print(f"adding problem: H={args.hidden}, batch {args.batch_size}, {args.steps} Adam updates "
          f"(lr {args.lr:g}, clip {args.clip:g}) per model; baseline MSE 0.167\n")
    results = []
    for T in args.T:
        for name in args.models:
            r = train_one(name, T, args)
            results.append(r)
            print(f"  T={T} {name}: MSE {r['final']:.4f} ({r['seconds']:.0f}s)", flush=True)
    points = sorted(results[0]["curve"])
    print("\n| T | model | " + " | ".join(f"MSE @{s}" for s in points)
          + " | first MSE < 0.01 | seconds |")
    print("|---|---|" + "---|" * len(points) + "---|---|")
    for r in results:
        print(f"| {r['T']} | {r['model']} | "
              + " | ".join(f"{r['curve'][s]:.4f}" for s in points)
              + f" | {r['solved_at'] or '-'} | {r['seconds']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
