"""The verdicts of training/stopping.py: limits, early stopping and the plateau rule."""

from __future__ import annotations

from weft.config import TrainConfig
from weft.training.checkpoint import TrainerState
from weft.training.progress import ProgressDisplay
from weft.training.stopping import Selection, early_stopping, limit_reached, plateau_due


def state(**counters: float | None) -> TrainerState:
    st = TrainerState()
    for name, value in counters.items():
        setattr(st, name, value)
    return st


def test_each_limit_names_its_flag() -> None:
    assert limit_reached(TrainConfig(max_steps=5), state(step=4), 10) == ""
    assert limit_reached(TrainConfig(max_steps=5), state(step=5), 10) == "reached --max-steps 5"
    assert limit_reached(TrainConfig(epochs=1.5), state(epoch=1, index=5), 10) == \
        "reached --epochs 1.5"
    assert limit_reached(TrainConfig(epochs=1.5), state(epoch=1, index=4), 10) == ""
    assert limit_reached(TrainConfig(time_budget=60), state(elapsed=60.0), 10) == \
        "reached --time-budget 60s"


def test_plateau_every_patience_evaluations_but_not_when_early_stopping() -> None:
    config = TrainConfig(plateau_patience=2, patience=6)
    due = [n for n in range(8) if plateau_due(config, state(best=1.0, bad_evaluations=n))]
    assert due == [2, 4]  # 6 stops the run instead
    assert early_stopping(config, state(bad_evaluations=6)) == \
        "early stopping: no improvement in 6 evaluations"
    assert early_stopping(config, state(bad_evaluations=5)) == ""
    # Nothing to go back to before a first evaluation, and the rule can be off.
    assert not plateau_due(config, state(best=None, bad_evaluations=2))
    assert not plateau_due(TrainConfig(plateau_patience=0), state(best=1.0, bad_evaluations=2))


def test_selection_direction() -> None:
    assert Selection().better(0.9, 1.0) and not Selection().better(1.1, 1.0)
    accuracy = Selection("dev_accuracy", "max")
    assert accuracy.better(0.95, 0.9) and not accuracy.better(0.8, 0.9)
    assert accuracy.better(0.1, None)


def test_the_progress_bar_shows_the_best_of_the_evaluation_just_made() -> None:
    display = ProgressDisplay(quiet=False, total=30, initial=0, metric="val_loss")
    display.report(30, 3.7, 3.787, 1000.0)  # drawn before step 30's evaluation
    display.evaluation(30, {"val_loss": 3.6727}, improved=True, sample=None)
    assert display.bar is not None and "best val_loss 3.673" in display.bar.postfix
    display.evaluation(40, {"val_loss": 3.9}, improved=False, sample=None)
    assert "best val_loss 3.673" in display.bar.postfix
    display.close()
