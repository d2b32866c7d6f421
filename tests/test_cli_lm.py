"""The language-model commands end to end: ``rnnkit train``, ``eval`` and ``sample``, in-process
through ``rnnkit.cli.main.main`` (plus a subprocess for the exit status), on tiny texts."""

from __future__ import annotations

import errno
import json
import math
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli.main import build_parser, main
from rnnkit.tasks.lm.task import LMTask
from rnnkit.train import checkpoint as checkpoint_module
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.train.trainer import Trainer

TINY = ["--hidden", "16", "--embed", "8", "--layers", "1", "--bptt", "8", "--batch-size", "2",
        "--no-progress", "--sample-length", "20"]
TEXT = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(12))  # ~300 characters


@pytest.fixture(autouse=True)
def no_plot(monkeypatch):
    monkeypatch.setattr(Trainer, "_plot", lambda self: None)  # the trainer tests draw one


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained run shared by the read-only tests: (run dir, text file)."""
    d = tmp_path_factory.mktemp("trained")
    text = d / "tiny.txt"
    text.write_text(TEXT, encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "_plot", lambda self: None)
    try:
        assert main(["train", "--data", str(text), "--epochs", "2", *TINY,
                     "--out", str(d / "run")]) == 0
    finally:
        mp.undo()
    return d / "run", text


def _train(*args) -> int:
    return main(["train", *map(str, args), *TINY])


def _error_line(err: str, command: str) -> str:
    """The single error line of ``err`` (other lines are progress messages)."""
    assert "Traceback" not in err
    errors = [s for s in err.splitlines() if s.startswith(f"rnnkit {command}: error: ")]
    assert len(errors) == 1, err
    assert err.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


def _weights(path):
    return load_checkpoint(path).weights


# -- train ------------------------------------------------------------------------------------
def test_train_saves_reports_and_samples(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    assert _train("--data", text_file, "--epochs", "1", "--out", out) == 0
    stdout, stderr = capsys.readouterr()
    summary = stdout.splitlines()[0]
    assert re.match(r"best valid loss \d+\.\d{4} \| ppl \d+\.\d\d \| \d\.\d{3} bits/char \| "
                    r"\dm\d\ds, \d+ steps \(all epochs done\) \| checkpoint ", summary)
    assert summary.endswith(f"checkpoint {out / 'best'}")
    assert stdout.splitlines()[1] == "sample:"
    assert "char-level LSTM 1x16" in stderr and "epoch 1 |" in stderr
    assert {"best", "last", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    cfg = json.loads((out / "last" / "config.json").read_text())
    assert cfg["data"].pop("fingerprint")["chars"] > 0
    assert cfg["data"] == {"source": str(text_file.resolve()), "level": "char",
                           "encoding": "utf-8", "valid_fraction": 0.1}
    assert cfg["train"]["epochs"] == 1 and cfg["model"]["hidden_size"] == 16


def test_default_command_is_the_three_minute_builtin_job(tmp_path, monkeypatch, capsys):
    import rnnkit.text.io as text_io

    monkeypatch.setattr(text_io, "default_corpus", lambda: TEXT * 4)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "1", *TINY]) == 0
    stdout, _ = capsys.readouterr()
    run = next((tmp_path / "runs").iterdir())
    assert f"checkpoint {run.relative_to(tmp_path) / 'best'}" in stdout
    cfg = json.loads((run / "last" / "config.json").read_text())
    assert cfg["train"]["minutes"] == 3.0 and cfg["data"]["source"] == "builtin:python-stdlib"
    assert cfg["data"]["valid_fraction"] == 0.025


def test_resume_equals_an_uninterrupted_run(tmp_path, text_file, capsys):
    opts = ["--data", text_file, "--dropout", "0.2", "--seed", "7"]
    assert _train(*opts, "--epochs", "2", "--out", tmp_path / "a") == 0
    assert _train(*opts, "--epochs", "1", "--out", tmp_path / "b") == 0
    # no --data: the run's own data, vocabulary, model and options are used
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--epochs", "2",
                 "--no-progress", "--sample-length", "0"]) == 0
    a, b = _weights(tmp_path / "a" / "last"), _weights(tmp_path / "b" / "last")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert "epoch 2 |" in capsys.readouterr().err
    # resuming a finished run says so and changes nothing
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--no-progress",
                 "--sample-length", "0"]) == 0
    assert "the run had already stopped (all epochs done)" in capsys.readouterr().err


def test_resume_with_other_data_keeps_the_saved_tokenizer(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    assert _train("--data", text_file, "--epochs", "1", "--out", out) == 0
    vocab = json.loads((out / "last" / "vocab.json").read_text())
    other = tmp_path / "other.txt"
    other.write_text(TEXT.replace("x", "Z"), encoding="utf-8")
    capsys.readouterr()
    assert _train("--data", other, "--epochs", "2", "--hidden", "32", "--out", out,
                  "--resume") == 0
    err = capsys.readouterr().err
    assert "not in the vocabulary and became <unk>, first: 'Z'" in err
    assert "--hidden ignored with --resume" in err
    assert json.loads((out / "last" / "vocab.json").read_text()) == vocab
    assert load_checkpoint(out / "last").config["model"]["hidden_size"] == 16


def test_ctrl_c_saves_and_explains_how_to_resume(tmp_path, text_file, monkeypatch, capsys):
    calls = []
    real = LMTask.train_batch

    def interrupted(self, i, rng):
        calls.append(i)
        if len(calls) == 5:
            signal.raise_signal(signal.SIGINT)
        return real(self, i, rng)

    monkeypatch.setattr(LMTask, "train_batch", interrupted)
    out = tmp_path / "run"
    assert _train("--data", text_file, "--epochs", "3", "--out", out) == 130
    err = capsys.readouterr().err
    assert f"continue with: rnnkit train --out {out} --resume" in err
    assert load_checkpoint(out / "last").train_meta["step"] == 5
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0


def test_resume_refusals(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    assert main(["train", "--resume", "--no-progress"]) == 2
    assert "--resume needs --out DIR" in _error_line(capsys.readouterr().err, "train")
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "no run to continue" in _error_line(capsys.readouterr().err, "train")
    assert _train("--data", text_file, "--epochs", "1", "--out", out) == 0
    capsys.readouterr()
    assert _train("--data", text_file, "--out", out) == 2
    assert "already holds a run; add --resume" in _error_line(capsys.readouterr().err, "train")
    shutil.rmtree(out / "last")
    shutil.copytree(out / "best", out / "last")  # weights only: no training state
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "no training state" in _error_line(capsys.readouterr().err, "train")


LATIN1 = "caf\xe9 cr\xe8me br\xfbl\xe9e\n" * 30


@pytest.mark.parametrize("case, content, message", [
    ("missing", None, "is neither a known data set"),
    ("empty", b"", "file is empty"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20, "looks like binary data"),
    ("latin-1", LATIN1.encode("latin-1"), "cannot decode byte 0xe9 at offset 3"),
    ("too short", b"def f(x):\n", "fewer than one batch window needs (2 streams x 9 tokens"),
])
def test_bad_training_data(tmp_path, capsys, case, content, message):
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    assert _train("--data", path, "--out", tmp_path / "run") == 2
    line = _error_line(capsys.readouterr().err, "train")
    assert message in line
    if case == "latin-1":
        assert "--encoding" in line
        assert _train("--data", path, "--encoding", "latin-1", "--epochs", "1",
                      "--out", tmp_path / "run") == 0


def test_nan_loss_is_one_line_and_keeps_the_checkpoint(tmp_path, text_file, monkeypatch,
                                                         capsys):
    out = tmp_path / "run"
    assert _train("--data", text_file, "--epochs", "1", "--out", out) == 0
    before = _weights(out / "last")
    real = LMTask.train_batch
    monkeypatch.setattr(LMTask, "train_batch",
                        lambda self, i, rng: (float("nan"), real(self, i, rng)[1]))
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 2
    line = _error_line(capsys.readouterr().err, "train")
    assert "loss became nan" in line and "--lr" in line
    assert f"the last good checkpoint is kept in {out / 'last'}" in line
    after = _weights(out / "last")
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_full_disk_is_one_line_and_keeps_the_checkpoint(tmp_path, text_file, monkeypatch,
                                                        capsys):
    out = tmp_path / "run"
    assert _train("--data", text_file, "--epochs", "1", "--out", out) == 0
    before = load_checkpoint(out / "last")

    def full(path, arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "_write_npz", full)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 2
    line = _error_line(capsys.readouterr().err, "train")
    assert "cannot save checkpoint: the disk is full; the previous checkpoint was kept" in line
    monkeypatch.undo()
    assert load_checkpoint(out / "last").train_meta == before.train_meta


# -- eval -------------------------------------------------------------------------------------
def test_eval_prints_perplexity_and_bits_per_char(trained, capsys):
    run, text = trained
    assert main(["eval", str(run), str(text)]) == 0
    lines = dict(s.split(": ") for s in capsys.readouterr().out.splitlines())
    loss, ppl, bpc = (float(lines[k]) for k in ("loss", "perplexity", "bits per char"))
    assert ppl == pytest.approx(math.exp(loss), rel=1e-3)
    assert bpc == pytest.approx(loss / math.log(2), rel=1e-3)
    # every character after the first is scored once, across the 5 streams' boundaries too
    assert int(lines["tokens"]) == len(text.read_text(encoding="utf-8")) - 1


def test_eval_bad_file(trained, tmp_path, capsys):
    run, _ = trained
    (tmp_path / "empty.txt").write_bytes(b"")
    assert main(["eval", str(run), str(tmp_path / "empty.txt")]) == 2
    assert "file is empty" in _error_line(capsys.readouterr().err, "eval")


# -- sample -----------------------------------------------------------------------------------
def test_sample_with_prime_seed_greedy_and_beam(trained, capsys):
    run, _ = trained

    def sample(*args):
        assert main(["sample", str(run), "--prime", "def ", "--length", "25", *args]) == 0
        return capsys.readouterr().out

    first = sample("--seed", "3")
    assert first.startswith("def ") and first.endswith("\n")
    assert sample("--seed", "3") == first
    greedy = sample("--temperature", "0")
    assert sample("--top-k", "1", "--temperature", "2", "--seed", "1") == greedy
    assert sample("--beam", "1") == greedy
    assert sample("--beam", "3").startswith("def ")
    assert sample("--top-p", "0.5", "--seed", "2").startswith("def ")


def test_sample_unknown_prime_characters_warn(trained, capsys):
    run, _ = trained
    assert main(["sample", str(run), "--prime", "déf€", "--length", "5", "--seed", "0"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("déf€")
    assert "rnnkit sample: warning: prime: 2 of 4 tokens are not in the vocabulary and " \
           "became <unk>, first: 'é', '€'" in err


def test_sample_bad_options(trained, capsys):
    run, _ = trained
    for args, message in [(["--top-p", "0"], "--top-p must be in (0, 1]"),
                          (["--temperature", "-1"], "--temperature must be >= 0"),
                          (["--length", "-3"], "--length must be >= 0")]:
        assert main(["sample", str(run), *args]) == 2
        assert message in _error_line(capsys.readouterr().err, "sample")
    assert capsys.readouterr().out == ""


def _broken(run, tmp_path, case):
    ck = tmp_path / "ck"
    shutil.copytree(run / "best", ck)
    weights = ck / "weights.npz"
    if case == "corrupt":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif case == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    elif case == "classifier":
        shutil.rmtree(ck)
        save_checkpoint(ck, kind="classifier", config={"model": {}},
                        weights={"W": np.zeros(3)})
    elif case == "future version":
        manifest = json.loads((ck / "manifest.json").read_text())
        manifest["format_version"] = 99
        manifest["rnnkit_version"] = "9.0.0"
        (ck / "manifest.json").write_text(json.dumps(manifest))
    elif case == "not a checkpoint":
        shutil.rmtree(ck)
        ck.mkdir()
    return ck


@pytest.mark.parametrize("case, message", [
    ("corrupt", "weights.npz is corrupt (sha256 does not match"),
    ("truncated", "weights.npz is truncated (100 bytes"),
    ("classifier", "is a 'classifier' checkpoint; expected 'lm'"),
    ("future version", "written by rnnkit 9.0.0, format 99; this rnnkit"),
    ("not a checkpoint", "not an rnnkit checkpoint"),
])
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_bad_checkpoints(trained, tmp_path, capsys, case, message, command):
    run, text = trained
    ck = _broken(run, tmp_path, case)
    argv = [command, str(ck)] + ([str(text)] if command == "eval" else ["--length", "5"])
    rc = main(argv)
    if command == "eval" and case == "classifier":
        assert rc != 0  # eval hands other kinds to their own evaluator, if installed
        return
    assert rc == 2
    assert message in _error_line(capsys.readouterr().err, command)
    with pytest.raises(Exception, match=re.escape(message)):
        main([*argv, "--debug"])  # --debug: the exception itself, with its traceback


def test_subprocess_exit_status_and_one_line_error(tmp_path):
    def rnnkit(*args):
        return subprocess.run([sys.executable, "-m", "rnnkit.cli.main", *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120,
                              check=False)

    r = rnnkit("sample", "no-such-run")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "rnnkit sample: error: no-such-run: no such checkpoint (the path does not exist)"]
    r = rnnkit("sample", "no-such-run", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr and "CheckpointError" in r.stderr
    r = rnnkit("train", "--bogus")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert "unrecognized arguments: --bogus" in r.stderr


# -- help -------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "eval", "sample"])
def test_help_lists_every_option_with_its_default(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    entries = re.split(r"\n(?=  -)", text.split("options:", 1)[1])
    options = [e for e in entries if e.strip().startswith("--")]
    assert len(options) >= (30 if command == "train" else 4)
    for entry in options:
        assert "(default: " in " ".join(entry.split()), f"no default shown: {entry.strip()}"
    parser = build_parser().commands[command]
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.option_strings[-1] in text


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "ptb").is_dir(), reason=f"shared data not found at {SHARED}")
def test_budget_spent_before_the_first_step_names_minutes_even_with_a_test_split(
        tmp_path, capsys, monkeypatch):
    """With a test split (PTB has one), the end of training used to evaluate best/, which a
    budget spent in setup never wrote: the error named the missing checkpoint, not --minutes."""
    monkeypatch.setenv("RNNKIT_DATA", str(SHARED))
    rc = main(["train", "--data", "ptb", "--out", str(tmp_path / "run"), "--hidden", "6",
               "--embed", "4", "--layers", "1", "--bptt", "5", "--minutes", "0.00001",
               "--sample-length", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--minutes 1e-05: the time budget ended before the first training step" in err
    assert "no such checkpoint" not in err
