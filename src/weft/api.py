"""The front door: train, resume and load language models and taggers.

``weft.train``, ``weft.resume`` and ``weft.load`` are here, with the tagger's
:func:`train_tagger` and :func:`resume_tagger`; the CLI calls the same functions. Keyword
arguments are the configuration field names (the CLI flags without dashes), e.g.
``weft.train("input.txt", out="runs/shakespeare", cell="gru", time_budget="2m")``. What a run
directory holds, and what a resume may change, is runs.py's; the training itself is
training/'s (language models) and tagging/'s (taggers).
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weft.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    parse_durations,
    with_level_defaults,
)
from weft.errors import WeftError
from weft.runs import (
    LANGUAGE_MODEL,
    TAGGER,
    read_run_config,
    resumed_train_config,
    run_config,
    run_kind,
)
from weft.typed_settings import from_fields

if TYPE_CHECKING:
    from weft.language_model import LanguageModel
    from weft.tagging.api import Tagger
    from weft.training.trainer import TrainResult

__all__ = ["build_run_config", "load", "resume", "resume_tagger", "run_tagger_training",
           "run_training", "train", "train_tagger"]

PathLike = str | os.PathLike[str]

_LM_SECTIONS: dict[str, type[Any]] = {"model": ModelConfig, "data": DataConfig,
                                       "train": TrainConfig}


def _split_options(options: Mapping[str, Any], sections: Mapping[str, type[Any]]
                   ) -> dict[str, dict[str, Any]]:
    """Options (None: not given) sorted into the config sections whose fields they name."""
    split: dict[str, dict[str, Any]] = {name: {} for name in sections}
    fields = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in sections.items()}
    for key, value in parse_durations(dict(options)).items():
        if value is None:
            continue
        owner = next((name for name, names in fields.items() if key in names), None)
        if owner is None:
            raise WeftError(f"unknown training option {key!r}")
        split[owner][key] = value
    return split


# ---------------------------------------------------------------------------- loading
def load(run_dir: PathLike, device: str = "auto") -> Any:
    """Load any weft run directory, or a built-in model (``builtin:english``), dispatching on
    its ``kind``: a :class:`~weft.language_model.LanguageModel` or a
    :class:`~weft.tagging.api.Tagger`."""
    from weft.builtin import resolve_run

    path = resolve_run(run_dir)
    kind = run_kind(read_run_config(path))
    if kind == LANGUAGE_MODEL:
        from weft.language_model import LanguageModel

        return LanguageModel(path, device=device)
    if kind == TAGGER:
        from weft.tagging.api import load_tagger

        return load_tagger(path, device=device)
    raise WeftError(f"{run_dir} holds a run of unknown kind {kind!r}")


def load_language_model(run_dir: PathLike, device: str = "auto") -> LanguageModel:
    """:func:`load` for what only a language model does (generate, eval, chat): a tagger
    run is a one-line error naming the commands that take it."""
    from weft.language_model import LanguageModel

    model = load(run_dir, device=device)
    if not isinstance(model, LanguageModel):
        raise WeftError(f"{run_dir} is a tagger run, not a language model: tag with it using "
                        "weft tag predict or weft tag eval")
    return model


# ---------------------------------------------------------------------------- language models
def build_run_config(corpus: Sequence[PathLike], **options: Any) -> RunConfig:
    """A new run's settings: ``options`` (None: not given) over the defaults of their level."""
    sections = _split_options(with_level_defaults(options), _LM_SECTIONS)
    return RunConfig(
        model=from_fields(ModelConfig, sections["model"]),
        data=from_fields(DataConfig, sections["data"]),
        train=from_fields(TrainConfig, sections["train"]),
        corpus=tuple(_absolute(c) for c in corpus),
    )


def _absolute(source: PathLike) -> str:
    """A corpus source as config.json keeps it: a path from the root (globs too), so that
    ``--resume`` finds it from any folder; ``builtin:`` names as given."""
    from weft.data.corpus import BUILTIN_PREFIX

    name = str(source)
    return name if name.startswith(BUILTIN_PREFIX) else os.path.abspath(name)


