"""int8 against float checkpoints: size on disk, inference time and quality.

Trains four small models on real data, each for ``--minutes`` (default 1.5): a PTB word LSTM
language model, an SST-2 BiLSTM classifier, a UD English EWT UPOS tagger (with characters) and
a Tatoeba EN->FR GRU with attention; or takes checkpoints already trained
(``--lm``, ``--sst2``, ``--upos``, ``--tatoeba``, each a checkpoint or run directory, the last
with the test split its run saved).  Each is quantised with ``rnnkit quantize`` (the weight
matrices) and ``rnnkit quantize --embeddings`` (the embedding tables too), and all three
versions are evaluated on the test split by the same function ``rnnkit eval`` uses: PTB
perplexity, SST-2 accuracy, UPOS token accuracy, Tatoeba corpus BLEU (greedy).

Time is the wall time of that evaluation (loading included), float and int8 interleaved,
median of ``--repeats`` rounds; the ratio is int8 / float.  NumPy inference dequantises the
weights when it loads them, so the arithmetic is the same float32 work and only the load
differs.  With onnxruntime installed, the exported graphs of the language model, classifier
and tagger are also timed on a fixed batch of test input (one thread, onnxruntime's default
optimisations, which run ``DequantizeLinear -> MatMul`` as its 8-bit ``MatMulNBits``
kernel).  Prints the CPU, the BLAS kernel, and the load average before and after; figures
taken while other jobs share the machine are marked as measured under load.  To re-run on an idle
machine::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/quantize.py --data ../shared/data --out runs/quantize
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from benchutil import machine_line


def train(out: Path, data: Path, minutes: float) -> dict:
    """Train the four small checkpoints (skipping any already there); returns their paths."""
    from rnnkit.cli.main import main

    os.environ.setdefault("RNNKIT_DATA", str(data))
    m = str(minutes)
    quiet = ["--no-progress", "--seed", "1", "--minutes", m]
    runs = {
        "lm": ["train", "--data", "ptb", "--level", "word", "--cell", "lstm", "--embed", "128",
               "--hidden", "128", "--layers", "1", "--bptt", "20", "--batch-size", "32",
               "--lr", "2e-3", "--sample-length", "0", *quiet],
        "sst2": ["train-classifier", "--train", str(data / "sst/stsa.binary.train"),
                 "--valid", str(data / "sst/stsa.binary.dev"), "--embed", "64", "--hidden",
                 "64", "--pooling", "max", "--dropout", "0.3", "--lr", "2e-3", *quiet],
        "upos": ["train-tagger", "--train", str(data / "ud-english-ewt/en_ewt-ud-train.conllu.gz"),
                 "--valid", str(data / "ud-english-ewt/en_ewt-ud-dev.conllu"), "--embed", "64",
                 "--hidden", "64", "--char-embed", "16", "--char-hidden", "16", "--lr", "2e-3",
                 *quiet],
        "tatoeba": ["train-seq2seq", "--train", str(data / "tatoeba-fra-eng/fra-eng.zip"),
                    "--normalize", "--english-prefixes", "--max-src-len", "9",
                    "--max-tgt-len", "9", "--valid-fraction", "0.1", "--test-fraction", "0.1",
                    "--save-splits", str(out / "tatoeba-data"), "--cell", "gru", "--embed",
                    "64", "--hidden", "128", "--attention", "general", "--beam", "1", *quiet],
    }
    paths = {}
    for name, argv in runs.items():
        run = out / name
        if not (run / "best").exists() and not (run / "last").exists():
            print(f"training {name} for {minutes} min ...", flush=True)
            if main([*argv, "--out", str(run)]) != 0:
                raise SystemExit(f"training {name} failed")
        paths[name] = run
    return paths


def evaluators(data: Path, tatoeba_test: Path) -> dict:
    """``{name: (figure name, evaluate(path) -> figure)}``."""
    from rnnkit.tasks.classify.inference import evaluate_file as classify_eval
    from rnnkit.tasks.lm.inference import evaluate_file as lm_eval
    from rnnkit.tasks.seq2seq.inference import evaluate_file as seq2seq_eval
    from rnnkit.tasks.tag.inference import evaluate_file as tag_eval

    return {
        "lm": ("PTB test perplexity",
               lambda p: lm_eval(p, data / "ptb/ptb.test.txt")["perplexity"]),
        "sst2": ("SST-2 test accuracy",
                 lambda p: classify_eval(p, data / "sst/stsa.binary.test")["accuracy"]),
        "upos": ("UPOS test accuracy", lambda p: tag_eval(
            p, data / "ud-english-ewt/en_ewt-ud-test.conllu")["accuracy"]),
        "tatoeba": ("Tatoeba test BLEU (greedy)",
                    lambda p: seq2seq_eval(p, tatoeba_test, beam=1)["bleu"]),
    }


def onnx_feeds(name: str, path: Path, data: Path):
    """A fixed batch of test input for the exported graph of ``name`` (None: not timed)."""
    import numpy as np

    from rnnkit.tasks import load_model
    from rnnkit.text.batching import pad_batch

    loaded = load_model(path)
    if name == "lm":
        ids = loaded.tokenizer.encode((data / "ptb/ptb.test.txt").read_text())[: 16 * 128]
        return {"ids": ids.reshape(16, 128)}
    if name == "sst2":
        from rnnkit.tasks.classify.inference import load_classifier

        _, vocab, _ = load_classifier(path)
        lines = (data / "sst/stsa.binary.test").read_text().splitlines()[:256]
        x, lengths = pad_batch(vocab.encode_texts([ln.split()[1:] for ln in lines]))
        return {"ids": x, "lengths": lengths}
    if name == "upos":
        import numpy as np

        from rnnkit.tasks.tag.inference import load_tagger
        from rnnkit.tasks.tag.task import EncodedSentences
        from rnnkit.text.tagged import read_tagged

        _, vocab, _ = load_tagger(path)
        sents = read_tagged(data / "ud-english-ewt/en_ewt-ud-test.conllu", "auto",
                            column="upos").sentences[:256]
        x, lengths, chars, _ = EncodedSentences(vocab, vocab.char_table(), sents).batch(
            np.arange(len(sents)))
        return {"ids": x, "lengths": lengths, "char_ids": chars.ids,
                "char_lengths": chars.lengths, "char_index": chars.index}
    return None


def onnx_times(name: str, versions: dict, data: Path, out: Path, repeats: int) -> dict:
    """Median seconds of one run of each version's exported graph, or {} without
    onnxruntime or for a model not timed here."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    from rnnkit.deploy.export import export_checkpoint

    feeds = onnx_feeds(name, versions["float"], data)
    if feeds is None:
        return {}
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sessions = {v: ort.InferenceSession(str(export_checkpoint(p, out / f"{name}-{v}.onnx")[0]),
                                        so, providers=["CPUExecutionProvider"])
                for v, p in versions.items()}
    times = {v: [] for v in sessions}
    for _ in range(max(5, repeats)):
        for v, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feeds)
            times[v].append(time.perf_counter() - t0)
    return {v: statistics.median(t) for v, t in times.items()}


