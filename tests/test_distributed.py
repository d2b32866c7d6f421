"""Data-parallel training over MPI (rnnkit.distributed): the flat gradient buffer, the
single-process world, and -- where mpi4py and ``mpiexec`` are installed -- two ranks against one
process for every training command, resume, Ctrl-C, and a rank that dies or hangs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnnkit import distributed
from rnnkit.cli.main import main
from rnnkit.tasks.lm.model import LanguageModel, LMConfig
from rnnkit.train.checkpoint import load_checkpoint
from rnnkit.train.trainer import Trainer

TEXT = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(30))
WORDS = ["the", "a", "film", "plot", "actor", "scene", "was", "is", "very", "quite"]


# -- without MPI ---------------------------------------------------------------------------------
def _lm(seed=0):
    cfg = LMConfig(vocab_size=11, cell="lstm", embed_size=5, hidden_size=7, num_layers=2,
                   tie_weights=False, dtype="float64")
    return LanguageModel(cfg, rng=np.random.default_rng(seed))


def test_flat_grad_holds_every_gradient_and_changes_no_number():
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 11, (3, 6)), rng.integers(0, 11, (3, 6))
    plain, flat_model = _lm(), _lm()
    plain.loss(x, y)
    flat = flat_model.flat_grad(extra=2)
    assert flat.size == flat_model.num_parameters() + 2 and flat.dtype == np.float64
    flat_model.loss(x, y)
    for k, g in flat_model.grads().items():
        assert np.shares_memory(g, flat), k
        np.testing.assert_array_equal(g, plain.grads()[k], err_msg=k)
    assert flat_model.flat_grad(extra=2) is flat  # made once
    flat_model.zero_grad()
    assert not flat.any()


def test_single_process_world_collectives_return_their_input():
    w = distributed.World()
    assert (w.rank, w.size) == (0, 1)
    model = _lm()
    model.grads()["embed.W"][...] = 2.0
    assert w.allreduce_grads(model, 5, [1.5]) == (5.0, [1.5])
    assert (model.grads()["embed.W"] == 2.0).all()  # not rescaled, no buffer made
    assert getattr(model, "_flat_grad", None) is None
    assert w.sum([1.0, 2.0]).tolist() == [1.0, 2.0] and w.any(True) and not w.any(False)
    assert w.gather("x") == ["x"] and w.allgather(3) == [3] and w.bcast(4) == 4


@pytest.mark.parametrize("n,size", [(10, 3), (2, 3), (7, 2), (0, 2)])
def test_parts_cover_every_item_once(n, size):
    parts = []
    for rank in range(size):
        w = distributed.World()
        w.rank, w.size = rank, size
        parts.append(w.part(n))
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [hi - lo for lo, hi in parts]
    assert max(sizes) - min(sizes) <= 1


def test_weight_checksum_sees_one_changed_bit():
    a, b = _lm(), _lm()
    assert distributed.weight_checksum(a) == distributed.weight_checksum(b)
    w = b.parameters()["rnn.layers.1.fwd.W_h"]
    w.view(np.uint64)[0, 0] ^= 1  # the last bit of one weight
    assert distributed.weight_checksum(a) != distributed.weight_checksum(b)


def test_weights_that_differ_between_ranks_stop_the_run():
    w = distributed.World()
    w.size = 2
    w.allgather = lambda obj, what="": [obj, obj + 1]  # rank 1 holds other weights
    with pytest.raises(distributed.DistributedError, match=r"differ between ranks after step 7"):
        w.check_weights(_lm(), step=7)
    w.allgather = lambda obj, what="": [obj, obj]
    w.check_weights(_lm(), step=8)


def test_import_costs_nothing_without_a_launcher():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MV2_", "SLURM_", "RNNKIT_MPI"))}
    code = ("import sys, rnnkit.distributed as d, rnnkit.train.trainer; w = d.world(); "
            "assert (w.rank, w.size) == (0, 1) and 'mpi4py' not in sys.modules, sys.modules")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def _launched_alone(tmp_path, extra_path=None) -> subprocess.CompletedProcess:
    """``rnnkit train`` in an environment that says an MPI launcher started 2 processes."""
    env = {**os.environ, "PMI_SIZE": "2", "PMI_RANK": "0"}
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "rnnkit.cli.main", "train", "--epochs", "1",
                           "--out", str(tmp_path / "run")], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_launcher_without_mpi4py_is_one_clear_error(tmp_path):
    fake = tmp_path / "fake" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no mpi4py here')\n")
    r = _launched_alone(tmp_path, tmp_path / "fake")
    assert r.returncode == 2 and not (tmp_path / "run").exists()
    assert r.stderr.strip() == ('rnnkit train: error: started as one of 2 processes by an MPI '
                                'launcher, but mpi4py is not installed: pip install "rnnkit[mpi]"')


def test_a_rank_other_than_0_writes_nothing(tmp_path):
    """The trainer of rank 1 trains but leaves the run directory to rank 0."""
    from rnnkit.tasks.lm.task import LMTask
    from rnnkit.text.tokenizers import make_tokenizer
    from rnnkit.train.trainer import TrainConfig

    tok = make_tokenizer("char").fit(TEXT)
    ids = tok.encode(TEXT)
    cfg = LMConfig(vocab_size=len(tok.vocab), hidden_size=8, embed_size=4, num_layers=1,
                   dtype="float64")
    task = LMTask(LanguageModel(cfg, rng=np.random.default_rng(0)), tok, ids[:700], ids[700:],
                  batch_size=2, bptt=8)
    rank1 = distributed.World()
    rank1.rank = 1
    lines = []
    summary = Trainer(task, TrainConfig(epochs=1, progress=False), tmp_path / "run",
                      echo=lines.append, world=rank1).fit()
    assert summary["step"] == task.num_batches()
    assert not (tmp_path / "run").exists() and lines == []


# -- under mpiexec -------------------------------------------------------------------------------
def _mpiexec() -> str | None:
    for cand in (os.environ.get("RNNKIT_MPIEXEC"), Path(sys.executable).parent / "mpiexec",
                 shutil.which("mpiexec")):
        if cand and Path(cand).exists():
            return str(cand)
    return None


def _mpi_works() -> bool:
    if _mpiexec() is None:
        return False
    try:
        subprocess.run([sys.executable, "-c", "from mpi4py import MPI"], check=True,
                       timeout=60, capture_output=True)
    except (subprocess.SubprocessError, OSError):
        return False
    return True


MPI = _mpi_works()
needs_mpi = pytest.mark.skipif(not MPI, reason="needs mpi4py with an MPI library and mpiexec")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _launch(n: int, argv, **kw) -> subprocess.Popen:
    cmd = [_mpiexec(), "-n", str(n), sys.executable, "-m", "rnnkit.cli.main",
           *map(str, argv)]
    return subprocess.Popen(cmd, env={**ENV, **kw.pop("env", {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _mpirun(n: int, argv, timeout: float = 120) -> tuple[int, str, str]:
    p = _launch(n, argv)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _weights(out: Path) -> dict:
    return load_checkpoint(out / "last", weights_only=True).weights


def _assert_same(a: Path, b: Path, tol: float = 1e-12) -> None:
    wa, wb = _weights(a), _weights(b)
    assert set(wa) == set(wb)
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=0, atol=tol, err_msg=k)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "text.txt").write_text(TEXT)
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(57):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(WORDS, int(rng.integers(2, 7))))
        words.insert(int(rng.integers(0, len(words) + 1)), "good" if label else "bad")
        lines.append(f"{label} {' '.join(words)}")
    (d / "cls.txt").write_text("\n".join(lines[:45]) + "\n")
    (d / "cls_dev.txt").write_text("\n".join(lines[45:]) + "\n")
    blocks = []
    for _ in range(40):
        rows = [f"{rng.choice(['Ann', 'Bob'])} B-PER" if rng.random() < 0.3 else
                f"{rng.choice(WORDS)} O" for _ in range(int(rng.integers(2, 6)))]
        blocks.append("\n".join(rows))
    (d / "tag.txt").write_text("\n\n".join(blocks[:32]) + "\n")
    (d / "tag_dev.txt").write_text("\n\n".join(blocks[32:]) + "\n")
    from rnnkit.tasks.seq2seq.data import addition_pairs, write_pairs

    write_pairs(d / "pairs.tsv", addition_pairs(70, 2, rng=np.random.default_rng(0)))
    return d


def _argv(command: str, d: Path, opt: str, out: Path) -> list:
    common = ["--no-progress", "--dtype", "float64", "--optimizer", opt, "--seed", 3,
              "--out", out, "--lr", 0.5 if opt == "sgd" else 0.01]
    if command == "train":  # 3 streams: 2 on rank 0, 1 on rank 1
        return ["train", "--data", d / "text.txt", "--hidden", 8, "--embed", 6, "--layers", 2,
                "--bptt", 6, "--batch-size", 3, "--sample-length", 0, "--max-steps", 60,
                *common]
    if command == "train-classifier":  # batches of 7: the last one (3) splits 2 / 1
        return ["train-classifier", "--train", d / "cls.txt", "--valid", d / "cls_dev.txt",
                "--embed", 6, "--hidden", 5, "--batch-size", 7, "--epochs", 3, *common]
    if command == "train-tagger":
        return ["train-tagger", "--train", d / "tag.txt", "--valid", d / "tag_dev.txt",
                "--embed", 6, "--hidden", 5, "--char-embed", 3, "--char-hidden", 3,
                "--batch-size", 5, "--epochs", 2, *common]
    return ["train-seq2seq", "--train", d / "pairs.tsv", "--valid-fraction", 0.2,
            "--src-level", "char", "--tgt-level", "char", "--hidden", 6, "--embed", 4,
            "--attention", "general", "--batch-size", 9, "--epochs", 2, *common]


@needs_mpi
@pytest.mark.parametrize("command,opt", [
    ("train", "sgd"), ("train", "adam"), ("train-classifier", "sgd"),
    ("train-classifier", "adam"), ("train-tagger", "adam"), ("train-seq2seq", "sgd")])
def test_two_ranks_take_the_single_process_steps(files, tmp_path, command, opt):
    """The same global batch split over 2 ranks gives the weights of one process to 1e-12;
    rank 0 alone writes: one start record, every step once, one summary on stdout."""
    assert main(list(map(str, _argv(command, files, opt, tmp_path / "one")))) == 0
    rc, out, err = _mpirun(2, _argv(command, files, opt, tmp_path / "two"))
    assert rc == 0, err
    _assert_same(tmp_path / "one", tmp_path / "two")
    records = [json.loads(line) for line in (tmp_path / "two/metrics.jsonl").open()]
    assert [r["event"] for r in records].count("start") == 1
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert steps == sorted(set(steps))
    assert out.count("checkpoint") <= 1 and "Traceback" not in err


@pytest.mark.parametrize("command", ["train", "train-classifier", "train-tagger",
                                     "train-seq2seq"])
def test_every_training_command_takes_the_schedule_options(files, tmp_path, command):
    """--schedule linear --warmup 2 in one process: the logged rates rise over two steps, then
    fall to near --min-lr by the last step."""
    argv = [*_argv(command, files, "sgd", tmp_path / "o"), "--schedule", "linear",
            "--warmup", 2, "--min-lr", 0.05, "--log-every", 1]
    assert main(list(map(str, argv))) == 0
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "o/metrics.jsonl").open())
           if r["event"] == "step"]
    assert len(lrs) > 4 and lrs[0] == pytest.approx(lrs[1] / 2, rel=0.2)
    assert lrs[1:] == sorted(lrs[1:], reverse=True) and 0.05 <= lrs[-1] < 0.1


@needs_mpi
def test_a_schedule_over_the_time_budget_agrees_across_ranks(files, tmp_path):
    """--schedule cosine over --minutes: each step's rate comes from rank 0's clock, so the
    replicas stay equal (the weight checks every few steps would stop the run otherwise) and
    the rate falls to near --min-lr by the end of the budget."""
    argv = list(_argv("train", files, "sgd", tmp_path / "two"))
    i = argv.index("--max-steps")
    del argv[i:i + 2]
    rc, out, err = _mpirun(2, [*argv, "--minutes", 0.15, "--schedule", "cosine",
                               "--min-lr", 0.01, "--log-every", 1])
    assert rc == 0, err
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "two/metrics.jsonl").open()
           if json.loads(line)["event"] == "step"]
    assert len(lrs) > 2 * distributed.CHECK_EVERY, len(lrs)
    assert lrs == sorted(lrs, reverse=True) and lrs[0] <= 0.5
    assert lrs[-1] < 0.1 < lrs[len(lrs) // 4]


@needs_mpi
def test_resume_under_two_ranks_and_under_one(files, tmp_path):
    """A 2-rank run with dropout stopped after 25 steps and resumed by 2 ranks ends with the
    weights of an uninterrupted run (each rank's random stream is restored); resumed by one
    process, it says that the random streams start anew."""
    straight = _argv("train", files, "adam", tmp_path / "straight") + ["--dropout", 0.3]
    assert _mpirun(2, straight)[0] == 0
    part = _argv("train", files, "adam", tmp_path / "part") + ["--dropout", 0.3]
    part[part.index("--max-steps") + 1] = 25
    assert _mpirun(2, part)[0] == 0
    shutil.copytree(tmp_path / "part", tmp_path / "part1")
    rc, _, err = _mpirun(2, ["train", "--out", tmp_path / "part", "--resume", "--max-steps", 60,
                             "--no-progress", "--sample-length", 0])
    assert rc == 0, err
    _assert_same(tmp_path / "straight", tmp_path / "part", tol=0)
    proc = subprocess.run([sys.executable, "-m", "rnnkit.cli.main", "train", "--out",
                           str(tmp_path / "part1"), "--resume", "--max-steps", "60",
                           "--no-progress", "--sample-length", "0"],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "saved by 2 process(es) and resumes in 1" in proc.stderr
    assert load_checkpoint(tmp_path / "part1/last").train_meta["step"] == 60


@needs_mpi
def test_an_mpi_that_sees_one_process_of_two_is_refused(tmp_path):
    """The launcher of one MPI library and mpi4py built on another: each process would train
    alone into the same directory."""
    r = _launched_alone(tmp_path)
    assert r.returncode == 2 and "MPI sees a world of one" in r.stderr
    assert not (tmp_path / "run").exists()


def _ranks(pid: int) -> dict[int, int]:
    """``{rank: pid}`` of the processes an MPI launcher ``pid`` started (from /proc)."""
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            env = Path(f"/proc/{p}/environ").read_bytes().split(b"\0")
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for e in env:
            for key in (b"PMI_RANK=", b"OMPI_COMM_WORLD_RANK="):
                if e.startswith(key):
                    found[int(e[len(key):])] = p
        for t in tasks:
            try:
                todo += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
            except OSError:
                pass
    return found


def _running(files, out: Path, env=None) -> tuple[subprocess.Popen, dict]:
    """A 2-rank run well into training, and its ranks' process ids."""
    argv = _argv("train", files, "sgd", out)
    argv[argv.index("--max-steps") + 1] = 10**6
    p = _launch(2, [*argv, "--minutes", 2], env=env or {})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log = out / "metrics.jsonl"
        if log.exists() and '"event": "epoch"' in log.read_text():
            ranks = _ranks(p.pid)
            if len(ranks) == 2:
                return p, ranks
        time.sleep(0.2)
    p.kill()
    pytest.fail("the 2-rank run did not start training within 60 s")


needs_proc = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")


@needs_mpi
@needs_proc
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_one_rank_stops_both_with_a_checkpoint(files, tmp_path, signum):
    """Ctrl-C or SIGTERM on rank 1: both ranks stop after the same step, rank 0 saves and
    names the signal rank 1 got."""
    p, ranks = _running(files, tmp_path / "run")
    os.kill(ranks[1], signum)
    _, err = p.communicate(timeout=60)
    what = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
    assert p.returncode != 0 and f"{what}; progress saved" in err, err
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").open()]
    assert records[-1]["event"] == "interrupted"
    ck = load_checkpoint(tmp_path / "run/last")
    assert ck.train_meta["step"] == records[-1]["step"]


@needs_mpi
@needs_proc
@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_lost_rank_ends_the_other_within_60_s(files, tmp_path, how):
    """A rank killed outright, or stopped (so that the launcher sees nothing): the other one
    exits non-zero within 60 s (the watchdog says why), and ``last/`` still loads."""
    p, ranks = _running(files, tmp_path / "run", env={"RNNKIT_MPI_TIMEOUT": "3"})
    t0 = time.monotonic()
    os.kill(ranks[1], signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    try:
        _, err = p.communicate(timeout=60)
    finally:
        if how == "hung":
            try:
                os.kill(ranks[1], signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.kill()
    assert p.returncode != 0 and time.monotonic() - t0 < 60
    if how == "hung":
        assert "another rank has died or stopped answering" in err
    load_checkpoint(tmp_path / "run/last")


@needs_mpi
def test_the_example_loop_takes_the_same_steps_on_two_processes():
    """examples/distributed_loop.py: a loop of one's own prints the same losses and weights
    on one process and on two."""
    script = Path(__file__).resolve().parent.parent / "examples" / "distributed_loop.py"
    one = subprocess.run([sys.executable, str(script)], env={**ENV, "RNNKIT_MPI": "0"},
                         capture_output=True, text=True, timeout=120, check=True).stdout
    two = subprocess.run([_mpiexec(), "-n", "2", sys.executable, str(script)], env=ENV,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert one == two and one.count("loss") == 4
