"""The record language-model task: each record is ``<bos> text <eos>``, trained from a fresh state.

Beside :class:`weft.training.stream_task.StreamLMTask` (one long stream, state carried over), this
task trains on padded batches of whole records (tweets, jokes): the state starts at zero for
every record, padding targets are ``-100`` so the model's cross-entropy ignores them, and the
sample shown at each evaluation starts from ``<bos>`` and ends at ``<eos>``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from weft.config import DataConfig, GenerationConfig, TrainConfig
from weft.data.labels import NO_LABELS, LabelSet
from weft.data.records import IGNORE_INDEX, RecordBatches
from weft.device import autocast
from weft.generation import generate
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import Tokenizer
from weft.training.task import TaskDefaults


@torch.no_grad()
def record_nats(
    model: RNNLanguageModel, batches: RecordBatches, precision: torch.dtype | None = None
) -> np.ndarray:
    """Nats of every record (``<eos>`` included; the pieces of a split record added up)."""
    device = model.device
    was_training = model.training
    model.eval()
    per_record = np.zeros(batches.num_records, dtype=np.float64)
    for rows in batches.batch_indices():
        inputs, targets = batches.make_batch(rows)
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast(device, precision):
            nats = model.target_nats(inputs, targets)[0].sum(dim=1)
        np.add.at(per_record, batches.seg_record[rows], nats.double().cpu().numpy())
    model.train(was_training)
    return per_record


def records_loss(
    model: RNNLanguageModel, batches: RecordBatches, precision: torch.dtype | None = None
) -> tuple[float, int]:
    """Total nats and number of predicted tokens (``<eos>`` included) over all records."""
    return float(record_nats(model, batches, precision).sum()), batches.num_targets


class RecordLMTask(TaskDefaults):
    """Padded, length-bucketed batches of records (see data/records.py)."""

    model: torch.nn.Module

    def __init__(
        self,
        model: RNNLanguageModel,
        tokenizer: Tokenizer,
        train_records: list[str],
        val_records: list[str],
        data: DataConfig,
        config: TrainConfig,
        device: torch.device,
        precision: torch.dtype | None,
        *,
        prefixes: np.ndarray | None = None,
        labels: LabelSet = NO_LABELS,
    ) -> None:
        """``prefixes``: the label token ids of every record (training ones first)."""
        self.model = model
        self.lm = model
        self.tokenizer = tokenizer
        self.device = device
        self.precision = precision
        n_train = len(train_records)
        self.labels = labels
        self.train = RecordBatches.from_texts(
            train_records, tokenizer, batch_size=config.batch_size,
            max_len=data.max_record_len, long_records=data.long_records, seed=config.seed,
            prefixes=None if prefixes is None else prefixes[:n_train])
        self.val = (
            RecordBatches.from_texts(
                val_records, tokenizer, batch_size=config.batch_size,
                max_len=data.max_record_len, long_records=data.long_records, shuffle=False,
                prefixes=None if prefixes is None else prefixes[n_train:])
            if val_records else None
        )
        self.notes = list(self.train.notes)
        self.order: list[np.ndarray] = []
        self.sample_seed = config.seed

    @property
    def num_tokens(self) -> int:
        return self.train.num_targets

    def steps_per_epoch(self) -> int:
        return len(self.train)

    def start_epoch(self, epoch: int) -> None:
        self.order = self.train.batch_indices(epoch)

    def train_loss(self, epoch: int, index: int) -> tuple[torch.Tensor, int]:
        inputs, targets = self.train.make_batch(self.order[index])
        count = int((targets != IGNORE_INDEX).sum())  # counted on the host: no device sync
        out = self.model(inputs.to(self.device), None, targets.to(self.device))
        assert out.loss is not None
        return out.loss, count

    def evaluate(self) -> dict[str, float]:
        if self.val is None:
            return {}
        nats, count = records_loss(self.lm, self.val, self.precision)
        return {"val_loss": nats / max(count, 1),
                "val_bpc": nats / math.log(2) / max(self.val.num_chars, 1)}

    def sample(self) -> str | None:
        # float32: a training sample is short and should not measure generation paths.
        config = GenerationConfig(max_new_tokens=120, temperature=0.8, seed=self.sample_seed,
                                  quantize="none")
        if not self.labels.columns:
            return generate(self.lm, self.tokenizer, "", config)[0]
        chosen = self.labels.sample({}, 1, self.sample_seed)[0]
        prefix = self.labels.ids(self.tokenizer, chosen)
        shown = " ".join(f"{k}={v}" for k, v in chosen.items())
        return f"[{shown}] " + generate(self.lm, self.tokenizer, "", config,
                                        prefixes=[prefix])[0]

    def state_dict(self) -> dict[str, Any]:
        return {}  # nothing carried between batches; the epoch order is rebuilt from the seed

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