def size(path: Path) -> int:
    """Bytes of a checkpoint's inference files (the training state excluded)."""
    return sum(f.stat().st_size for f in path.iterdir() if not f.name.startswith("train_state"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default="../shared/data", help="the data sets' directory")
    ap.add_argument("--out", default="runs/quantize", help="where runs and int8 copies go")
    ap.add_argument("--minutes", type=float, default=1.5, help="training time per model")
    ap.add_argument("--repeats", type=int, default=3, help="timed evaluations per version")
    for name in ("lm", "sst2", "upos", "tatoeba"):
        ap.add_argument(f"--{name}", default=None, help=f"a trained {name} checkpoint to use")
    ap.add_argument("--tatoeba-test", default=None,
                    help="test pairs of --tatoeba (default: its run's saved split)")
    args = ap.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    given = {k: getattr(args, k) for k in ("lm", "sst2", "upos", "tatoeba")}
    if not all(given.values()):
        trained = train(out, data, args.minutes)
        given = {k: v or trained[k] for k, v in given.items()}
    from rnnkit.deploy.quantize import quantize_checkpoint
    from rnnkit.train.checkpoint import find_checkpoint

    load0 = os.getloadavg()
    test = Path(args.tatoeba_test or out / "tatoeba-data" / "test.tsv")
    rows = []
    for name, (figure, evaluate) in evaluators(data, test).items():
        src = find_checkpoint(given[name])
        versions = {"float": src, "int8": out / f"{name}-int8", "int8+emb": out / f"{name}-int8e"}
        for version, path in versions.items():
            if version != "float" and not path.exists():
                quantize_checkpoint(src, path, embeddings=version == "int8+emb")
        times = {v: [] for v in versions}
        value = {}
        for _ in range(args.repeats):
            for version, path in versions.items():
                t0 = time.perf_counter()
                value[version] = evaluate(path)
                times[version].append(time.perf_counter() - t0)
        ox = onnx_times(name, versions, data, out / "onnx", args.repeats)
        for version, path in versions.items():
            rows.append((name, version, figure, size(src), size(path),
                         statistics.median(times["float"]), statistics.median(times[version]),
                         value[version], ox.get("float"), ox.get(version)))
        print(name, {k: round(v, 4) for k, v in value.items()}, flush=True)
    load1 = os.getloadavg()
    print()
    print(f"Machine: {machine_line()}")
    under = "measured under load" if max(load0[0], load1[0]) > 0.5 * (os.cpu_count() or 1) \
        else "idle machine"
    print(f"Load average (1 min) {load0[0]:.1f} before, {load1[0]:.1f} after: {under}")
    print()
    print("| model | weights | size on disk | eval time (ratio) | onnxruntime batch (ratio) "
          "| quality |")
    print("|---|---|---:|---:|---:|---|")
    for name, version, figure, sf, sq, tf, tq, v, of, oq in rows:
        fmt = ".2f" if "perplexity" in figure or "BLEU" in figure else ".4f"
        ox = "–" if of is None else f"{oq * 1e3:.1f} ms ({oq / of:.2f})"
        print(f"| {name} | {version} | {sq / 1e6:.2f} MB ({sq / sf:.2f}) | "
              f"{tq:.1f} s ({tq / tf:.2f}) | {ox} | {figure}: {v:{fmt}} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
