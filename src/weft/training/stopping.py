"""When a run stops or steps back: its limits, early stopping and the plateau rule.

The limits (``--max-steps``, ``--epochs``, ``--time-budget``) are checked before every step;
early stopping and the plateau rule count evaluations without improvement of the metric that a
:class:`Selection` names (validation loss for language models, dev accuracy for taggers). The
:class:`~weft.training.trainer.Trainer` acts on these verdicts; this module only judges.
"""

from __future__ import annotations

from dataclasses import dataclass

from weft.config import TrainConfig
from weft.training.checkpoint import TrainerState


@dataclass(frozen=True)
class Selection:
    """Which evaluation metric picks the best model, and whether lower or higher is better."""

    metric: str = "val_loss"
    mode: str = "min"

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best


VALIDATION_LOSS = Selection()  # what a language model is selected on


def limit_reached(config: TrainConfig, state: TrainerState, steps_per_epoch: int) -> str:
    """The limit the run has reached, as the reason it stopped; "" while none has."""
    if config.max_steps is not None and state.step >= config.max_steps:
        return f"reached --max-steps {config.max_steps}"
    if config.epochs is not None and state.epoch + state.index / steps_per_epoch >= config.epochs:
        return f"reached --epochs {config.epochs:g}"
    if config.time_budget is not None and state.elapsed >= config.time_budget:
        return f"reached --time-budget {config.time_budget:g}s"
    return ""


def early_stopping(config: TrainConfig, state: TrainerState) -> str:
    """Why the run stops early (``patience`` evaluations without improvement); "" if not."""
    if config.patience and state.bad_evaluations >= config.patience:
        return f"early stopping: no improvement in {config.patience} evaluations"
    return ""


def plateau_due(config: TrainConfig, state: TrainerState) -> bool:
    """Whether to go back to the best weights at a lower learning rate now: every
    ``plateau_patience`` evaluations without improvement, short of early stopping."""
    bad = state.bad_evaluations
    return bool(
        config.plateau_patience
        and state.best is not None
        and bad
        and bad % config.plateau_patience == 0
        and not early_stopping(config, state)
    )
