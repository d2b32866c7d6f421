"""What the classification and tagging tasks share with the trainer: their only state is the
epoch whose shuffled order they follow (derived from the seed), and their checkpoint payload
is the model config plus the vocabulary."""

from __future__ import annotations


class EpochOrderTask:
    """Mixin: ``state``/``load_state``/``payload`` for tasks that shuffle per epoch."""

    def state(self):
        return {"epoch": self.epoch}, {}

    def load_state(self, meta: dict, arrays: dict) -> None:
        if meta.get("epoch"):
            self.start_epoch(int(meta["epoch"]))

    def payload(self):
        config = {"model": self.model.cfg.to_dict(), "data": self.data_info,
                  "batch_size": self.B}
        return config, self.vocab.to_dict()
