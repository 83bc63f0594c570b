"""The run directory: every file a run holds, how its settings are read, and what binds a resume.

Every name in a run directory is defined here and only here (the files inside ``copy-index/``
are the index's own: data/corpus_index.py). A language-model run holds::

    config.json         every resolved setting (RunConfig), plus the corpus fingerprint
    tokenizer.json      the tokenizer
    model.safetensors   weights of the best model by validation loss (SHA-256 in its metadata;
                        float32, or bf16 in an exported model: store_weights)
    last.safetensors    last state for resuming: weights, optimizer, step, RNG, data position
    last.prev.safetensors   the state saved before it, used if the last one is damaged
    metrics.jsonl       one JSON record per evaluation
    loss.png            training and validation loss against steps
    generation.json     generation defaults
    labels.json         label columns with their values and counts (runs with --label-column)
    copy-index/         the training text and its suffix array, for the copy meter
    tokens.npy          the corpus as token ids (runs trained with --memmap)

A tagger run (``"kind": "tagger"`` in ``config.json``) holds ``config.json`` (model sizes,
reading and training settings), ``vocab.json`` (words, characters, tags), the same weights,
states, metrics and plot files, and no tokenizer.

A resumed run, of either kind, may change only its stopping limits, its timed saves and where
it runs (:data:`RESUME_OVERRIDABLE`), and must see the same training data: a fingerprint of it
is saved in ``config.json`` when the run starts (:func:`check_same_data`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weft.config import GenerationConfig, RunConfig, TrainConfig, parse_durations
from weft.errors import WeftError
from weft.io import SHA256_KEY, atomic_write_json, load_tensors, read_json, save_tensors
from weft.typed_settings import from_saved

if TYPE_CHECKING:
    import torch

log = logging.getLogger("weft")

# What a run directory holds (its "kind" in config.json; runs without one are language models).
LANGUAGE_MODEL = "language-model"
TAGGER = "tagger"

# Files of every run.
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
LAST_STATE = "last.safetensors"
PREVIOUS_STATE = "last.prev.safetensors"
LEGACY_STATE = "last.pt"  # the pickled state of early versions: never loaded
METRICS = "metrics.jsonl"
PLOT = "loss.png"
LOCK = ".weft.lock"  # held by the one process training in the directory
# Files of a language-model run.
TOKENIZER = "tokenizer.json"
GENERATION = "generation.json"
LABELS = "labels.json"
COPY_INDEX = "copy-index"
TOKENS = "tokens.npy"
# Files of a tagger run.
VOCAB = "vocab.json"

# How a weights file may store its floating tensors (store_weights); loading reads either as
# float32. bf16 is for shipped models, whose every version stays in git history.
WEIGHT_STORAGE = ("float32", "bf16")

# The config.json entry holding the digest of the data a run was trained on.
FINGERPRINT = "corpus_fingerprint"
_TAGGER_FINGERPRINT_BEFORE = "data_fingerprint"  # where tagger runs kept it at first

# The settings a resumed run may change: when to stop, when to save, where to run.
RESUME_OVERRIDABLE = frozenset({"epochs", "max_steps", "time_budget", "patience", "eval_every",
                                "checkpoint_every", "device", "threads"})


# ---------------------------------------------------------------------------- settings
def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The raw contents of a run's ``config.json``, refusing what is not a run directory."""
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise WeftError(f"{run_dir} is not a run directory")
    if not path.exists():
        raise WeftError(f"{run_dir} has no {CONFIG}: is it a weft run directory?")
    data = read_json(path)
    if not isinstance(data, dict):
        raise WeftError(f"{path} is damaged: it does not hold a settings object")
    return data


def run_kind(raw: Mapping[str, Any]) -> str:
    """What a run directory holds, from its raw ``config.json``."""
    return str(raw.get("kind", LANGUAGE_MODEL))


def run_config(raw: dict[str, Any], run_dir: str | Path) -> RunConfig:
    """The typed settings of a language-model run; wrong types are reported as damage."""
    try:
        return RunConfig.from_dict(raw)
    except (AttributeError, TypeError, ValueError) as exc:
        raise WeftError(f"{Path(run_dir) / CONFIG} is damaged or from an incompatible version "
                        f"({exc})") from None


