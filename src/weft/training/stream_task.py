"""The stream training task (:class:`StreamLMTask`): one long token stream cut into columns,
the hidden state carried over from window to window. Its sibling for records is
records_task.py; training/fit_language_model.py builds either and runs the trainer."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from weft.config import GenerationConfig, TrainConfig
from weft.data.stream import StreamBatches
from weft.generation import generate
from weft.models.rnn_lm import (
    RNNLanguageModel,
    State,
    detach_state,
    state_from_tensors,
    state_to_tensors,
)
from weft.tokenizers import Tokenizer
from weft.training.evaluate import stream_loss


class StreamLMTask:
    """Truncated BPTT over ``batch_size`` columns of one token stream (see data/stream.py)."""

    model: torch.nn.Module

    def __init__(
        self,
        model: RNNLanguageModel,  # kept as .model (the trainer's contract) and .lm
        tokenizer: Tokenizer,
        train_ids: np.ndarray,
        val_ids: np.ndarray,
        config: TrainConfig,
        device: torch.device,
        precision: torch.dtype | None,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """``config.batch_size`` is the global batch; this rank trains on its share."""
        self.model = model
        self.lm = model
        self.tokenizer = tokenizer
        self.device = device
        self.precision = precision
        self.train = StreamBatches(train_ids, config.batch_size, config.seq_len, device, "corpus",
                                   rank=rank, world_size=world_size)
        self.val_ids = val_ids
        self.eval_batch_size = config.batch_size
        self.state: State | None = None
        self.sample_seed = config.seed

    def steps_per_epoch(self) -> int:
        return self.train.num_windows

    def start_epoch(self, epoch: int) -> None:
        self.state = None  # each pass over the columns starts from a zero state

    def train_loss(self, epoch: int, index: int) -> tuple[torch.Tensor, int]:
        inputs, targets = self.train.window(index)
        out = self.model(inputs, self.state, targets)
        self.state = detach_state(out.state)
        assert out.loss is not None
        return out.loss, targets.numel()

    def evaluate(self) -> dict[str, float]:
        if len(self.val_ids) < 2:
            return {}
        nats, count = stream_loss(self.lm, self.val_ids, batch_size=self.eval_batch_size,
                                  seq_len=256, precision=self.precision)
        return {"val_loss": nats / count}

    def sample(self) -> str | None:
        # float32: a training sample is short and should not measure generation paths.
        config = GenerationConfig(max_new_tokens=120, temperature=0.8, seed=self.sample_seed,
                                  quantize="none")
        return generate(self.lm, self.tokenizer, "", config)[0]

    def state_dict(self) -> dict[str, Any]:
        return {"hidden": state_to_tensors(self.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = state_from_tensors(state.get("hidden", {}), self.device)

    def after_skipped_step(self) -> None:
        # A non-finite loss may come from a non-finite carried state: start the columns afresh.
        self.state = None

    def reshard_state(self, states: list[dict[str, Any]], rank: int, world_size: int
                      ) -> dict[str, Any]:
        """This rank's hidden state when the number of ranks changes (columns are global)."""
        hidden = [s.get("hidden", {}) for s in states]
        if not all(hidden):
            return {"hidden": {}}  # at the start of an epoch: zero state everywhere
        merged = {k: torch.cat([h[k] for h in hidden], dim=1) for k in hidden[0]}
        return {"hidden": {k: v.chunk(world_size, dim=1)[rank].clone()
                           for k, v in merged.items()}}
