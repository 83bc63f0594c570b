"""Learning-rate schedule: linear warm-up, then cosine decay over the run's progress.

Progress is the largest fraction reached of any limit the run has (steps, epochs, time budget),
so a run limited by ``--time-budget`` still anneals to its minimum as time runs out.
"""

from __future__ import annotations

import math


def progress(
    step: int,
    epoch_progress: float,
    elapsed: float,
    *,
    max_steps: int | None,
    epochs: float | None,
    time_budget: float | None,
) -> float:
    fractions = [0.0]
    if max_steps:
        fractions.append(step / max_steps)
    if epochs:
        fractions.append(epoch_progress / epochs)
    if time_budget:
        fractions.append(elapsed / time_budget)
    return min(1.0, max(fractions))


def learning_rate(
    base_lr: float, step: int, fraction: float, warmup_steps: int, min_lr_ratio: float
) -> float:
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
    return base_lr * warmup * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)
