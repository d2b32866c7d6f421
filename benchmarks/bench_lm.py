"""End-to-end language-model training speed: rnnkit against PyTorch on the CPU, side by side.

One *training step* is what ``rnnkit train`` does per window (``rnnkit/train/trainer.py`` and
``rnnkit/tasks/lm/task.py``): embedding -> dropout -> LSTM stack -> dropout -> linear ->
softmax cross-entropy averaged over the B*T tokens -> backward -> clip the global gradient norm
-> optimiser step, with the LSTM state of one window carried (detached) into the next::

    rnnkit:  model.zero_grad(); loss, n, carry = model.loss(x, y, carry, rng=rng)
             clip_grad_norm(grads, clip); opt.step(grads)
    torch:   opt.zero_grad(); logits, carry = model(x, detach(carry))
             F.cross_entropy(logits, y).backward(); clip_grad_norm_(params, clip); opt.step()

An *evaluation step* is the forward pass and the loss only (rnnkit ``model.eval()`` and
``model.loss(..., backward=False)``, as ``evaluate_lm`` does; torch ``model.eval()`` under
``torch.no_grad()``), the state carried as well.

Configurations (``CONFIGS``), both float32:

* ``ptb``: Zaremba et al. (2014) "small": word level, V = 10k, embedding 200, 2 x 200 LSTM,
  B = 20, T = 20, no dropout, weights U(+-0.1), SGD lr 20, clip 0.25;
* ``shakespeare``: Tiny Shakespeare characters (V = 65 + rnnkit's specials), embedding 64,
  2 x 512 LSTM, dropout 0.2, B = 64, T = 128, Adam 2e-3, clip 1.

Both libraries start from the same weights (rnnkit's, copied into torch) and read the same real
windows, in order (``../shared/data/ptb`` and ``../shared/data/tinyshakespeare``, or
``--data-dir``; random ids of the same vocabulary size where a data set is missing).  A one-time
check confirms that the two losses and gradient norms agree on the first window.  Timing is the
interleaved median of ``benchutil.measure`` (see ``bench_layers.py``): rounds of a few steps of
rnnkit then a few of torch, order alternating; ratio = torch's time / rnnkit's (above 1:
rnnkit is faster); ``spread`` = the larger (max - min) / median of the two.

    .venv/bin/python benchmarks/bench_lm.py --threads 1 --clock cpu      # the headline table
    .venv/bin/python benchmarks/bench_lm.py --quick --configs ptb --json r.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass

from benchutil import load_average, measure, print_header, start, timed_row

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class LMBench:
    """One benchmark configuration (the model, the batches and the optimiser)."""

    name: str
    data: str  # registry name of the data set
    level: str
    vocab: int  # vocabulary size for random ids when the data set is missing
    embed: int
    hidden: int
    layers: int
    dropout: float
    B: int
    T: int
    optimizer: str  # "sgd" | "adam"
    lr: float
    clip: float
    init: str  # LMConfig.init


CONFIGS = {
    "ptb": LMBench("ptb", "ptb", "word", 10_000, 200, 200, 2, 0.0, 20, 20, "sgd", 20.0, 0.25,
                   "uniform"),
    "shakespeare": LMBench("shakespeare", "tinyshakespeare", "char", 65, 64, 512, 2, 0.2, 64,
                           128, "adam", 2e-3, 1.0, "default"),
}  # fmt: skip
MODES = ("train", "eval")


# -- data --------------------------------------------------------------------------------
def load_streams(cfg: LMBench, data_dir: str | None, max_tokens: int):
    """``(streams (B, N), vocab size, source)`` for ``cfg``: the training text of the real
    data set cut into B streams as ``LMTask`` does, or random ids if the data is missing."""
    import numpy as np

    from rnnkit.errors import DataError
    from rnnkit.text.batching import batchify
    from rnnkit.text.datasets import load_corpus
    from rnnkit.text.tokenizers import make_tokenizer

    try:
        texts = load_corpus(cfg.data, root=data_dir, download=False)
        fit_on = texts["train"] if cfg.level == "word" else "".join(
            t or "" for t in texts.values())
        tok = make_tokenizer(cfg.level).fit(fit_on)
        ids, V, source = tok.encode(texts["train"]), len(tok.vocab), f"{cfg.data} train"
    except DataError:
        rng = np.random.default_rng(0)
        V = cfg.vocab
        ids, source = rng.integers(0, V, size=max_tokens), "random ids"
    ids = ids[:max_tokens]
    return batchify(np.asarray(ids), cfg.B, cfg.T), V, source


# -- models ------------------------------------------------------------------------------
def make_models(cfg: LMBench, V: int, seed: int = 1):
    """An rnnkit ``LanguageModel`` and the equivalent torch module with the same weights."""
    import numpy as np
    import torch
    from torch import nn

    from rnnkit.interop import torch_state_dict
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    ours = LanguageModel(LMConfig(vocab_size=V, cell="lstm", embed_size=cfg.embed,
                                  hidden_size=cfg.hidden, num_layers=cfg.layers,
                                  dropout=cfg.dropout, init=cfg.init),
                         rng=np.random.default_rng(seed))  # fmt: skip

    class TorchLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, cfg.embed)
            self.drop = nn.Dropout(cfg.dropout)
            self.rnn = nn.LSTM(cfg.embed, cfg.hidden, cfg.layers, dropout=cfg.dropout,
                               batch_first=True)
            self.out = nn.Linear(cfg.hidden, V)

        def forward(self, x, state):
            h, state = self.rnn(self.drop(self.embed(x)), state)
            return self.out(self.drop(h)), state

    theirs = TorchLM()
    with torch.no_grad():
        theirs.embed.weight.copy_(torch.from_numpy(ours.embed.param["W"]))
        for k, v in torch_state_dict(ours.rnn).items():
            getattr(theirs.rnn, k).copy_(torch.from_numpy(v))
        theirs.out.weight.copy_(torch.from_numpy(np.ascontiguousarray(ours.out.param["W"].T)))
        theirs.out.bias.copy_(torch.from_numpy(ours.out.param["b"]))
    return ours, theirs


def make_optimizers(cfg: LMBench, ours, theirs):
    import torch

    from rnnkit.train.optim import SGD, Adam

    if cfg.optimizer == "sgd":
        return SGD(ours.parameters(), lr=cfg.lr), torch.optim.SGD(theirs.parameters(), lr=cfg.lr)
    return Adam(ours.parameters(), lr=cfg.lr), torch.optim.Adam(theirs.parameters(), lr=cfg.lr)


def check_same(cfg: LMBench, ours, theirs, streams) -> dict:
    """Loss and gradient norm of both on the first window (zero state, dropout off)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from rnnkit.text.batching import get_window
    from rnnkit.train.optim import global_norm

    x, y = get_window(streams, 0, cfg.T)
    ours.eval()
    theirs.eval()
    ours.zero_grad()
    loss, _, _ = ours.loss(x, y)
    norm = global_norm(ours.grads())
    theirs.zero_grad()
    logits, _ = theirs(torch.from_numpy(np.ascontiguousarray(x)), None)
    ref = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                          torch.from_numpy(np.ascontiguousarray(y)).reshape(-1))
    ref.backward()
    # torch's two LSTM biases get the same gradient, rnnkit's single b gets it once
    ref_norm = float(torch.nn.utils.get_total_norm(
        [p.grad for k, p in theirs.named_parameters() if "bias_hh" not in k]))
    ours.zero_grad()
    theirs.zero_grad()
    ours.train()
    theirs.train()
    out = {"loss": loss, "torch_loss": ref.item(), "grad_norm": norm, "torch_grad_norm": ref_norm}
    if not (abs(loss - out["torch_loss"]) < 1e-4 * max(1.0, abs(loss))
            and abs(norm - ref_norm) < 1e-3 * max(1e-3, ref_norm)):
        raise SystemExit(f"bench_lm: {cfg.name}: rnnkit and torch disagree on the first window: "
                         f"{out}")
    return out


