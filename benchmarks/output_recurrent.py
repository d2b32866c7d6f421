"""Output-recurrent LM vs LSTM LM: training speed, teacher-forced and free-running perplexity.

For each data set (Tiny Shakespeare, character level, nanoGPT's 90/10 split; PTB, word level)
trains, each for the same wall-clock budget with the shared :class:`~rnnkit.train.trainer.Trainer`
(Adam, global-norm clip 1):

* ``lstm``: rnnkit's :class:`~rnnkit.tasks.lm.model.LanguageModel` with an LSTM stack;
* ``or-tf``: :class:`~rnnkit.tasks.lm.output_recurrent.OutputRecurrentLM`, teacher forcing;
* ``or-ss<p>``: the same with scheduled sampling, fed-back token drawn from the model with
  probability p at every step.

and reports training tokens per second (train_batch only: forward, backward; not the optimiser
step or validation), then for the best checkpoint the teacher-forced perplexity and, for the
output-recurrent models, the free-running one (every fed-back token drawn from the model's own
previous prediction; the true token still arrives as the input).  A Kneser-Ney bigram
(:mod:`rnnkit.tasks.ngram.model`) is listed for reference: teacher-forced, the output-recurrent LM
conditions on one token, so it *is* a neural bigram model.

    RNNKIT_DATA=../shared/data OPENBLAS_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/output_recurrent.py --minutes 2          # 6 runs of 2 min + evaluation
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnkit.tasks.lm.inference import load_lm
from rnnkit.tasks.lm.model import LanguageModel, LMConfig
from rnnkit.tasks.lm.output_recurrent import ORConfig, OutputRecurrentLM
from rnnkit.tasks.lm.output_recurrent_task import OutputRecurrentTask, evaluate_free_running
from rnnkit.tasks.lm.task import LMTask, evaluate_lm
from rnnkit.tasks.ngram.model import NGramConfig, NGramLM
from rnnkit.text.datasets import DATASETS, load_corpus
from rnnkit.text.tokenizers import make_tokenizer
from rnnkit.train.trainer import TrainConfig, Trainer

# per data set: batching and model sizes (PTB: the Zaremba et al. "small" LSTM, 2 x 200)
SETUPS = {
    "tinyshakespeare": {"B": 32, "T": 64, "lstm": (64, 256, 2), "or_hidden": 256, "lr": 2e-3},
    "ptb": {"B": 20, "T": 35, "lstm": (200, 200, 2), "or_hidden": 200, "lr": 2e-3},
}


def _timed(task):
    """Wrap ``task.train_batch`` to add up its seconds and tokens."""
    inner = task.train_batch
    task.seconds, task.tokens = 0.0, 0

    def train_batch(i, rng):
        t0 = time.perf_counter()
        loss, n = inner(i, rng)
        task.seconds += time.perf_counter() - t0
        task.tokens += n
        return loss, n

    task.train_batch = train_batch
    return task


def run_one(name, data, tok, ids, setup, args, out: Path) -> dict:
    V = len(tok.vocab)
    B, T, lr = setup["B"], setup["T"], setup["lr"]
    if name == "lstm":
        E, H, L = setup["lstm"]
        model = LanguageModel(LMConfig(vocab_size=V, cell="lstm", embed_size=E, hidden_size=H,
                                       num_layers=L), rng=np.random.default_rng(args.seed))
        task = LMTask(model, tok, ids["train"], ids["valid"], ids.get("test"), batch_size=B,
                      bptt=T, eval_batch_size=32)
    else:
        ss = 0.0 if name == "or-tf" else float(name[len("or-ss"):])
        model = OutputRecurrentLM(ORConfig(vocab_size=V, hidden_size=setup["or_hidden"]),
                                  rng=np.random.default_rng(args.seed))
        task = OutputRecurrentTask(model, tok, ids["train"], ids["valid"], ids.get("test"),
                                   ss_prob=ss, batch_size=B, bptt=T, eval_batch_size=32)
    _timed(task)
    cfg = TrainConfig(epochs=10**6, minutes=args.minutes, lr=lr, clip=1.0, progress=False,
                      seed=args.seed, log_every=100)
    t0 = time.perf_counter()
    summary = Trainer(task, cfg, out / f"{data}-{name}", echo=lambda s: None).fit()
    wall = time.perf_counter() - t0
    if name == "lstm":
        best, _, _ = load_lm(out / f"{data}-{name}" / "best")
    else:
        best, _, _ = load_lm(out / f"{data}-{name}" / "best")
    row = {"data": data, "model": name, "params": model.num_parameters(),
           "tokens_per_s": task.tokens / task.seconds, "train_tokens": task.tokens,
           "steps": summary.get("step"), "wall_s": wall}
    for split in ("valid", "test"):
        if ids.get(split) is None:
            continue
        r = evaluate_lm(best, ids[split], 32, T)
        row[f"{split}_tf_loss"] = r["loss"]
        if name != "lstm":
            f = evaluate_free_running(best, ids[split], 32, T, feedback="sample")
            g = evaluate_free_running(best, ids[split], 32, T, feedback="argmax")
            row[f"{split}_free_loss"] = f["loss"]
            row[f"{split}_argmax_loss"] = g["loss"]
    return row


def bigram_row(data, level, ids, V) -> dict:
    lm = NGramLM(NGramConfig(vocab_size=V, order=2, smoothing="mkn")).fit(ids["train"])
    row = {"data": data, "level": level, "model": "KN bigram (counts)",
           "params": sum(lm.num_ngrams())}
    for split in ("valid", "test"):
        if ids.get(split) is not None:
            row[f"{split}_tf_loss"] = -float(lm.logprobs(ids[split]).mean())
    return row


def fmt(loss, level) -> str:
    if loss is None:
        return "-"
    ppl = math.exp(loss)
    return f"{ppl:.2f} ({loss / math.log(2):.3f} bpc)" if level == "char" else f"{ppl:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["tinyshakespeare", "ptb"])
    ap.add_argument("--ss", type=float, nargs="+", default=[0.25],
                    help="scheduled-sampling probabilities to run besides teacher forcing")
    ap.add_argument("--minutes", type=float, default=2.0, help="training budget per model")
    ap.add_argument("--models", nargs="+", default=None,
                    help="subset of: lstm or-tf or-ss<p> (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    names = args.models or ["lstm", "or-tf"] + [f"or-ss{p:g}" for p in args.ss]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            texts = load_corpus(data)
            level = DATASETS[data].level
            tok = make_tokenizer(level).fit(texts["train"])
            ids = {k: tok.encode(v, warn=False) if v else None for k, v in texts.items()}
            rows.append(bigram_row(data, level, ids, len(tok.vocab)))
            for name in names:
                row = run_one(name, data, tok, ids, SETUPS[data], args, Path(tmp))
                row["level"] = level
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{args.minutes:g} minutes of training per model (time budget includes validation)\n")
    print("| data | model | params | train tokens/s | tokens seen | valid TF | valid free "
          "(sample) | valid free (argmax) | test TF | test free (sample) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lv = r["level"]
        tps = f"{r['tokens_per_s']:,.0f}" if "tokens_per_s" in r else "-"
        seen = f"{r['train_tokens']:,}" if "train_tokens" in r else "-"
        print(f"| {r['data']} | {r['model']} | {r['params']:,} | {tps} | {seen} | "
              f"{fmt(r.get('valid_tf_loss'), lv)} | {fmt(r.get('valid_free_loss'), lv)} | "
              f"{fmt(r.get('valid_argmax_loss'), lv)} | {fmt(r.get('test_tf_loss'), lv)} | "
              f"{fmt(r.get('test_free_loss'), lv)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
