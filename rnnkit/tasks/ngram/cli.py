"""``rnnkit train --model ngram``: the n-gram options, mapped to
:func:`rnnkit.tasks.ngram.task.train_ngram`.

``rnnkit train`` builds its parser as usual and, for ``--model ngram``, hands its arguments to
:func:`train_ngram_cli`, which reads the same data options (``--data``, ``--level``,
``--min-count``, ``--max-vocab``, ``--valid-fraction``, ``--encoding``, ``--out``, ``--seed``,
``--sample-length``) plus those :func:`add_ngram_arguments` adds.
"""

from __future__ import annotations


def add_ngram_arguments(p) -> None:
    """The options of ``rnnkit train --model ngram`` (an argument group of its own)."""
    g = p.add_argument_group("n-gram model (--model ngram)")
    g.add_argument("--order", type=int, default=5, help="n: the longest n-gram counted")
    g.add_argument("--smoothing", choices=("mkn", "kn", "addk"), default="mkn",
                   help="mkn: modified Kneser-Ney (3 discounts per order); kn: interpolated "
                        "Kneser-Ney (1 discount per order); addk: add-k on the full context")
    g.add_argument("--add-k", type=float, default=1.0, help="k for --smoothing addk")
    g.add_argument("--discount", type=float, default=None,
                   help="--smoothing kn: a fixed discount for every order (default: estimated)")


def train_ngram_cli(args, data=None) -> int:
    """``rnnkit train --model ngram``: count, report valid/test perplexity, save, sample.

    ``data`` is ``(texts, level, info)`` as ``rnnkit train`` loads it; ``None``: loaded here
    by :func:`~rnnkit.tasks.ngram.task.load_texts`.
    """
    from ...distributed import world
    from ...train.options import out_dir
    from .task import load_texts, train_ngram

    if world().size > 1:
        raise ValueError(f"--model ngram is counted by one process, not {world().size}: run it "
                         "without mpiexec")
    if getattr(args, "resume", False):
        raise ValueError("--resume: an n-gram model is counted in one pass; there is nothing "
                         "to resume")
    out = out_dir(args, "ngram")
    texts, level, info = load_texts(args) if data is None else data
    train_ngram(texts, level, info, out, order=args.order,
                smoothing=getattr(args, "smoothing", "mkn"), k=getattr(args, "add_k", 1.0),
                discount=getattr(args, "discount", None), min_count=getattr(args, "min_count", 1),
                max_vocab=getattr(args, "max_vocab", None),
                sample_length=getattr(args, "sample_length", 0) or 0,
                seed=getattr(args, "seed", 0))
    return 0