def train(
    corpus: PathLike | Sequence[PathLike],
    out: PathLike,
    *,
    init_from: PathLike | None = None,
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


def resume(run_dir: PathLike, *, quiet: bool = False, **options: Any) -> LanguageModel | None:
    """Continue a run from its last saved state; only stopping limits may change."""
    model, _ = run_training(None, run_dir, quiet=quiet, **options)
    return model


def run_training(
    corpus: Sequence[PathLike] | None,
    out: PathLike,
    *,
    init_from: PathLike | None = None,
    quiet: bool = False,
    **options: Any,
) -> tuple[LanguageModel | None, TrainResult]:
    """Train (``corpus`` given) or resume (``corpus`` None) and say why training stopped.

    ``options`` are the settings the caller chose; with ``init_from`` the rest come from the
    base model and the fine-tuning defaults, on resume from the run.
    """
    from weft.training.fit_language_model import fit_language_model

    if corpus is not None:
        if init_from is None:
            return fit_language_model(build_run_config(corpus, **options), Path(out),
                                        quiet=quiet)
        from weft.training.init_from import load_base, settings_from_base

        base = load_base(init_from)
        config = build_run_config(corpus, **settings_from_base(base, options))
        return fit_language_model(config, Path(out), quiet=quiet, base=base)
    if init_from is not None:
        raise WeftError("--init-from starts a new run; --resume continues one: use one of them")
    run_dir = Path(out)
    if run_kind(read_run_config(run_dir)) == TAGGER:
        raise WeftError(f"{run_dir} is a tagger run: continue it with weft tag train --resume "
                        f"{run_dir}")
    changed = resumed_train_config(run_dir, options)
    config = dataclasses.replace(run_config(read_run_config(run_dir), run_dir), train=changed)
    for source in config.corpus:
        if source != _absolute(source) and not glob.glob(source):
            raise WeftError(f"corpus file not found: {source}: this run (made by an older weft) "
                            "recorded it relative to the folder it was started in; resume "
                            "from that folder")
    return fit_language_model(config, run_dir, resume=True, quiet=quiet)


# ---------------------------------------------------------------------------- taggers
def train_tagger(train: PathLike, out: PathLike, *, dev: PathLike | None = None,
                 quiet: bool = False, **options: Any) -> Tagger:
    """Train a part-of-speech tagger on the tagged file ``train`` into ``out``, selecting the
    model on ``dev`` (else on the last ``dev_fraction`` of ``train``).

    ``options`` are the ``weft tag train`` flags without dashes (``hidden=64``, ``crf=True``,
    ``time_budget="5m"``...), with the tagger's training defaults for the rest.
    """
    from weft.tagging.api import load_tagger

    run_tagger_training(train, out, dev=dev, quiet=quiet, **options)
    return load_tagger(Path(out))


def resume_tagger(run_dir: PathLike, *, quiet: bool = False, **options: Any) -> Tagger:
    """Continue a tagger run from its last saved state; only stopping limits may change (the
    same policy as a language model's)."""
    from weft.tagging.api import load_tagger

    run_tagger_training(None, run_dir, quiet=quiet, **options)
    return load_tagger(Path(run_dir))


def run_tagger_training(
    train: PathLike | None,
    out: PathLike,
    *,
    dev: PathLike | None = None,
    quiet: bool = False,
    **options: Any,
) -> TrainResult:
    """Train a tagger (``train`` given) or resume one (``train`` None); say why it stopped."""
    from weft.tagging.model import TaggerModelConfig
    from weft.tagging.train import (
        TaggerDataConfig,
        fit_tagger,
        same_char_lms,
        tagger_train_config,
    )

    run_dir = Path(out)
    if train is None:
        # The dev file is the run's too: a new one is refused like any other data setting.
        changes = options if dev is None else {**options, "dev": dev}
        changes = same_char_lms(run_dir, changes)
        return fit_tagger(run_dir, train=resumed_train_config(run_dir, changes), quiet=quiet,
                          resume=True)

    sections = _split_options(options, {"data": TaggerDataConfig, "model": TaggerModelConfig,
                                        "train": TrainConfig})
    # Kept whole in config.json, so that the run resumes and evaluates from any folder.
    files = {"train": os.path.abspath(train), "dev": None if dev is None else os.path.abspath(dev)}
    if sections["data"].get("tagset_map"):
        sections["data"]["tagset_map"] = os.path.abspath(sections["data"]["tagset_map"])
    data = from_fields(TaggerDataConfig, sections["data"] | files)
    model = from_fields(TaggerModelConfig, sections["model"])
    return fit_tagger(run_dir, data, model, tagger_train_config(**sections["train"]),
                      quiet=quiet)
