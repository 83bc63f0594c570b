"""A training loop that knows no model kind.

A :class:`TrainingTask` (task.py) owns the model, its data and any state carried between
batches (the language model's hidden state, say); the :class:`Trainer` owns the loop: the
optimizer, the warm-up + cosine schedule, gradient clipping, autocast, periodic evaluation with
best-model selection, going back to the best weights at a lower learning rate when validation
stalls, early stopping, the stopping limits, when the resumable state is saved and the
``metrics.jsonl`` log. What the state holds and how it is written is checkpoint.py's; when a
run stops or steps back, stopping.py's; what is shown while training, progress.py's; the
collectives between ranks, distributed.py's.

Faults it survives (their signals and messages in faults.py): Ctrl-C / SIGTERM (finish the
step, save, stop), non-finite losses or gradients (skip the step; stop after too many in a row,
keeping the last saved state), running out of memory and failing writes (a WeftError saying
what to change; the saved state is kept).
Under ``torchrun`` it wraps the model in DistributedDataParallel and keeps every rank in step.
"""

from __future__ import annotations

import logging
import math
import shlex
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from weft.config import TrainConfig
from weft.device import autocast
from weft.errors import WeftError
from weft.runs import METRICS, PLOT
from weft.training import distributed, stopping
from weft.training import metrics as metrics_log
from weft.training.checkpoint import (
    LAST_STATE,
    TrainerState,
    gather_rank_states,
    load_checkpoint,
    pack_training_state,
    restore_rank_state,
    save_checkpoint,
    unpack_training_state,
)
from weft.training.distributed import SINGLE, Distributed
from weft.training.faults import (
    StopRequests,
    diverged,
    failed_writes,
    is_out_of_memory,
    out_of_memory,
)
from weft.training.progress import ProgressDisplay, estimate_total_steps
from weft.training.schedule import learning_rate, progress
from weft.training.task import TrainingTask

log = logging.getLogger("weft")

__all__ = ["LAST_STATE", "TrainResult", "Trainer", "TrainerState", "TrainingTask"]

