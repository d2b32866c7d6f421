"""n-gram baselines on Penn Treebank (word level) and Tiny Shakespeare (char level).

For each order 2..5 and each smoothing (modified Kneser-Ney, plain interpolated Kneser-Ney,
add-k), fits :class:`rnnkit.tasks.ngram.model.NGramLM` on the training stream and reports the
validation and test perplexity, the number of stored n-grams, and the fit and scoring times.
Tokens are the same ids an RNN language model sees (word level: ``<eos>`` ends every line;
PTB's vocabulary is 10,002 with ``<pad>`` and ``<bos>``, which get a tiny share of probability).

    RNNKIT_DATA=../shared/data OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/ngram_ptb.py
    ... benchmarks/ngram_ptb.py --data tinyshakespeare --orders 2 3 4 5 6 --smoothing mkn addk

Prints a Markdown table (about 30 s for PTB on one core, most of it tokenising).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rnnkit.tasks.ngram.model import NGramConfig, NGramLM
from rnnkit.text.datasets import DATASETS, load_corpus
from rnnkit.text.tokenizers import make_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="ptb")
    ap.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4, 5])
    ap.add_argument("--smoothing", nargs="+", default=["mkn", "kn", "addk"])
    ap.add_argument("--k", type=float, nargs="+", default=[1.0, 0.01],
                    help="add-k constants to try")
    args = ap.parse_args()

    t0 = time.perf_counter()
    texts = load_corpus(args.data)
    level = DATASETS[args.data].level
    tok = make_tokenizer(level).fit(texts["train"])
    ids = {k: tok.encode(v, warn=False) for k, v in texts.items() if v}
    V = len(tok.vocab)
    print(f"{args.data}: {level} level, V = {V}, tokens "
          + ", ".join(f"{k} {len(v):,}" for k, v in ids.items())
          + f" (loaded and tokenised in {time.perf_counter() - t0:.1f}s)\n")
    splits = [s for s in ("valid", "test") if s in ids]
    char = level == "char"

    def show(ppl: float) -> str:
        return f"{ppl:.2f} ({np.log2(ppl):.3f} bpc)" if char else f"{ppl:.1f}"

    print("| smoothing | order | " + " | ".join(f"{s} ppl" for s in splits)
          + " | stored n-grams | per order | fit s | score s |")
    print("|---|---|" + "---|" * len(splits) + "---|---|---|---|")
    for sm in args.smoothing:
        for k in (args.k if sm == "addk" else [1.0]):
            for n in args.orders:
                t1 = time.perf_counter()
                lm = NGramLM(NGramConfig(vocab_size=V, order=n, smoothing=sm, k=k))
                lm.fit(ids["train"])
                t2 = time.perf_counter()
                ppl = [lm.perplexity(ids[s]) for s in splits]
                t3 = time.perf_counter()
                sizes = lm.num_ngrams()
                name = f"add-k (k={k:g})" if sm == "addk" else {"mkn": "modified KN",
                                                                 "kn": "interpolated KN"}[sm]
                print(f"| {name} | {n} | " + " | ".join(show(p) for p in ppl)
                      + f" | {sum(sizes):,} | {' / '.join(f'{s:,}' for s in sizes)} | "
                      f"{t2 - t1:.2f} | {t3 - t2:.2f} |", flush=True)
    if args.data == "ptb":
        lm = NGramLM(NGramConfig(vocab_size=V, order=5, smoothing="mkn")).fit(ids["train"])
        print("\nmodified KN 5-gram discounts (D1, D2, D3+) per order:")
        print(np.array2string(lm.discounts, precision=3))


if __name__ == "__main__":
    main()
