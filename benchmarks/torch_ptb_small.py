"""PyTorch's Zaremba et al. (2014) "small" LSTM on Penn Treebank, trained on this machine.

The reference point for the PTB validation curves (``valid_curves.py``): the same
configuration as the README's ``rnnkit train`` command for it, written in plain PyTorch.

* the vocabulary, the training stream and the batching are rnnkit's own (``load_corpus``,
  the word tokenizer fitted on the training split, ``batchify`` into B = 20 streams), so both
  libraries see the same windows;
* embedding 200, 2 x 200 ``nn.LSTM``, untied linear output, no dropout, every weight
  U(+-0.1);
* T = 20, the state carried across windows (detached) and reset at each epoch;
* SGD lr 20 on the per-token mean loss (lr 1 on the paper's per-window sum), the gradient norm
  clipped at 0.25 (5 on the sum), the rate halved each epoch after epoch 4, 13 epochs;
* validation and test with 10 parallel streams, the state carried through the split.

It writes ``OUT/metrics.jsonl`` in ``rnnkit train``'s format (one ``epoch`` record per epoch
with the wall time since the start, ``train_ppl`` and ``valid_ppl``) and prints
``test perplexity: X`` at the end, so ``valid_curves.py`` draws it beside rnnkit's runs::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE RNNKIT_DATA=../shared/data \\
        python benchmarks/torch_ptb_small.py --threads 2 --out runs/torch-ptb-small \\
        | tee runs/torch-ptb-small/train.log

The machine, torch's thread count and the load average are printed before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from benchutil import load_average, print_header, start


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None,
                    help="the data root (default: $RNNKIT_DATA, else ../shared/data)")
    ap.add_argument("--threads", type=int, default=None, help="torch and BLAS threads")
    ap.add_argument("--epochs", type=int, default=13)
    ap.add_argument("--max-steps", type=int, default=None,
                    help="stop each epoch after this many windows (a smoke test)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="directory for metrics.jsonl")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.max_steps is not None and args.max_steps < 1:
        ap.error(f"--max-steps must be at least 1, got {args.max_steps}")
    return args


def load_ptb(data_dir: str | None):
    """``(train, valid, test)`` id arrays and the vocabulary size, as ``rnnkit train`` reads
    PTB at the word level."""
    import numpy as np

    from rnnkit.text.datasets import load_corpus
    from rnnkit.text.tokenizers import make_tokenizer

    root = data_dir or os.environ.get("RNNKIT_DATA") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
    texts = load_corpus("ptb", root=root, download=False)
    tok = make_tokenizer("word").fit(texts["train"])
    ids = [np.asarray(tok.encode(texts[k]), dtype=np.int64) for k in ("train", "valid", "test")]
    return (*ids, len(tok.vocab))


def build(V: int, seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class SmallLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, 200)
            self.rnn = nn.LSTM(200, 200, 2, batch_first=True)
            self.out = nn.Linear(200, V)
            for p in self.parameters():
                nn.init.uniform_(p, -0.1, 0.1)

        def forward(self, x, state):
            h, state = self.rnn(self.embed(x), state)
            return self.out(h), state

    return SmallLM()


def run_split(model, streams, T: int, *, opt=None, clip: float = 0.25, max_steps=None):
    """Mean loss per token over one pass of ``streams`` (B, N): trains when ``opt`` is given."""
    import torch
    import torch.nn.functional as F

    total, count, state = 0.0, 0, None
    n = streams.shape[1] - 1
    for k, i in enumerate(range(0, n, T)):
        if max_steps is not None and k >= max_steps:
            break
        t = min(T, n - i)
        x, y = streams[:, i : i + t], streams[:, i + 1 : i + 1 + t]
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        if opt is not None:
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
        total += float(loss.detach()) * y.numel()
        count += y.numel()
    return total / max(count, 1)


def main(argv=None) -> int:
    args = parse_args(argv)
    info, _ = start("torch_ptb_small.py", args.threads, "wall")
    import torch

    print_header(info)
    os.makedirs(args.out, exist_ok=True)
    train, valid, test, V = load_ptb(args.data_dir)

    def streams(ids, B):
        n = len(ids) // B
        return torch.from_numpy(ids[: n * B].reshape(B, n))

    tr, va, te = streams(train, 20), streams(valid, 10), streams(test, 10)
    model = build(V, args.seed)
    opt = torch.optim.SGD(model.parameters(), lr=20.0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; vocabulary {V}, "
          f"{len(train):,} training tokens", flush=True)
    t0 = time.perf_counter()
    best, best_state = math.inf, None
    with open(os.path.join(args.out, "metrics.jsonl"), "w", encoding="utf-8") as log:
        for epoch in range(1, args.epochs + 1):
            lr = 20.0 * 0.5 ** max(0, epoch - 4)
            for g in opt.param_groups:
                g["lr"] = lr
            model.train()
            t_ep = time.perf_counter()
            train_loss = run_split(model, tr, 20, opt=opt, max_steps=args.max_steps)
            tokens = tr.shape[0] * min(tr.shape[1] - 1, 20 * (args.max_steps or 10**12))
            rate = tokens / (time.perf_counter() - t_ep)
            model.eval()
            with torch.no_grad():
                valid_loss = run_split(model, va, 20, max_steps=args.max_steps)
            now = time.perf_counter() - t0
            rec = {"event": "epoch", "epoch": epoch, "time": now, "lr": lr,
                   "train_ppl": math.exp(train_loss), "valid_loss": valid_loss,
                   "valid_ppl": math.exp(valid_loss), "tokens_per_s": rate}
            log.write(json.dumps({"event": "step", "epoch": epoch, "tokens_per_s": rate}) + "\n")
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(f"epoch {epoch:2d} | lr {lr:g} | train ppl {rec['train_ppl']:.1f} | valid ppl "
                  f"{rec['valid_ppl']:.1f} | {rate:,.0f} tokens/s | {now / 60:.1f} min",
                  flush=True)
            if valid_loss < best:
                best = valid_loss
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best_state)
        model.eval()
        with torch.no_grad():
            test_loss = run_split(model, te, 20, max_steps=args.max_steps)
        wall = time.perf_counter() - t0
        log.write(json.dumps({"event": "test", "time": wall, "test_loss": test_loss,
                              "test_ppl": math.exp(test_loss)}) + "\n")
    print(f"wall time {wall / 60:.1f} min; load average {info['load_before']:.2f} before, "
          f"{load_average():.2f} after")
    print(f"test perplexity: {math.exp(test_loss):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
