"""Predict with a classifier or tagger checkpoint: a label per line, or a tag per word.

Input: one text (classifier) or one tokenized sentence (tagger) per line, from FILE or, with
``-`` (the default), from standard input, answered line by line as it arrives.  Output, one line
per input line: ``label<TAB>probability`` for a classifier (``--probs``: every class's
probability), ``word/TAG word/TAG ...`` for a tagger (``--conll``: ``word<TAB>TAG`` per line and
a blank line after each sentence).  An empty input line gets an empty output line, and a warning
at the end says how many there were; so does a classifier input whose every line starts with a
label name (a labelled file given without ``--labeled``).
"""

from __future__ import annotations

import sys
from collections import Counter

from ..train.options import positive_int


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    p.add_argument("file", nargs="?", default="-", help="input file, or - for standard input")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the input")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="lines predicted together when reading a file (standard input is "
                        "answered line by line)")
    p.add_argument("--labeled", action="store_true",
                   help="classifier: the input lines carry a label first (as in the training "
                        "file: 'label<TAB>text' or 'label text'); it is dropped")
    p.add_argument("--probs", action="store_true",
                   help="classifier: print every class's probability as label=p")
    p.add_argument("--conll", action="store_true",
                   help="tagger: 'word<TAB>TAG' lines, a blank line between sentences")


def _chunks(lines, size: int):
    chunk = []
    for item in lines:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _first_field(line: str) -> str:
    if "\t" in line:
        return line.split("\t", 1)[0].strip()
    parts = line.split(None, 1)
    return parts[0] if parts else ""


def _strip_label(line: str) -> str:
    if "\t" in line:
        return line.split("\t", 1)[1]
    parts = line.strip().split(None, 1)
    return parts[1] if len(parts) == 2 else ""


def run(args) -> int:
    from ..tasks import checkpoint_task
    from ..text.io import iter_lines

    path, kind, predictor = checkpoint_task(args.checkpoint, "predict")
    if predictor is None:
        raise ValueError(f"{path}: predict needs a classifier or tagger checkpoint, not "
                         f"{kind!r}")
    answer, labels = predictor(path, args)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    size = 1 if args.file == "-" else args.batch_size
    empty = first_empty = 0
    lead: Counter = Counter()  # classifier: non-empty lines, and those led by a label name
    write = sys.stdout.write
    for chunk in _chunks(iter_lines(args.file, args.encoding), size):
        if labels is not None:
            for _, line in chunk:
                first = _first_field(line)
                if first:
                    lead["lines"] += 1
                    lead["known"] += first in labels
        texts = [_strip_label(line) if args.labeled and labels is not None else line
                 for _, line in chunk]
        tokens = [t.split() for t in texts]
        real = [i for i, t in enumerate(tokens) if t]
        answers = answer([tokens[i] for i in real]) if real else []
        by_line = dict(zip(real, answers))
        for i, (n, _) in enumerate(chunk):
            if i in by_line:
                write(by_line[i] + "\n")
            else:
                empty += 1
                first_empty = first_empty or n
                write("\n")
        sys.stdout.flush()
    where = "<stdin>" if args.file == "-" else args.file
    if labels is not None and not args.labeled and lead["lines"] >= 5 and \
            lead["known"] == lead["lines"]:
        print(f"rnnkit predict: warning: every line of {where} starts with a label name "
              "(such as the training file's); if they are labels, pass --labeled so they are "
              "not read as words", file=sys.stderr)
    if labels is not None and args.labeled and lead["known"] < lead["lines"]:
        print(f"rnnkit predict: warning: {lead['lines'] - lead['known']} line(s) of {where} "
              "start with a label never seen in training (ignored: --labeled drops it)",
              file=sys.stderr)
    if empty:
        print(f"rnnkit predict: warning: {empty} empty line(s) got no prediction (first: "
              f"{where}:{first_empty})", file=sys.stderr)
    return 0
