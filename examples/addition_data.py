"""Write the Keras ``addition_rnn`` task as pairs files: ``"535+61<TAB>596"``.

    python examples/addition_data.py --out data/addition --train 80000 --valid 2000 --test 10000

Operands have 1 to ``--digits`` digits; ``a+b`` and ``b+a`` count as one question and no
question appears in two splits.  Then::

    rnnkit train-seq2seq --train data/addition/train.tsv --valid data/addition/valid.tsv \\
        --src-level char --tgt-level char ...
    rnnkit eval runs/addition data/addition/test.tsv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rnnkit.tasks.seq2seq.data import addition_pairs, write_pairs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for train/valid/test.tsv")
    p.add_argument("--train", type=int, default=80000)
    p.add_argument("--valid", type=int, default=2000)
    p.add_argument("--test", type=int, default=10000)
    p.add_argument("--digits", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    pairs = addition_pairs(args.train + args.valid + args.test, args.digits, rng)
    cuts = {"train": pairs[: args.train],
            "valid": pairs[args.train : args.train + args.valid],
            "test": pairs[args.train + args.valid :]}
    for name, part in cuts.items():
        print(write_pairs(args.out / f"{name}.tsv", part), len(part))


if __name__ == "__main__":
    main()