def read_generation_defaults(run_dir: str | Path) -> GenerationConfig:
    """A language-model run's generation defaults (weft's own when it has none)."""
    path = Path(run_dir) / GENERATION
    return from_saved(GenerationConfig, read_json(path), path) if path.exists() \
        else GenerationConfig()


def save_generation_defaults(run_dir: str | Path, config: GenerationConfig) -> None:
    atomic_write_json(Path(run_dir) / GENERATION, dataclasses.asdict(config))


# ---------------------------------------------------------------------------- weights
def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if getattr(getattr(model, "config", None), "tie_weights", False):
        tensors.pop("head.weight", None)  # stored once, as embedding.weight
    save_tensors(path, tensors, metadata={"format": "pt"})


def load_weight_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A weights file's tensors, checked against its SHA-256 (a damaged file raises
    DamagedFileError, a WeftError), with any bf16- or float16-stored tensor as float32.

    Storage is not computation: a model always holds float32 weights, and whether it computes
    in bf16 is its precision setting's business (device.run_precision).
    """
    import torch

    tensors, _ = load_tensors(path)
    return {key: value.to(torch.float32) if value.dtype in (torch.bfloat16, torch.float16)
            else value for key, value in tensors.items()}


def store_weights(source: str | Path, target: str | Path, storage: str) -> None:
    """Write the weights file ``source`` to ``target`` with its floating tensors stored as
    ``storage`` (one of :data:`WEIGHT_STORAGE`), with a fresh checksum; ``target`` may be
    ``source``. bf16 halves the file by rounding each weight to 8 significant bits; what that
    costs a model is measured in docs/base-model.md ("Stored in bf16")."""
    import torch

    if storage not in WEIGHT_STORAGE:
        raise WeftError(f"weights are stored as one of: {', '.join(WEIGHT_STORAGE)}, "
                        f"not {storage!r}")
    dtype = torch.bfloat16 if storage == "bf16" else torch.float32
    tensors, metadata = load_tensors(source)
    metadata.pop(SHA256_KEY, None)  # save_tensors writes the new file's own
    stored = {key: value.to(dtype) if value.is_floating_point() else value
              for key, value in tensors.items()}
    save_tensors(target, stored, metadata)


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    tensors = load_weight_tensors(path)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = getattr(getattr(model, "config", None), "tie_weights", False)
    if unexpected or [k for k in missing if not (tied and k == "head.weight")]:
        raise WeftError(f"{path} does not match the model in config.json "
                        f"(missing {missing}, unexpected {unexpected})")


def trained_weights(run_dir: Path) -> Path:
    """The run's best weights, refusing a run that has saved none yet."""
    weights = run_dir / WEIGHTS
    if not weights.exists():
        raise WeftError(f"{run_dir} has no {WEIGHTS} yet: train it first")
    return weights


# ---------------------------------------------------------------------------- resuming
def check_resume_changes(changes: Iterable[str]) -> None:
    """Refuse, naming the flags, a resume that would change a setting the run is bound to."""
    bad = set(changes) - RESUME_OVERRIDABLE
    if bad:
        raise WeftError(f"--resume keeps the run's settings; these cannot change: "
                        f"{', '.join(sorted('--' + b.replace('_', '-') for b in bad))}")


def resumed_train_config(run_dir: str | Path, changes: Mapping[str, Any]) -> TrainConfig:
    """The run's saved training settings with the given ``changes`` (None: unchanged), which
    may only be what :data:`RESUME_OVERRIDABLE` allows. Durations may be text (``10m``)."""
    given = {k: v for k, v in parse_durations(dict(changes)).items() if v is not None}
    check_resume_changes(given)
    path = Path(run_dir) / CONFIG
    saved = from_saved(TrainConfig, read_run_config(run_dir).get("train", {}), path)
    config = dataclasses.replace(saved, **given)
    config.validate()
    return config


def fingerprint(text: str) -> str:
    """A short digest of the training data, saved to check that a resume sees the same."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]


def check_same_data(saved: Mapping[str, Any], current: str, what: str = "corpus") -> None:
    """Refuse to resume on other data than the run started with; ``saved`` is config.json."""
    recorded = saved.get(FINGERPRINT, saved.get(_TAGGER_FINGERPRINT_BEFORE))
    if recorded is None:
        log.warning("this run was saved without a fingerprint of its %s: its data cannot be "
                    "checked to be the same", what)
    elif recorded != current:
        raise WeftError(f"the {what} has changed since this run started; resume needs the "
                        "same data (or start a new run)")
