"""Count the files a reader opens to follow each task from its command to its model.

Starting from the modules of a task's commands (training, its use, ``rnnkit eval``), follow
every ``rnnkit`` import (static ones, read with ``ast``, plus the dispatch on the checkpoint
kind) and count the modules reached, leaving out the shared machinery a reader already knows
or never needs for the task: the engine (cells, recurrent layers, dense layers, losses,
initialisers, the module base class), errors and checks, generic text I/O, vocabularies and
tokenizers, the optimisers, the metrics log and plots, metrics and decoding.

    python docs/reading_path.py [ROOT]        # ROOT: the directory holding rnnkit/ (default .)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

OLD = {  # task -> (command modules, modules reached by dispatch on the kind)
    "lm": (["cli.train", "cli.sample", "cli.evaluate"], ["models.lm", "models.output_recurrent"]),
    "classify": (["cli.train_classifier", "cli.predict", "cli.evaluate"], ["tasks.classifier"]),
    "tag": (["cli.train_tagger", "cli.predict", "cli.evaluate"], ["tasks.tagger"]),
    "seq2seq": (["cli.train_seq2seq", "cli.translate", "cli.evaluate"], ["tasks.seq2seq"]),
    "ngram": (["cli.train", "cli.evaluate"], ["tasks.ngram"]),
}
NEW = {
    "lm": (["tasks.lm.cli", "tasks.lm.sample_cli", "cli.evaluate"], ["tasks.lm.inference"]),
    "classify": (["tasks.classify.cli", "cli.predict", "cli.evaluate"],
                 ["tasks.classify.inference"]),
    "tag": (["tasks.tag.cli", "cli.predict", "cli.evaluate"], ["tasks.tag.inference"]),
    "seq2seq": (["tasks.seq2seq.cli", "tasks.seq2seq.translate_cli", "cli.evaluate"],
                ["tasks.seq2seq.inference"]),
    "ngram": (["tasks.lm.cli", "tasks.ngram.cli", "cli.evaluate"], ["tasks.ngram.task"]),
}
SHARED = ("errors", "checks", "cells", "nn.cells", "recurrent", "nn.recurrent", "layers",
          "nn.layers", "losses", "nn.losses", "init", "nn.init", "module", "nn.module", "_blas",
          "nn._blas", "text.io", "text.vocab", "text.tokenizers", "text.datasets", "text.vectors",
          "text.batching", "optim", "train.optim", "train.schedules", "train.ema", "runlog",
          "train.runlog", "train.runlock", "plotting", "train.plotting", "distributed",
          "nn.factory", "nn.lstmp", "nn.minrnn", "nn.layernorm_rnn", "nn.adaptive_softmax",
          "nn.penalties", "nn.quant", "train.ntasgd", "train.memory", "metrics", "sampling",
          "decode",
          "inspect")


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in (root / "rnnkit").rglob("*.py"):
        parts = p.relative_to(root / "rnnkit").with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports(name: str, mods: dict[str, Path]) -> set[str]:
    path = mods[name]
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)] if pkg else []
                if node.level > len(pkg.split(".")) if pkg else node.level > 1:
                    base = []
                target = ".".join([b for b in base if b] + ([node.module] if node.module else []))
            else:
                target = (node.module or "").removeprefix("rnnkit").lstrip(".")
            for a in node.names:
                sub = f"{target}.{a.name}" if target else a.name
                found.add(sub if sub in mods else target)
    return {m for m in found if m in mods}


def shared(name: str) -> bool:
    return name == "" or any(name == s or name.startswith(s + ".") for s in SHARED)


def reading_path(root: Path, commands, dispatched) -> list[str]:
    mods = modules(root)
    todo, seen = [*commands, *dispatched], set()
    while todo:
        m = todo.pop()
        if m in seen or shared(m):
            continue
        seen.add(m)
        todo.extend(imports(m, mods))
    return sorted(seen)


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else ".")
    table = NEW if (root / "rnnkit" / "nn").is_dir() else OLD
    for task, (commands, dispatched) in table.items():
        files = reading_path(root, commands, dispatched)
        folders = {f.rpartition(".")[0] for f in files}
        print(f"{task}: {len(files)} files in {len(folders)} folders: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
