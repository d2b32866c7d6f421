"""rnnkit train-classifier / train-tagger / predict / eval: round trips on tiny synthetic data,
exact resume, and one-line errors for bad input."""

from __future__ import annotations

import io
import signal
import sys

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.train.checkpoint import load_checkpoint

WORDS = ["the", "a", "film", "movie", "plot", "actor", "scene", "story", "was", "is", "very",
         "quite"]


def classification_file(path, n, seed, fmt="space"):
    """Label 1 when 'good' outnumbers 'bad' in the sentence."""
    rng = np.random.default_rng(seed)
    lines = ["label,text"] if fmt == "csv" else []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(WORDS, int(rng.integers(2, 7))))
        words.insert(int(rng.integers(0, len(words) + 1)), "good" if label else "bad")
        text = " ".join(words)
        lines.append({"space": f"{label} {text}", "tsv": f"{label}\t{text}",
                      "csv": f"{label},{text}"}[fmt])
    path.write_text("\n".join(lines) + "\n")
    return path


def tagging_file(path, n, seed):
    """``word tag`` lines: names (capitalised) are B-PER/I-PER, everything else O."""
    rng = np.random.default_rng(seed)
    names = ["Ann", "Bob", "Cara", "Dan", "Eve"]
    blocks = []
    for _ in range(n):
        rows = []
        for _ in range(int(rng.integers(2, 6))):
            if rng.random() < 0.3:
                rows.append(f"{rng.choice(names)} B-PER")
                if rng.random() < 0.5:
                    rows.append(f"{rng.choice(names)} I-PER")
            else:
                rows.append(f"{rng.choice(WORDS)} O")
        blocks.append("\n".join(rows))
    path.write_text("\n\n".join(blocks) + "\n")
    return path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


TINY = ["--embed", 8, "--hidden", 8, "--batch-size", 8, "--no-progress", "--lr", 0.01]


@pytest.fixture
def sst(tmp_path):
    return (classification_file(tmp_path / "train.txt", 120, 0),
            classification_file(tmp_path / "dev.txt", 40, 1))


def test_classifier_train_predict_eval_round_trip(tmp_path, sst, capsys, monkeypatch):
    train, dev = sst
    out = tmp_path / "run"
    code, stdout, err = run(["train-classifier", "--train", train, "--valid", dev, "--test",
                             dev, "--epochs", 8, "--out", out, *TINY], capsys)
    assert code == 0, err
    acc = float(stdout.split("test accuracy: ")[1].split()[0])
    assert acc >= 0.9  # the task is trivial: a single word decides
    code, stdout, err = run(["eval", out, dev], capsys)
    assert code == 0, err
    assert f"accuracy: {acc:.4f}" in stdout and "macro_f1:" in stdout
    assert "confusion matrix:" in stdout and "true\\pred" in stdout
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(
        b"the film was very good\n\nbad plot\n")))
    code, stdout, err = run(["predict", out, "-"], capsys)
    assert code == 0, err
    lines = stdout.split("\n")
    assert lines[0].split("\t")[0] == "1" and lines[1] == "" and lines[2].startswith("0\t")
    assert 0.5 < float(lines[0].split("\t")[1]) <= 1.0
    assert "1 empty line(s)" in err
    code, stdout, _ = run(["predict", out, dev, "--labeled", "--probs"], capsys)
    assert stdout.count("\n") == 40 and "0=" in stdout and "1=" in stdout
    code, _, err = run(["predict", out, dev], capsys)  # labelled file, --labeled forgotten
    assert code == 0 and "starts with a label name" in err and "pass --labeled" in err


@pytest.mark.parametrize("fmt", ["tsv", "csv"])
def test_classifier_reads_tsv_and_csv(tmp_path, capsys, fmt):
    suffix = {"tsv": "tsv", "csv": "csv"}[fmt]
    train = classification_file(tmp_path / f"train.{suffix}", 40, 0, fmt)
    code, _, err = run(["train-classifier", "--train", train, "--valid", train, "--epochs", 1,
                        "--out", tmp_path / "r", "--pooling", "last", "--cell", "gru", *TINY],
                       capsys)
    assert code == 0, err
    code, stdout, err = run(["eval", tmp_path / "r", train], capsys)  # format from the run
    assert code == 0 and "examples: 40" in stdout, err


@pytest.mark.parametrize("midway", [False, True], ids=["between-epochs", "inside-an-epoch"])
def test_resume_ends_exactly_where_an_uninterrupted_run_ends(tmp_path, sst, capsys, midway):
    train, dev = sst
    opts = ["--train", train, "--valid", dev, *TINY, "--dropout", 0.3, "--word-dropout", 0.1,
            "--embed-dropout", 0.2, "--ema", 0.9]
    code, _, err = run(["train-classifier", *opts, "--epochs", 2, "--out", tmp_path / "a"],
                       capsys)
    assert code == 0, err
    stop = ["--max-steps", 20] if midway else ["--epochs", 1]  # 15 batches an epoch
    code, _, err = run(["train-classifier", *opts, "--epochs", 2, *stop, "--out",
                        tmp_path / "b"], capsys)
    assert code == 0, err
    more = ["--max-steps", 10**6] if midway else ["--epochs", 2]
    code, _, err = run(["train-classifier", *opts, *more, "--out", tmp_path / "b",
                        "--resume"], capsys)
    assert code == 0, err
    a = load_checkpoint(tmp_path / "a" / "last")
    b = load_checkpoint(tmp_path / "b" / "last")
    assert b.config["train"]["ema"] == 0.9  # the saved option survives the resume
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], b.weights[k], err_msg=k)
    for k in a.train_arrays:  # the weight averages too
        np.testing.assert_array_equal(a.train_arrays[k], b.train_arrays[k], err_msg=k)


