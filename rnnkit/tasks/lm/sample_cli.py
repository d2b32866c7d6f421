"""Generate text from a language-model checkpoint, streaming it as it is produced.

Sampling carries the recurrent state from token to token (O(1) per token); ``--temperature 0``
is greedy; ``--beam K`` returns the most likely continuation found by beam search.
"""

from __future__ import annotations

import sys

from ...train.options import nonneg_int


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    p.add_argument("--prime", default="", help="text to start from (default: none)")
    p.add_argument("--length", type=int, default=500, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="divide the logits by this; 0 means greedy")
    p.add_argument("--top-k", type=int, default=0, help="sample among the K most likely (0: all)")
    p.add_argument("--top-p", type=float, default=1.0,
                   help="nucleus sampling: the smallest set of tokens with this much "
                        "probability (1: all)")
    p.add_argument("--beam", type=int, default=0,
                   help="beam search with this width instead of sampling (0: off)")
    p.add_argument("--seed", type=nonneg_int, default=None,
                   help="random seed (default: a different sample every time)")


def run(args) -> int:
    from .inference import check_generation, sample_text

    try:
        check_generation(args.length, args.temperature, args.top_k, args.top_p, args.beam)
    except ValueError as e:  # name the options as the command line spells them
        raise ValueError("--" + str(e).replace("_", "-")) from None
    sample_text(args.checkpoint, args.prime, args.length, args.temperature, args.top_k,
                args.top_p, args.seed, args.beam, stream=sys.stdout)
    sys.stdout.write("\n")
    return 0
