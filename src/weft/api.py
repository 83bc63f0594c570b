"""The Python API: ``weft.train(...)`` and ``weft.load(run_dir)``.

Keyword arguments are the configuration field names (the CLI flags without dashes), e.g.
``weft.train("input.txt", out="runs/shakespeare", cell="gru", time_budget="2m")``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weft.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    from_fields,
    parse_durations,
)
from weft.errors import WeftError
from weft.runs import LanguageModel, load, read_run_config, run_config
from weft.training.safeguards import check_resume_changes

if TYPE_CHECKING:
    from weft.training.trainer import TrainResult

__all__ = ["build_run_config", "load", "resume", "run_training", "train"]

_SECTIONS: dict[str, type[Any]] = {"model": ModelConfig, "data": DataConfig,
                                    "train": TrainConfig}


def _split_options(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    fields = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in _SECTIONS.items()}
    for key, value in parse_durations(options).items():
        if value is None:
            continue
        owner = next((name for name, names in fields.items() if key in names), None)
        if owner is None:
            raise WeftError(f"unknown training option {key!r}")
        sections[owner][key] = value
    return sections


def build_run_config(corpus: Sequence[str | os.PathLike[str]], **options: Any) -> RunConfig:
    sections = _split_options(options)
    return RunConfig(
        model=from_fields(ModelConfig, sections["model"]),
        data=from_fields(DataConfig, sections["data"]),
        train=from_fields(TrainConfig, sections["train"]),
        corpus=tuple(str(c) for c in corpus),
    )


def train(
    corpus: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    init_from: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    **options: Any,
) -> LanguageModel | None:
    """Train a language model on ``corpus`` into the run directory ``out``.

    ``init_from`` (a run directory or ``"builtin:english"``) starts from that model's weights
    and tokenizer instead of from scratch. Returns the trained model; None on ranks other than
    0 under ``torchrun``.
    """
    sources = [corpus] if isinstance(corpus, (str, os.PathLike)) else list(corpus)
    model, _ = run_training(sources, out, init_from=init_from, quiet=quiet, **options)
    return model


def resume(run_dir: str | os.PathLike[str], *, quiet: bool = False,
           **options: Any) -> LanguageModel | None:
    """Continue a run from its last saved state; only stopping limits may change."""
    model, _ = run_training(None, run_dir, quiet=quiet, **options)
    return model


def run_training(
    corpus: Sequence[str | os.PathLike[str]] | None,
    out: str | os.PathLike[str],
    *,
    init_from: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    **options: Any,
) -> tuple[LanguageModel | None, TrainResult]:
    """Train (``corpus`` given) or resume (``corpus`` None) and say why training stopped.

    ``options`` are the settings the caller chose; with ``init_from`` the rest come from the
    base model and the fine-tuning defaults.
    """
    from weft.training.lm import train_language_model

    if corpus is not None:
        if init_from is None:
            return train_language_model(build_run_config(corpus, **options), Path(out),
                                        quiet=quiet)
        from weft.training.init_from import load_base, settings_from_base

        base = load_base(init_from)
        config = build_run_config(corpus, **settings_from_base(base, options))
        return train_language_model(config, Path(out), quiet=quiet, base=base)
    if init_from is not None:
        raise WeftError("--init-from starts a new run; --resume continues one: use one of them")
    check_resume_changes(k for k, v in options.items() if v is not None)
    saved = run_config(read_run_config(Path(out)), Path(out))
    changes = _split_options(options)["train"]
    config = dataclasses.replace(saved, train=dataclasses.replace(saved.train, **changes))
    return train_language_model(config, Path(out), resume=True, quiet=quiet)
