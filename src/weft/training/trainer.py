"""A training loop that knows no model kind.

A :class:`TrainingTask` owns the model, its data and any state carried between batches (the
language model's hidden state, say); the :class:`Trainer` owns everything else: the optimizer,
the warm-up + cosine schedule, gradient clipping, autocast, the progress bar, periodic evaluation
with best-model selection, early stopping, the stopping limits, the resumable ``last.pt`` state
and the ``metrics.jsonl`` log.
"""

from __future__ import annotations

import io
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from weft.config import TrainConfig
from weft.device import autocast
from weft.errors import WeftError
from weft.io import atomic_write_bytes
from weft.training import metrics as metrics_log
from weft.training.schedule import learning_rate, progress

log = logging.getLogger("weft")

LAST_STATE = "last.pt"
METRICS = "metrics.jsonl"
PLOT = "loss.png"


class TrainingTask(Protocol):
    """What a model kind provides to the trainer."""

    model: torch.nn.Module

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


@dataclass(frozen=True)
class Selection:
    """Which evaluation metric picks the best model, and whether lower or higher is better."""

    metric: str = "val_loss"
    mode: str = "min"

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best


@dataclass
class TrainerState:
    """Where training stands; saved in ``last.pt`` so that a run resumes exactly."""

    step: int = 0
    epoch: int = 0
    index: int = 0  # next batch within the epoch
    elapsed: float = 0.0  # seconds of training over all sessions
    tokens: int = 0
    best: float | None = None
    bad_evaluations: int = 0
    skipped_steps: int = 0
    loss_sum: float = 0.0  # training losses since the last report, so resumed reports match
    loss_count: int = 0
    finished: str = ""  # why the run stopped, when it stopped by a limit


@dataclass(frozen=True)
class TrainResult:
    steps: int
    tokens: int
    elapsed: float
    best: float | None
    stopped_because: str


