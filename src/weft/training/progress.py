"""What a training run shows while it trains: a progress bar (steps done of the expected total,
the recent loss, the best score, tokens per second) and a few lines at each evaluation. Only
rank 0 shows anything, and nothing at all with ``--quiet``."""

from __future__ import annotations

import math
from typing import Any

from tqdm import tqdm

from weft.config import TrainConfig


def estimate_total_steps(config: TrainConfig, step: int, tokens: int, elapsed: float,
                         steps_per_epoch: int, tokens_per_s: float) -> int | None:
    """The step at which the first limit will stop the run, as well as can be told now (a
    time budget is turned into steps at the recent speed); None without any limit."""
    limits = []
    if config.max_steps is not None:
        limits.append(config.max_steps)
    if config.epochs is not None:
        limits.append(math.ceil(config.epochs * steps_per_epoch))
    if config.time_budget is not None and tokens_per_s > 0 and step > 0:
        tokens_per_step = max(tokens / step, 1.0)
        remaining = max(config.time_budget - elapsed, 0.0)
        limits.append(step + int(remaining * tokens_per_s / tokens_per_step))
    return min(limits) if limits else None


class ProgressDisplay:
    """The progress bar and the evaluation lines of one training session."""

    def __init__(self, *, quiet: bool, total: int | None, initial: int, metric: str) -> None:
        self.quiet = quiet
        self.metric = metric  # the selection metric, shown as "best ..."
        self.bar: tqdm[Any] | None = tqdm(total=total, initial=initial, disable=quiet,
                                          unit="step", dynamic_ncols=True, leave=True)
        self._shown: tuple[float, float | None, float] | None = None  # loss, best, tok/s

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def report(self, total: int | None, train_loss: float, best: float | None,
               tokens_per_s: float) -> None:
        """The recent training loss and speed (every few steps; redrawn with the next step)."""
        if self.bar is None:
            return
        self.bar.total = total
        self._shown = (train_loss, best, tokens_per_s)
        self._postfix(refresh=False)

    def _postfix(self, refresh: bool) -> None:
        if self.bar is None or self._shown is None:
            return
        train_loss, best, tokens_per_s = self._shown
        parts = [f"loss {train_loss:.3f}"]
        if best is not None:
            parts.append(f"best {self.metric} {best:.3f}")
        parts.append(f"{tokens_per_s:,.0f} tok/s")
        self.bar.set_postfix_str(", ".join(parts), refresh=refresh)

    def evaluation(self, step: int, results: dict[str, float], improved: bool,
                   sample: str | None) -> None:
        if self.quiet:
            return
        if improved and self._shown is not None and self.metric in results:
            # The bar's best was drawn before this evaluation: show the new one.
            self._shown = (self._shown[0], results[self.metric], self._shown[2])
            self._postfix(refresh=True)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in results.items())
        lines = [f"step {step}: {shown}" + (" (best)" if improved else "")]
        if sample:
            lines.append("  sample: " + sample.replace("\n", "\n          "))
        (self.bar.write if self.bar is not None else print)("\n".join(lines))

    def note(self, line: str) -> None:
        """One line between evaluations (a plateau's learning-rate cut)."""
        if not self.quiet:
            (self.bar.write if self.bar is not None else print)(line)

    def close(self) -> None:
        """The bar ends (after the run's last evaluation, so that it shows the best)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
