"""Which AWD-LSTM regulariser buys how much perplexity: an ablation on Penn Treebank (word level)
at a fixed time budget per configuration.

Every configuration is one ``rnnkit train`` run of ``--minutes`` (validation included), then the
test perplexity of its best checkpoint.  ``baseline`` is the 2 x 650 tied LSTM of the
project's notes (dropout 0.5, SGD lr 35, clip 0.15, decay 0.6 after epoch 5); each ``+name``
row adds one option to it; ``awd`` is AWD-LSTM's recipe scaled to a CPU (the ``README``'s
"AWD-LSTM options" command).  ``untied`` drops the weight tying, and
``untied+adaptive-softmax`` then swaps the full softmax for an adaptive one (cut-offs 2000,
5000), which has no tied form: the pair compares the two output layers at one budget.
All runs validate every ``--eval-every`` steps, which are also
NT-ASGD's checks.

    RNNKIT_DATA=../shared/data python benchmarks/awd_ptb.py --minutes 60 --out runs/awd-ptb
    python benchmarks/awd_ptb.py --minutes 1 --hidden 200 --only baseline,awd   # a smoke test

Resumable: the runs live in ``--out/<name>``; a run that was cut off continues with
``--resume`` (``rnnkit train``'s exact resume, so its budget counts the time already spent),
and a finished one is only read back.  Each result is written to ``--out/results.json`` as it
arrives and the table to ``--out/table.md``.  On an idle machine run it with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``; figures measured under load say so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchutil import machine_line

BASE = ["--data", "ptb", "--level", "word", "--cell", "lstm", "--layers", "2", "--dropout",
        "0.5", "--tie-weights", "--bptt", "35", "--batch-size", "20", "--eval-batch-size", "10",
        "--optimizer", "sgd", "--lr", "35", "--clip", "0.15", "--lr-decay", "0.6",
        "--decay-after", "5", "--init", "uniform", "--init-scale", "0.05"]
AWD = ["--data", "ptb", "--level", "word", "--cell", "lstm", "--layers", "2", "--tie-weights",
       "--batch-size", "20", "--eval-batch-size", "10", "--init", "uniform", "--init-scale",
       "0.05", "--bptt", "70", "--bptt-jitter", "--dropout", "0.25", "--dropout-input", "0.4",
       "--dropout-output", "0.4", "--dropout-embed", "0.1", "--weight-drop", "0.5", "--locked",
       "--ar", "2", "--tar", "1", "--optimizer", "nt-asgd", "--nonmono", "5", "--lr", "30",
       "--clip", "0.25", "--weight-decay", "1.2e-6"]
CONFIGS = {  # name -> options on top of BASE (or the whole recipe for "awd")
    "baseline": [],
    "+locked": ["--locked"],
    "+weight-drop": ["--weight-drop", "0.5"],
    "+dropout-embed": ["--dropout-embed", "0.1"],
    "+ar-tar": ["--ar", "2", "--tar", "1"],
    "+bptt-jitter": ["--bptt-jitter"],
    "+nt-asgd": ["--optimizer", "nt-asgd", "--nonmono", "5"],
    "awd": None,
    "untied": ["--no-tie"],
    "untied+adaptive-softmax": ["--no-tie", "--adaptive-softmax", "2000,5000"],
}


def command(name: str, args, out: Path) -> list[str]:
    cli = [sys.executable, "-m", "rnnkit.cli.main", "train"]
    if (out / "last").exists():  # cut off earlier: the exact resume keeps its options
        return [*cli, "--out", str(out), "--resume", "--no-progress", "--sample-length", "0"]
    opts = list(AWD) if CONFIGS[name] is None else BASE + CONFIGS[name]
    if "--no-tie" in opts:  # the adaptive softmax has no tied form: compare it untied
        opts = [o for o in opts if o not in ("--no-tie", "--tie-weights")]
    if args.dropout is not None and CONFIGS[name] is not None:
        opts[opts.index("--dropout") + 1] = str(args.dropout)
    size = str(args.hidden)
    return [*cli, *opts, "--embed", size, "--hidden", size, "--minutes", str(args.minutes),
            "--eval-every", str(args.eval_every), "--seed", str(args.seed), "--out", str(out),
            "--no-progress", "--sample-length", "0"]


def parse(stdout: str) -> dict:
    """The figures ``rnnkit train`` prints: best validation perplexity, steps, test
    perplexity."""
    out = {}
    m = re.search(r"best valid loss [\d.]+ \| ppl ([\d.e+]+)", stdout)
    if m:
        out["valid_ppl"] = float(m.group(1))
    m = re.search(r"(\d+)m(\d+)s, (\d+) steps", stdout)
    if m:
        out["minutes"] = int(m.group(1)) + int(m.group(2)) / 60
        out["steps"] = int(m.group(3))
    m = re.search(r"test perplexity: ([\d.e+]+)", stdout)
    if m:
        out["test_ppl"] = float(m.group(1))
    return out


def table(results: dict, args) -> str:
    base = results.get("baseline", {}).get("test_ppl")
    lines = [f"PTB word level, {args.minutes:g} minutes per configuration, embedding = hidden = "
             f"{args.hidden}, baseline dropout {args.dropout or 0.5:g}, seed {args.seed}.", "",
             "| configuration | steps | best valid ppl | test ppl | vs baseline | load |",
             "|---|---|---|---|---|---|"]
    for name in CONFIGS:
        r = results.get(name)
        if r is None:
            continue
        test = r.get("test_ppl")
        delta = f"{test - base:+.1f}" if test is not None and base is not None else "-"
        lines.append(f"| {name} | {r.get('steps', '-')} | {r.get('valid_ppl', '-')} | "
                     f"{test if test is not None else '-'} | {delta} | "
                     f"{r.get('load_before', 0):.1f}-{r.get('load_after', 0):.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="budget per configuration")
    ap.add_argument("--hidden", type=int, default=650, help="embedding and hidden size")
    ap.add_argument("--dropout", type=float, default=None,
                    help="the baseline's dropout (default 0.5, for 650 units)")
    ap.add_argument("--eval-every", type=int, default=200, help="steps between validations")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads of each run")
    ap.add_argument("--only", default=None, help="comma-separated configuration names")
    ap.add_argument("--out", type=Path, default=Path("runs/awd-ptb"))
    args = ap.parse_args()
    names = list(CONFIGS) if args.only is None else args.only.split(",")
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        sys.exit(f"awd_ptb.py: --only: unknown configurations {unknown}; "
                 f"choose from {', '.join(CONFIGS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(args.threads)}
    env.setdefault("RNNKIT_DATA", str(Path(__file__).resolve().parents[1] / ".." / "shared"
                                      / "data"))
    print(f"# {machine_line()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    for name in names:
        if "test_ppl" in results.get(name, {}):
            print(f"{name}: done (test ppl {results[name]['test_ppl']})", flush=True)
            continue
        cmd = command(name, args, args.out / name)
        print(f"{name}: {' '.join(cmd[2:])}", flush=True)
        load0, t0 = os.getloadavg()[0], time.monotonic()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            tail = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
            print(f"{name}: failed ({tail}); run again to resume it", flush=True)
            continue
        r = parse(p.stdout)
        r.update(load_before=load0, load_after=os.getloadavg()[0],
                 wall_minutes=(time.monotonic() - t0) / 60)
        results[name] = r
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        print(f"{name}: {r}", flush=True)
    text = table(results, args)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