@pytest.mark.parametrize("command", ["train-classifier", "train-tagger"])
def test_ctrl_c_saves_warns_and_explains_how_to_resume(tmp_path, capsys, monkeypatch, command):
    """The shared run helper: on Ctrl-C the warnings so far, then how to continue (status 130);
    nothing on stdout."""
    if command == "train-classifier":
        from rnnkit.tasks.classify.task import ClassifyTask as task
        train = classification_file(tmp_path / "train.txt", 40, 0)
        train.write_text(train.read_text() + "1\n")  # a label without text: skipped, warned
    else:
        from rnnkit.tasks.tag.task import TagTask as task
        train = tagging_file(tmp_path / "train.txt", 40, 0)
        train.write_text(train.read_text() + "\nfoo\n")  # a line without its tag
    real = task.train_batch

    def ctrl_c(self, i, rng):  # pressed during the first batch: the trainer ends it and saves
        signal.raise_signal(signal.SIGINT)
        return real(self, i, rng)

    monkeypatch.setattr(task, "train_batch", ctrl_c)
    out = tmp_path / "run"
    code, stdout, err = run([command, "--train", train, "--skip-bad", "--epochs", 2, "--out",
                             out, *TINY], capsys)
    assert code == 130 and stdout == ""
    lines = err.splitlines()
    assert lines[-2].startswith(f"rnnkit {command}: warning: {train}: skipped 1 bad")
    assert lines[-1] == (f"rnnkit {command}: interrupted; progress saved in {out / 'last'}; "
                         f"continue with --out {out} --resume")
    assert load_checkpoint(out / "last").train_meta["step"] == 1


def test_eval_with_an_unseen_label_is_a_one_line_error(tmp_path, sst, capsys):
    train, _ = sst
    run(["train-classifier", "--train", train, "--epochs", 1, "--out", tmp_path / "r", *TINY],
        capsys)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 good film\n2 what\n")
    code, _, err = run(["eval", tmp_path / "r", bad], capsys)
    assert code == 2
    assert err.strip().endswith("bad.txt:2: label '2' was never seen in training "
                                "(known: '0', '1')")
    assert err.count("\n") == 1


def test_train_refuses_a_line_without_its_label(tmp_path, sst, capsys):
    train, _ = sst
    text = train.read_text().splitlines()
    text.insert(5, "the movie was good")  # label missing: 'the' would become a class
    train.write_text("\n".join(text) + "\n")
    code, _, err = run(["train-classifier", "--train", train, "--out", tmp_path / "r", *TINY],
                       capsys)
    assert code == 2 and "train.txt:6: label 'the' occurs only 1 time" in err
    one = tmp_path / "one.txt"
    one.write_text("1 fine\nlonely\n")
    code, _, err = run(["train-classifier", "--train", one, "--out", tmp_path / "s", *TINY],
                       capsys)
    assert code == 2 and "one.txt:2: expected 'label text', found one field" in err


def test_tagger_train_predict_eval_round_trip(tmp_path, capsys):
    train = tagging_file(tmp_path / "train.txt", 80, 0)
    dev = tagging_file(tmp_path / "dev.txt", 20, 1)
    out = tmp_path / "tag"
    code, stdout, err = run(["train-tagger", "--train", train, "--valid", dev, "--test", dev,
                             "--epochs", 6, "--out", out, "--char-embed", 4, "--char-hidden", 4,
                             "--word-dropout", 0.1, *TINY], capsys)
    assert code == 0, err
    assert "span F1" in stdout
    code, stdout, err = run(["eval", out, dev], capsys)
    assert code == 0, err
    figures = dict(line.split(": ") for line in stdout.strip().splitlines())
    assert float(figures["accuracy"]) > 0.9
    assert {"span precision", "span recall", "span f1", "tokens"} <= set(figures)
    src = tmp_path / "in.txt"
    src.write_text("the Zed film\n\nBob\n")  # 'Zed' never seen: tagged through its spelling
    code, stdout, err = run(["predict", out, src], capsys)
    assert code == 0, err
    lines = stdout.split("\n")
    assert lines[0].startswith("the/O Zed/") and lines[1] == "" and lines[2] == "Bob/B-PER"
    code, stdout, _ = run(["predict", out, src, "--conll"], capsys)
    assert stdout.startswith("the\tO\nZed\t")


def test_tagger_on_conllu_and_xpos(tmp_path, capsys):
    rows = []
    for i in range(30):
        rows.append(f"# sent_id = {i}\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
                    "1\tdo\tdo\tAUX\tVBP\t_\t0\troot\t_\t_\n"
                    "2\tn't\tnot\tPART\tRB\t_\t1\tadvmod\t_\t_\n"
                    "3\tgo\tgo\tVERB\tVB\t_\t1\txcomp\t_\t_\n")
    p = tmp_path / "t.conllu"
    p.write_text("\n".join(rows))
    code, _, err = run(["train-tagger", "--train", p, "--valid", p, "--column", "xpos",
                        "--epochs", 2, "--out", tmp_path / "x", "--no-chars", *TINY], capsys)
    assert code == 0, err
    code, stdout, _ = run(["eval", tmp_path / "x", p], capsys)
    assert "tokens: 90" in stdout and "span" not in stdout
    assert load_checkpoint(tmp_path / "x" / "best").vocab["tags"] == ["RB", "VB", "VBP"]


def test_predict_refuses_other_checkpoint_kinds(tmp_path, capsys):
    from rnnkit.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "lm", kind="lm", config={}, weights={"w": np.zeros(1)})
    code, _, err = run(["predict", tmp_path / "lm", "-"], capsys)
    assert code == 2 and "needs a classifier or tagger checkpoint" in err
