"""What a model kind provides to the trainer: the :class:`TrainingTask` protocol.

The trainer (trainer.py) knows no model kind; a task owns the model, its data and whatever it
carries between batches. :class:`TaskDefaults` gives the optional hooks their "nothing to do"
behaviour, so a task that needs none of them inherits it and says so.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class TrainingTask(Protocol):
    """A model kind as the trainer sees it."""

    model: torch.nn.Module  # the trainer may wrap it (DistributedDataParallel): call it for losses

    def steps_per_epoch(self) -> int: ...

    def start_epoch(self, epoch: int) -> None:
        """Reset or reshuffle for ``epoch``; must be deterministic given the seed and epoch."""

    def train_loss(self, epoch: int, index: int) -> tuple[torch.Tensor, int]:
        """Loss of batch ``index`` of ``epoch`` and the number of tokens it covers."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Validation metrics, including the selection metric."""
        ...

    def sample(self) -> str | None:
        """A short sample shown at each evaluation (None for none)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def after_skipped_step(self) -> None:
        """Forget state carried from a step whose loss was non-finite (a NaN hidden state)."""

    def reshard_state(self, states: list[dict[str, Any]], rank: int, world_size: int
                      ) -> dict[str, Any] | None:
        """This rank's task state when a run saved by ``len(states)`` ranks resumes with
        ``world_size``; None when the task cannot (the run must resume with as many ranks)."""
        ...


class TaskDefaults:
    """The optional hooks of :class:`TrainingTask` for a task that needs none of them."""

    def after_skipped_step(self) -> None:
        return None  # nothing is carried between batches

    def reshard_state(self, states: list[dict[str, Any]], rank: int, world_size: int
                      ) -> dict[str, Any] | None:
        return None
