"""What the ``weft`` commands share: logging to stderr, and the training flags that
``weft train`` and ``weft tag train`` both take (declared once, each with its command's
defaults)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from weft.config import AUTO_EVAL_EVERY, LEVEL_DEFAULTS, PRECISIONS, TrainConfig


class _WarningFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def setup_logging(quiet: bool) -> None:
    """weft's log lines on stderr as ``level: message``; only errors when ``quiet``."""
    logger = logging.getLogger("weft")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_WarningFormatter())
        logger.addHandler(handler)
    logger.setLevel(logging.ERROR if quiet else logging.INFO)
    logger.propagate = False


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def level_default(field: str, value: Any) -> str | bool:
    """``show_default`` of a flag whose default depends on ``--level`` (config.LEVEL_DEFAULTS):
    the value, then each level's own where it differs; True (click's own) where none does."""
    others = [f"{level} level: {defaults[field]}" for level, defaults in LEVEL_DEFAULTS.items()
              if field in defaults and defaults[field] != value]
    return "; ".join([str(value), *others]) if others else True


def training_options(defaults: TrainConfig, *, batch_help: str, eval_help: str,
                     by_level: bool = False) -> Decorator:
    """The optimization, evaluation, stopping and placement flags of a training command.

    Their values reach the command as keyword arguments named like :class:`TrainConfig`'s
    fields; durations stay text (``config.parse_durations`` reads them). ``by_level``: the
    command's defaults depend on ``--level`` (language models), and the help says so.
    """
    def shown(field: str) -> str | bool:
        return level_default(field, getattr(defaults, field)) if by_level else True

    options = [
        click.option("--batch-size", type=int, default=defaults.batch_size,
                     show_default=shown("batch_size"), help=batch_help),
        click.option("--lr", type=float, default=defaults.lr, show_default=shown("lr"),
                     help="Peak learning rate (AdamW)."),
        click.option("--weight-decay", type=float, default=defaults.weight_decay,
                     show_default=True, help="AdamW weight decay."),
        click.option("--warmup-steps", type=int, default=defaults.warmup_steps,
                     show_default=True, help="Linear warm-up steps before the cosine decay."),
        click.option("--min-lr-ratio", type=float, default=defaults.min_lr_ratio,
                     show_default=True,
                     help="The cosine decays to lr x this by the end of the run."),
        click.option("--grad-clip", type=float, default=defaults.grad_clip, show_default=True,
                     help="Maximum gradient norm; 0 disables clipping."),
        click.option("--eval-every", type=int, default=defaults.eval_every,
                     show_default=defaults.eval_every is not None,
                     help=eval_help if defaults.eval_every is not None else
                     f"{eval_help} [default: about twice per epoch, {AUTO_EVAL_EVERY[0]} to "
                     f"{AUTO_EVAL_EVERY[1]} steps]"),
        click.option("--checkpoint-every", default="10m", show_default=True,
                     help="Also save the resume state after this long without a save, so a "
                     "crash loses little work (e.g. 2m); 0 saves only at evaluations."),
        click.option("--patience", type=int, default=defaults.patience, show_default=True,
                     help="Evaluations without improvement before stopping; 0 disables."),
        click.option("--plateau-patience", type=int, default=defaults.plateau_patience,
                     show_default=True,
                     help="Evaluations without improvement before going back to the best "
                     "weights and cutting the learning rate; 0 disables."),
        click.option("--plateau-factor", type=float, default=defaults.plateau_factor,
                     show_default=True,
                     help="What each plateau multiplies the learning rate by."),
        click.option("--epochs", type=float, help="Stop after this many passes [default: 10 "
                     "when no limit is given]."),
        click.option("--max-steps", type=int, help="Stop after this many optimizer steps."),
        click.option("--time-budget", help="Stop after this much time, e.g. 90s, 10m, 1h."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=defaults.precision,
                     show_default=True, help="auto: bf16 where the hardware supports it. fp16 "
                     "needs a CUDA GPU; bf16 on a CPU needs AVX512-BF16 or AMX (a run saved in "
                     "either resumes elsewhere in the device's own choice)."),
        click.option("--device", default=defaults.device, show_default=True,
                     help="auto, cpu, cuda, cuda:N or mps."),
        click.option("--threads", type=int, help="CPU threads [default: PyTorch's choice]."),
        click.option("--seed", type=int, default=defaults.seed, show_default=True,
                     help="Seeds the weights, batches and dropout. A CPU run stopped by "
                     "--epochs or --max-steps repeats exactly; under --time-budget the "
                     "learning-rate schedule and the stop follow the clock, so it does not."),
    ]

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def typed_on_command_line(options: dict[str, Any]) -> dict[str, Any]:
    """Only the options the user typed (a resume keeps the run's own for the rest)."""
    ctx = click.get_current_context()
    return {k: v for k, v in options.items()
            if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