# -- one case: {"rnnkit": step, "torch": step} ----------------------------------------------
def step_fns(cfg: LMBench, mode: str, ours, theirs, streams):
    """Callables that each run one step on the next window (state carried, reset per pass)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from rnnkit.text.batching import get_window, num_windows
    from rnnkit.train.optim import clip_grad_norm

    n = num_windows(streams, cfg.T)
    windows = [get_window(streams, i, cfg.T) for i in range(n)]
    twindows = [tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in w) for w in windows]
    train = mode == "train"
    ours.train(train)
    theirs.train(train)
    opt, topt = make_optimizers(cfg, ours, theirs) if train else (None, None)
    grads = ours.grads()
    params = list(theirs.parameters())
    rng = np.random.default_rng(0)
    box = {"i": 0, "carry": None, "ti": 0, "tcarry": None}

    def run_ours():
        i = box["i"]
        x, y = windows[i]
        if train:
            ours.zero_grad()
            _, _, box["carry"] = ours.loss(x, y, box["carry"], rng=rng)
            clip_grad_norm(grads, cfg.clip)
            opt.step(grads)
        else:
            _, _, box["carry"] = ours.loss(x, y, box["carry"], backward=False)
        box["i"] = (i + 1) % n
        if box["i"] == 0:
            box["carry"] = None

    def forward_theirs(x, y):
        state = box["tcarry"]
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, box["tcarry"] = theirs(x, state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def run_theirs():
        i = box["ti"]
        x, y = twindows[i]
        if train:
            topt.zero_grad()
            forward_theirs(x, y).backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            topt.step()
        else:
            with torch.no_grad():
                forward_theirs(x, y)
        box["ti"] = (i + 1) % n
        if box["ti"] == 0:
            box["tcarry"] = None

    return {"rnnkit": run_ours, "torch": run_theirs}


# -- report ------------------------------------------------------------------------------
def print_rows(rows: list) -> None:
    print()
    print(f"{'config':<12} {'mode':<5} {'B':>3} {'T':>4} {'V':>6} {'rnnkit ms/step':>15} "
          f"{'torch ms/step':>14} {'rnnkit tok/s':>13} {'torch tok/s':>12} {'ratio':>6} "
          f"{'spread':>7}")  # fmt: skip
    for r in rows:
        print(f"{r['config']:<12} {r['mode']:<5} {r['B']:>3} {r['T']:>4} {r['V']:>6} "
              f"{r['rnnkit_s'] * 1e3:>15.1f} {r['torch_s'] * 1e3:>14.1f} "
              f"{r['rnnkit_tok_s']:>13,.0f} {r['torch_tok_s']:>12,.0f} {r['ratio']:>6.2f} "
              f"{r['spread']:>6.0%}")  # fmt: skip
    sys.stdout.flush()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="rnnkit vs torch: a whole language-model training / evaluation step "
                    "(float32, CPU, one process)")  # fmt: skip
    ap.add_argument("--quick", action="store_true",
                    help="3 short rounds per case instead of 9 (about a minute in all)")
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma-separated subset of {','.join(CONFIGS)} (default: all)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated subset of train,eval (default: both)")
    ap.add_argument("--threads", type=int, default=None, metavar="N",
                    help="threads for NumPy's BLAS and torch (default: as many as NumPy's "
                         "BLAS uses)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter (default); cpu: time.process_time, this "
                         "process's CPU time (meaningful with --threads 1 only)")
    ap.add_argument("--data-dir", default=None, metavar="DIR",
                    help="where the data sets live, as <DIR>/ptb/... (default: $RNNKIT_DATA, "
                         "else ../shared/data next to the repository)")
    ap.add_argument("--json", metavar="FILE", default=None,
                    help="also write the results and the machine description as JSON")
    args = ap.parse_args(argv)  # fmt: skip
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.configs or set(args.configs) - set(CONFIGS):
        ap.error(f"--configs must be a subset of {','.join(CONFIGS)}")
    if not args.modes or set(args.modes) - set(MODES):
        ap.error("--modes must be a subset of train,eval")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be at least 1, got {args.threads}")
    if args.data_dir is None:
        args.data_dir = os.environ.get("RNNKIT_DATA") or os.path.join(
            os.path.dirname(REPO), "shared", "data")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    info, clock = start("bench_lm", args.threads, args.clock)
    repeats, target, budget = (3, 0.05, 3.0) if args.quick else (9, 0.3, 60.0)
    max_tokens = 50_000 if args.quick else 400_000
    info.update(repeats=repeats, target_s=target, case_budget_s=budget, clock=args.clock)
    print_header(info)
    print(f"median of {repeats} interleaved rounds (at least 3, at most ~{budget:g} s per case) "
          f"of >= ~{target:g} s per library, {args.clock} clock; ratio > 1: rnnkit faster")
    rows, checks = [], {}
    for name in args.configs:
        cfg = CONFIGS[name]
        streams, V, source = load_streams(cfg, args.data_dir, max_tokens)
        ours, theirs = make_models(cfg, V)
        checks[name] = check_same(cfg, ours, theirs, streams)
        c = checks[name]
        print(f"{name}: {source}, V {V}; first-window loss rnnkit {c['loss']:.6f} torch "
              f"{c['torch_loss']:.6f}, gradient norm {c['grad_norm']:.6g} / "
              f"{c['torch_grad_norm']:.6g}")
        for mode in args.modes:
            ours, theirs = make_models(cfg, V)  # the same weights at the start of every case
            m = measure(step_fns(cfg, mode, ours, theirs, streams), repeats, target, budget,
                        clock)
            row = timed_row(m, config=name, mode=mode, B=cfg.B, T=cfg.T, V=V)
            row["rnnkit_tok_s"] = cfg.B * cfg.T / row["rnnkit_s"]
            row["torch_tok_s"] = cfg.B * cfg.T / row["torch_s"]
            rows.append(row)
            print(f"  {name} {mode}: ratio {row['ratio']:.2f}", file=sys.stderr, flush=True)
    info["load_after"] = load_average()
    print_rows(rows)
    print(f"\n1-minute load average: {info['load_before']:.2f} before, "
          f"{info['load_after']:.2f} after ({info['logical_cpus']} logical CPUs)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "configs": {k: vars(CONFIGS[k]) for k in args.configs},
                       "checks": checks, "rows": rows}, f, indent=1)  # fmt: skip
    return 0 if all(math.isfinite(r["ratio"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
