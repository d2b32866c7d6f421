"""What the classification and tagging tasks share: with the trainer, their only state is the
epoch whose shuffled order they follow (derived from the seed), and their checkpoint payload
is the model config plus the vocabulary; in their one-call helpers (``train_classifier``,
``train_tagger``), restoring a run to resume, loading pre-trained vectors, and training then
testing the best checkpoint."""

from __future__ import annotations

from pathlib import Path

from ..text.vectors import load_vectors
from .checkpoint import load_checkpoint
from .trainer import TrainConfig, Trainer


class EpochOrderTask:
    """Mixin: ``state``/``load_state``/``payload`` for tasks that shuffle per epoch, and the
    share of each batch one of several processes takes (:meth:`distribute`)."""

    world = None

    def distribute(self, world) -> None:
        """Train on this rank's slice of every batch; validate on its share of the examples."""
        self.world = world

    def my_part(self, idx):
        """This process's slice of the example indices ``idx`` of one batch (may be empty)."""
        return idx if self.world is None else self.world.shard(idx)

    def state(self):
        return {"epoch": self.epoch}, {}

    def load_state(self, meta: dict, arrays: dict) -> None:
        if meta.get("epoch"):
            self.start_epoch(int(meta["epoch"]))

    def payload(self):
        config = {"model": self.model.cfg.to_dict(), "data": self.data_info,
                  "batch_size": self.B}
        return config, self.vocab.to_dict()


def resume_setup(out: Path, kind: str, vocab_class, config_class, batch_size: int,
                 data_info: dict):
    """``(vocab, model config, batch size, data info)`` saved in the run's last checkpoint
    (``out/last``, of ``kind``); the batch size and data info given are kept where the
    checkpoint has none."""
    ck = load_checkpoint(out / "last", kind=kind, weights_only=True)
    def parse():
        size = ck.config.get("batch_size", batch_size)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size < 2**31:
            raise ValueError(f"batch_size must be a positive integer, got {size!r}")
        info = ck.config.get("data", data_info)
        if not isinstance(info, dict):
            raise TypeError(f"data must be a dict, got {type(info).__name__}")
        return (vocab_class.from_dict(ck.vocab), config_class.from_dict(ck.config["model"]),
                size, info)

    vocab, cfg, batch_size, data_info = ck.read(parse)
    return vocab, cfg, batch_size, data_info


def set_vectors(model, words, vectors, data_info: dict, echo) -> None:
    """Copy the pre-trained ``vectors`` (a GloVe/word2vec text file) of the words in ``words``
    into the model's embedding, say how many were found, and note the file in ``data_info``."""
    vecs, rows, _ = load_vectors(vectors, words)
    model.set_embeddings(vecs, rows)
    echo(f"pre-trained vectors: {len(rows):,} of {len(words) - 2:,} words found in {vectors}")
    data_info["vectors"] = str(vectors)


def fit_and_test(task, train_config: TrainConfig, out: Path, *, resume: bool, echo,
                 reserve_s: float) -> dict:
    """Train ``task`` with the :class:`Trainer`, load the best checkpoint (the last one without
    validation data) into ``task.model``, leave it in evaluation mode and, with test data,
    add ``summary["test"]``.  Returns the trainer's summary."""
    summary = Trainer(task, train_config, out, resume=resume, echo=echo,
                      reserve_s=reserve_s).fit()
    best = out / ("best" if "valid" in task.splits else "last")
    ck = load_checkpoint(best, kind=task.kind, weights_only=True)
    task.model.load_state_dict(ck.weights)
    task.model.eval()
    if "test" in task.splits:
        summary["test"] = task.evaluate("test")
    return summary