MAX_BAD_STEPS = 10  # non-finite steps in a row before the run is stopped


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
        selection: stopping.Selection = stopping.VALIDATION_LOSS,
        save_best: Callable[[], None] = lambda: None,
        restore_best: Callable[[], None] | None = None,
        quiet: bool = False,
        dist: Distributed = SINGLE,
        resume_command: str = "weft train --resume",
    ) -> None:
        self.task = task
        self.config = config.with_default_stop().with_eval_every(task.steps_per_epoch())
        self.run_dir = Path(run_dir)
        self.device = device
        self.precision = precision
        self.selection = selection
        self.save_best = save_best
        self.restore_best = restore_best  # loads what save_best wrote; None: no plateau cuts
        self.dist = dist
        self.resume_command = resume_command  # named in errors that keep the saved state
        self.quiet = quiet or not dist.is_main
        self.state = TrainerState()
        self.module = task.model  # the bare model: its state_dict has no DDP prefixes
        if dist.enabled:
            # The task calls task.model for its training loss, so the wrapper goes there.
            task.model = distributed.wrap_model(task.model, device)
            torch.manual_seed(distributed.rank_seed(self.config.seed, dist.rank))
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.stops = StopRequests(announce=dist.is_main)
        self._saved_step: int | None = None  # step of the newest state on disk
        # The first optimizer imports torch._dynamo (about a second), and PyTorch swallows a
        # KeyboardInterrupt raised inside that import: a Ctrl-C then was lost and the run went
        # on. Signals only record a request here, which the loop honours before step one.
        with self.stops.listening(self._second_signal_line):
            # Fused AdamW on the CPU too: one kernel over all parameters made a step 8.9x
            # faster on a tagger and 5.7x on a 2 x 512 LM, same updates to float rounding
            # (benchmarks/adamw_step.py). Other devices keep PyTorch's default.
            self.optimizer = torch.optim.AdamW(
                params, lr=self.config.lr, weight_decay=self.config.weight_decay,
                fused=True if device.type in ("cuda", "cpu") else None,
            )
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == torch.float16)
        self._stop_agreed = False  # under torchrun: whether all ranks stop now
        self._bad_in_a_row = 0
        self._saved_at = 0.0  # training time (state.elapsed) of that save
        # Every step is checked for a non-finite loss or gradient, except on one GPU, where
        # that host sync would cost a step's worth of time: there the reported loss is checked
        # every 10 steps, and every save checks the weights first (see save_state).
        self._checks_each_step = dist.enabled or device.type != "cuda"

    # ------------------------------------------------------------------ state on disk
    def save_state(self) -> None:
        """Save everything needed to continue exactly (every rank takes part; rank 0 writes)."""
        if not self._checks_each_step:
            # A step since the last check may have made the weights non-finite: saving them
            # would replace the last good state with a useless one.
            finite = torch.stack([p.isfinite().all() for p in self.module.parameters()]).all()
            if not (bool(finite) and math.isfinite(self.state.loss_sum)):
                raise self._diverged("the weights or the training loss became non-finite")
        ranks = gather_rank_states(self.task, self.dist)
        if self.dist.is_main:
            payload = pack_training_state(self.module, self.optimizer, self.scaler,
                                          asdict(self.state), ranks)
            with self._writing("the training state"):
                save_checkpoint(self.run_dir, payload)
        self._saved_step = self.state.step
        self._saved_at = self.state.elapsed

    def load_state(self) -> None:
        counters, ranks = unpack_training_state(load_checkpoint(self.run_dir), self.module,
                                                self.optimizer, self.scaler, self.run_dir)
        self.state = TrainerState.from_saved(counters)
        # Rebuild what the epoch derives from the seed (e.g. a shuffled order), then overlay
        # the state carried within it.
        self.task.start_epoch(self.state.epoch)
        restore_rank_state(self.task, ranks, self.dist, self.config.seed, self.state.step)
        self._saved_step = self.state.step
        self._saved_at = self.state.elapsed

    def _second_signal_line(self) -> str:
        """What a second Ctrl-C prints as it quits without saving (weft/interrupts.py)."""
        # The file, not self._saved_step: the signal may come between its rename and the end of
        # save_state, and the state on disk is what a resume reads.
        if not (self.run_dir / LAST_STATE).exists():
            return "interrupted before the run saved its first state; start it again"
        return (f"interrupted without saving this step; continue from the last saved state "
                f"with: {self.resume_command} {shlex.quote(str(self.run_dir))}")

    def _writing(self, what: str) -> AbstractContextManager[None]:
        return failed_writes(what, self.run_dir, self._saved_step, self.resume_command)

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> TrainResult:
        try:
            return self._fit(resume)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one too
            lost = self.dist.enabled and distributed.lost_a_rank(exc, self._saved_step,
                                                                 self.resume_command)
            if lost:
                raise lost from None
            if not is_out_of_memory(exc):
                raise
            raise out_of_memory(self.device, self.config, self._saved_step,
                                self.optimizer) from None

    def _fit(self, resume: bool) -> TrainResult:
        cfg, st = self.config, self.state
        steps_per_epoch = self.task.steps_per_epoch()
        eval_every = cfg.eval_every or steps_per_epoch  # always set by __init__
        metrics_path = self.run_dir / METRICS
        if resume:
            self.load_state()
            st = self.state
            st.finished = ""
            if self.dist.is_main:
                with self._writing(METRICS):
                    metrics_log.truncate_metrics(metrics_path, st.step)
        else:
            if self.dist.is_main:
                metrics_path.unlink(missing_ok=True)
            self.task.start_epoch(st.epoch)
        self.task.model.train()

        session_start = time.perf_counter()
        elapsed_before = st.elapsed
        loss_sum = torch.full((), st.loss_sum, device=self.device)
        loss_count = st.loss_count
        last_train_loss = math.nan
        window_start, window_tokens = time.perf_counter(), 0
        display = ProgressDisplay(quiet=self.quiet, initial=st.step,
                                  total=self._total_steps(steps_per_epoch, 0.0),
                                  metric=self.selection.metric)
        evaluated_at = st.step if resume else -1
        reason = ""
        with self.stops.listening(self._second_signal_line):
            while True:
                if not self.dist.enabled:  # ranks use rank 0's clock, agreed each step
                    st.elapsed = elapsed_before + (time.perf_counter() - session_start)
                reason = self._limit_reached(steps_per_epoch)
                # Under torchrun only the stop agreed by all ranks counts (see below).
                if reason or (self._stop_agreed if self.dist.enabled else self.stops.reason):
                    reason = reason or "interrupted"
                    break
                if st.index >= steps_per_epoch:
                    st.epoch += 1
                    st.index = 0
                    self.task.start_epoch(st.epoch)
                epoch_progress = st.epoch + st.index / steps_per_epoch
                frac = progress(st.step, epoch_progress, st.elapsed, max_steps=cfg.max_steps,
                                epochs=cfg.epochs, time_budget=cfg.time_budget)
                lr = st.lr_scale * learning_rate(cfg.lr, st.step, frac, cfg.warmup_steps,
                                                 cfg.min_lr_ratio)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr

                with autocast(self.device, self.precision):
                    loss, tokens = self.task.train_loss(st.epoch, st.index)
                ok = self._step(loss)
                step_loss = loss.detach().float()
                if self.dist.enabled:
                    clock = elapsed_before + (time.perf_counter() - session_start)
                    tokens, step_loss = self._agree_across_ranks(tokens, step_loss, ok, clock)
                if ok:
                    loss_sum += step_loss
                    loss_count += 1
                st.step += 1
                st.index += 1
                st.tokens += tokens
                window_tokens += tokens

                if st.step % 10 == 0 or st.step % eval_every == 0:
                    if loss_count:
                        last_train_loss = (loss_sum / loss_count).item()
                        if not math.isfinite(last_train_loss):
                            # Only reached where the per-step check is skipped (one GPU):
                            # the weights may already be damaged, so nothing is saved.
                            raise self._diverged("the average training loss became "
                                                 f"{last_train_loss}")
                    loss_sum.zero_()
                    loss_count = 0
                    st.loss_sum = 0.0
                    now = time.perf_counter()
                    rate = window_tokens / max(now - window_start, 1e-9)
                    window_start, window_tokens = now, 0
                    display.report(self._total_steps(steps_per_epoch, rate), last_train_loss,
                                   st.best, rate)
                st.loss_count = loss_count
                display.step()
                if st.step % eval_every == 0:
                    self._evaluate(display, last_train_loss, lr, metrics_path)
                    evaluated_at = st.step
                    reason = stopping.early_stopping(cfg, st)
                    if reason:
                        break
                elif cfg.checkpoint_every and st.elapsed - self._saved_at >= cfg.checkpoint_every:
                    # Between evaluations too, so that a kill loses little work. The pending
                    # loss average is saved with it, so the next report is the same.
                    # (st.elapsed is rank 0's clock on every rank: they all save together.)
                    st.loss_sum = float(loss_sum)
                    self.save_state()
        if st.step > evaluated_at and st.step > 0 and reason != "interrupted":
            if loss_count:  # the steps since the last report: its loss, not none at all
                last_train_loss = float(loss_sum) / loss_count
            self._evaluate(display, last_train_loss, self.optimizer.param_groups[0]["lr"],
                           metrics_path)
        display.close()
        st.finished = "" if reason == "interrupted" else reason
        st.loss_sum = float(loss_sum)
        self.save_state()
        if self.dist.is_main:
            with self._writing(PLOT):
                metrics_log.plot_metrics(metrics_path, self.run_dir / PLOT,
                                         title=self.run_dir.name)
        if reason == "interrupted":
            reason = f"interrupted by {self.stops.reason}"
        return TrainResult(st.step, st.tokens, st.elapsed, st.best, reason)

    def _agree_across_ranks(self, tokens: int, step_loss: torch.Tensor, ok: bool, clock: float
                            ) -> tuple[int, torch.Tensor]:
        """Under torchrun: a stop asked on any rank stops all of them at the same step; tokens
        and the reported loss become global; the clock becomes rank 0's."""
        agreed = distributed.agree_on_step(
            self.dist, stop_requested=bool(self.stops.reason), tokens=tokens,
            loss=float(step_loss) if ok else 0.0, clock=clock)
        if agreed.stop and not self.stops.reason:
            self.stops.reason = "a signal on another rank"
        self._stop_agreed = agreed.stop
        self.state.elapsed = agreed.clock
        return agreed.tokens, torch.full((), agreed.loss, device=self.device)

    def _step(self, loss: torch.Tensor) -> bool:
        """Backward pass and optimizer step; a non-finite loss or gradient skips the step."""
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(
            self.module.parameters(), self.config.grad_clip or float("inf")
        )
        ok = True
        if self.dist.enabled:
            # Gradients are already averaged over the ranks, so every rank sees the same norm
            # and makes the same choice (a NaN loss on one rank makes the average NaN).
            ok = bool(torch.isfinite(norm))
        elif self._checks_each_step:
            # A host check costs nothing on the CPU; on a GPU the scaler or AdamW's own
            # handling avoids a device sync per step, and the reported loss is checked instead.
            ok = bool(torch.isfinite(norm)) and bool(torch.isfinite(loss.detach()))
        if ok:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._bad_in_a_row = 0
        else:
            self.state.skipped_steps += 1
            self._bad_in_a_row += 1
            if self.dist.is_main:
                log.warning("non-finite loss or gradient at step %d: step skipped (%d in a row, "
                            "%d in all)", self.state.step, self._bad_in_a_row,
                            self.state.skipped_steps)
            self.task.after_skipped_step()
            if self._bad_in_a_row >= MAX_BAD_STEPS:
                self.optimizer.zero_grad(set_to_none=True)
                raise self._diverged(f"{MAX_BAD_STEPS} steps in a row had a non-finite loss "
                                     "or gradient")
        self.optimizer.zero_grad(set_to_none=True)
        return ok

    def _diverged(self, what: str) -> WeftError:
        return diverged(what, self.run_dir, self._saved_step)

    def _evaluate(
        self, display: ProgressDisplay, train_loss: float, lr: float, metrics_path: Path
    ) -> None:
        """Validate on rank 0 (the others wait), then save the state on every rank."""
        st = self.state
        if self.dist.is_main:
            wrapper = self.task.model
            self.task.model = self.module  # evaluation needs no gradient averaging
            try:
                self._evaluate_here(display, train_loss, lr, metrics_path)
            finally:
                self.task.model = wrapper
        if self.dist.enabled:
            st.best, st.bad_evaluations = distributed.broadcast((st.best, st.bad_evaluations))
        self._on_plateau(display)
        self.save_state()

    def _on_plateau(self, display: ProgressDisplay) -> None:
        """Every ``plateau_patience`` evaluations without improvement (short of early stopping),
        go back to the best weights and cut the learning rate. A short run on a small corpus
        peaks early and overfits while the cosine still holds the rate high; the best weights,
        trained on at a lower rate, improve again (docs/benchmarks.md)."""
        cfg, st = self.config, self.state
        if self.restore_best is None or not stopping.plateau_due(cfg, st):
            return
        if self.dist.is_main:
            self.restore_best()
        if self.dist.enabled:
            distributed.broadcast_module(self.module)
        st.lr_scale *= cfg.plateau_factor
        display.note(f"step {st.step}: no improvement in {st.bad_evaluations} evaluations: "
                     f"back to the best weights, learning rate x{st.lr_scale:.3g}")

    def _evaluate_here(
        self, display: ProgressDisplay, train_loss: float, lr: float, metrics_path: Path
    ) -> None:
        st = self.state
        self.module.eval()
        with torch.no_grad(), autocast(self.device, self.precision):
            results = self.task.evaluate()
            sample = self.task.sample()
        self.module.train()
        value = results.get(self.selection.metric)
        improved = value is not None and self.selection.better(value, st.best)
        if improved:
            st.best = value
            st.bad_evaluations = 0
            with self._writing("the best model"):
                self.save_best()
        else:
            st.bad_evaluations += 1
        record = {"step": st.step, "epoch": st.epoch, "tokens": st.tokens,
                  "elapsed": round(st.elapsed, 3), "lr": lr,
                  "train_loss": None if math.isnan(train_loss) else train_loss, **results}
        with self._writing(METRICS):
            metrics_log.append_metrics(metrics_path, record)
        display.evaluation(st.step, results, improved, sample)

    # ------------------------------------------------------------------ limits
    def _limit_reached(self, steps_per_epoch: int) -> str:
        return stopping.limit_reached(self.config, self.state, steps_per_epoch)

    def _total_steps(self, steps_per_epoch: int, tokens_per_s: float) -> int | None:
        st = self.state
        return estimate_total_steps(self.config, st.step, st.tokens, st.elapsed,
                                    steps_per_epoch, tokens_per_s)