class Trainer:
    def __init__(
        self,
        task: TrainingTask,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        device: torch.device,
        precision: torch.dtype | None,
        selection: Selection = Selection(),
        save_best: Callable[[], None] = lambda: None,
        quiet: bool = False,
    ) -> None:
        self.task = task
        self.config = config.with_default_stop()
        self.run_dir = Path(run_dir)
        self.device = device
        self.precision = precision
        self.selection = selection
        self.save_best = save_best
        self.quiet = quiet
        self.state = TrainerState()
        params = [p for p in task.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=self.config.lr, weight_decay=self.config.weight_decay,
            fused=True if device.type == "cuda" else None,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == torch.float16)
        self._stop_requested = False

    # ------------------------------------------------------------------ state on disk
    def save_state(self) -> None:
        payload = {
            "model": self.task.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "trainer": asdict(self.state),
            "task": self.task.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available()
                       else {})},
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(self.run_dir / LAST_STATE, buffer.getvalue())

    def load_state(self) -> None:
        path = self.run_dir / LAST_STATE
        if not path.exists():
            raise WeftError(f"{self.run_dir} has no {LAST_STATE} to resume from")
        try:
            # weights_only: a downloaded run directory must never execute code when loaded.
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeftError(f"{path} is damaged and cannot be resumed from ({exc})") from None
        self.task.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.state = TrainerState(**payload["trainer"])
        self.task.load_state_dict(payload["task"])
        torch.set_rng_state(payload["rng"]["torch"])
        if "cuda" in payload["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["rng"]["cuda"])

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> TrainResult:
        cfg, st = self.config, self.state
        steps_per_epoch = self.task.steps_per_epoch()
        metrics_path = self.run_dir / METRICS
        if resume:
            self.load_state()
            st = self.state
            st.finished = ""
            metrics_log.truncate_metrics(metrics_path, st.step)
        else:
            metrics_path.unlink(missing_ok=True)
            self.task.start_epoch(st.epoch)
        self.task.model.train()

        session_start = time.perf_counter()
        elapsed_before = st.elapsed
        loss_sum = torch.full((), st.loss_sum, device=self.device)
        loss_count = st.loss_count
        last_train_loss = math.nan
        window_start, window_tokens = time.perf_counter(), 0
        bar = tqdm(total=self._estimate_total_steps(steps_per_epoch, 0.0), initial=st.step,
                   disable=self.quiet, unit="step", dynamic_ncols=True, leave=True)
        evaluated_at = st.step if resume else -1
        reason = ""
        with self._graceful_stop():
            while True:
                st.elapsed = elapsed_before + (time.perf_counter() - session_start)
                reason = self._limit_reached(steps_per_epoch)
                if reason or self._stop_requested:
                    reason = reason or "interrupted"
                    break
                if st.index >= steps_per_epoch:
                    st.epoch += 1
                    st.index = 0
                    self.task.start_epoch(st.epoch)
                epoch_progress = st.epoch + st.index / steps_per_epoch
                frac = progress(st.step, epoch_progress, st.elapsed, max_steps=cfg.max_steps,
                                epochs=cfg.epochs, time_budget=cfg.time_budget)
                lr = learning_rate(cfg.lr, st.step, frac, cfg.warmup_steps, cfg.min_lr_ratio)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr

                with autocast(self.device, self.precision):
                    loss, tokens = self.task.train_loss(st.epoch, st.index)
                if self._step(loss):
                    loss_sum += loss.detach().float()
                    loss_count += 1
                st.step += 1
                st.index += 1
                st.tokens += tokens
                window_tokens += tokens

                if st.step % 10 == 0 or st.step % cfg.eval_every == 0:
                    if loss_count:
                        last_train_loss = (loss_sum / loss_count).item()
                    loss_sum.zero_()
                    loss_count = 0
                    st.loss_sum = 0.0
                    now = time.perf_counter()
                    rate = window_tokens / max(now - window_start, 1e-9)
                    window_start, window_tokens = now, 0
                    bar.total = self._estimate_total_steps(steps_per_epoch, rate)
                    bar.set_postfix_str(self._postfix(last_train_loss, rate), refresh=False)
                st.loss_count = loss_count
                bar.update(1)
                if st.step % cfg.eval_every == 0:
                    self._evaluate(bar, last_train_loss, lr, metrics_path)
                    evaluated_at = st.step
                    if cfg.patience and st.bad_evaluations >= cfg.patience:
                        reason = f"early stopping: no improvement in {cfg.patience} evaluations"
                        break
        bar.close()
        if st.step > evaluated_at and st.step > 0 and reason != "interrupted":
            self._evaluate(None, last_train_loss, self.optimizer.param_groups[0]["lr"],
                           metrics_path)
        st.finished = "" if reason == "interrupted" else reason
        st.loss_sum = float(loss_sum)
        self.save_state()
        metrics_log.plot_metrics(metrics_path, self.run_dir / PLOT, title=self.run_dir.name)
        return TrainResult(st.step, st.tokens, st.elapsed, st.best, reason)

    def _step(self, loss: torch.Tensor) -> bool:
        """Backward pass and optimizer step; a non-finite loss or gradient skips the step."""
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(
            self.task.model.parameters(), self.config.grad_clip or float("inf")
        )
        ok = True
        if self.device.type != "cuda":
            # A host check costs nothing on the CPU; on a GPU the scaler or AdamW's own
            # handling avoids a device sync per step.
            ok = bool(torch.isfinite(norm)) and bool(torch.isfinite(loss.detach()))
        if ok:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.state.skipped_steps += 1
            log.warning("non-finite loss or gradient at step %d: step skipped", self.state.step)
            if self.state.skipped_steps >= 10:
                self.optimizer.zero_grad(set_to_none=True)
                raise WeftError(
                    "training diverged: 10 steps had a non-finite loss or gradient. Lower --lr, "
                    "keep --grad-clip on, or use --precision fp32; the last good state is kept."
                )
        self.optimizer.zero_grad(set_to_none=True)
        return ok

    def _evaluate(
        self, bar: tqdm[Any] | None, train_loss: float, lr: float, metrics_path: Path
    ) -> None:
        st = self.state
        self.task.model.eval()
        with torch.no_grad(), autocast(self.device, self.precision):
            results = self.task.evaluate()
            sample = self.task.sample()
        self.task.model.train()
        value = results.get(self.selection.metric)
        improved = value is not None and self.selection.better(value, st.best)
        if improved:
            st.best = value
            st.bad_evaluations = 0
            self.save_best()
        else:
            st.bad_evaluations += 1
        record = {"step": st.step, "epoch": st.epoch, "tokens": st.tokens,
                  "elapsed": round(st.elapsed, 3), "lr": lr,
                  "train_loss": None if math.isnan(train_loss) else train_loss, **results}
        metrics_log.append_metrics(metrics_path, record)
        self.save_state()
        if not self.quiet:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in results.items())
            lines = [f"step {st.step}: {shown}" + (" (best)" if improved else "")]
            if sample:
                lines.append("  sample: " + sample.replace("\n", "\n          "))
            (bar.write if bar else print)("\n".join(lines))

    # ------------------------------------------------------------------ limits and display
    def _limit_reached(self, steps_per_epoch: int) -> str:
        cfg, st = self.config, self.state
        if cfg.max_steps is not None and st.step >= cfg.max_steps:
            return f"reached --max-steps {cfg.max_steps}"
        if cfg.epochs is not None and st.epoch + st.index / steps_per_epoch >= cfg.epochs:
            return f"reached --epochs {cfg.epochs:g}"
        if cfg.time_budget is not None and st.elapsed >= cfg.time_budget:
            return f"reached --time-budget {cfg.time_budget:g}s"
        return ""

    def _estimate_total_steps(self, steps_per_epoch: int, tokens_per_s: float) -> int | None:
        cfg, st = self.config, self.state
        limits = []
        if cfg.max_steps is not None:
            limits.append(cfg.max_steps)
        if cfg.epochs is not None:
            limits.append(math.ceil(cfg.epochs * steps_per_epoch))
        if cfg.time_budget is not None and tokens_per_s > 0 and st.step > 0:
            tokens_per_step = max(st.tokens / st.step, 1.0)
            remaining = max(cfg.time_budget - st.elapsed, 0.0)
            limits.append(st.step + int(remaining * tokens_per_s / tokens_per_step))
        return min(limits) if limits else None

    def _postfix(self, train_loss: float, tokens_per_s: float) -> str:
        parts = [f"loss {train_loss:.3f}"]
        if self.state.best is not None:
            parts.append(f"best {self.selection.metric} {self.state.best:.3f}")
        parts.append(f"{tokens_per_s:,.0f} tok/s")
        return ", ".join(parts)

    @contextmanager
    def _graceful_stop(self) -> Iterator[None]:
        """First Ctrl-C / SIGTERM: finish the step, save, stop. A second one exits at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            log.warning("stopping after this step and saving the state (again to quit at once)")

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
