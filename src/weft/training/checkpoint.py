"""The resume state on disk: safetensors for the tensors, JSON for everything else.

A training state (model, optimizer, trainer counters, task state, random state) is a nested
structure of dicts, lists, tuples, numbers, strings and tensors. It is stored as one safetensors
file: the tensors as tensors, the structure as JSON in the file's metadata with each tensor
replaced by ``{"$tensor": key}``. Nothing is pickled, so loading a downloaded run directory can
never execute code (``torch.load`` unpickles, and even ``weights_only=True`` has had escapes).

Two generations are kept: ``last.safetensors`` and ``last.prev.safetensors``. Each save moves
the newest to the previous name, then writes the new one atomically (temporary name, fsync,
rename). A crash at any moment therefore leaves at least one complete state, and a state that
is truncated or corrupted later is detected by the SHA-256 in its metadata and skipped in favour
of the previous one.

Also here: the trainer's counters (:class:`TrainerState`), each rank's share of the state
(its task state and every random generator: torch, CUDA, NumPy, Python), and restoring an
optimizer's state on another device: what a resumed run needs to draw and step exactly as an
uninterrupted one, or as near as it can with another number of ranks.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weft.errors import WeftError
from weft.io import DamagedFileError, load_tensors, save_tensors
from weft.runs import LAST_STATE, LEGACY_STATE, PREVIOUS_STATE
from weft.training import distributed
from weft.training.distributed import Distributed
from weft.training.task import TrainingTask

log = logging.getLogger("weft")

DAMAGED_SUFFIX = ".damaged"  # a damaged state is set aside under its name + this
FORMAT = "weft-training-state/1"


@dataclass
class TrainerState:
    """Where training stands; saved in ``last.safetensors`` so that a run resumes exactly."""

    step: int = 0
    epoch: int = 0
    index: int = 0  # next batch within the epoch
    elapsed: float = 0.0  # seconds of training over all sessions
    tokens: int = 0
    best: float | None = None
    bad_evaluations: int = 0
    lr_scale: float = 1.0  # product of the plateau cuts so far (TrainConfig.plateau_factor)
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient, over the run
    loss_sum: float = 0.0  # training losses since the last report, so resumed reports match
    loss_count: int = 0
    finished: str = ""  # why the run stopped, when it stopped by a limit

    @classmethod
    def from_saved(cls, counters: dict[str, Any]) -> TrainerState:
        """The counters of a saved state (those of other versions left out)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in counters.items() if k in known})


def flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able copy of ``obj`` with its tensors moved into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        # A copy: tied weights share storage (safetensors refuses that), and the saved state
        # must not change if training continues while it is written.
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"$tensor": key}
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, float, str)):
        return obj
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: flatten(v, tensors) for k, v in obj.items()}
        # Non-string keys (the optimizer's parameter ids): a list of pairs keeps their type.
        return {"$items": [[flatten(k, tensors), flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, list):
        return [flatten(v, tensors) for v in obj]
    if isinstance(obj, tuple):
        return {"$tuple": [flatten(v, tensors) for v in obj]}
    raise TypeError(f"cannot store a {type(obj).__name__} in a training state")


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`flatten`."""
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "$tensor" in obj:
        return tensors[obj["$tensor"]]
    if "$tuple" in obj:
        return tuple(unflatten(v, tensors) for v in obj["$tuple"])
    if "$items" in obj:
        return {unflatten(k, tensors): unflatten(v, tensors) for k, v in obj["$items"]}
    return {k: unflatten(v, tensors) for k, v in obj.items()}


def save_state_file(path: str | Path, state: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    structure = flatten(state, tensors)
    save_tensors(path, tensors, {"format": FORMAT, "state": json.dumps(structure)})


def pack_training_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler, trainer: dict[str, Any],
                        ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """The state a run resumes from: weights, optimizer, the trainer's counters, and per rank
    its share of the task state and its random state."""
    payload = {"model": module.state_dict(), "optimizer": optimizer.state_dict(),
               "trainer": trainer, "ranks": ranks}
    if scaler.is_enabled():  # fp16: the loss scale it has learned
        payload["scaler"] = scaler.state_dict()
    return payload


def unpack_training_state(
    payload: dict[str, Any], module: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, run_dir: str | Path,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Load a :func:`pack_training_state` into the model, optimizer and scaler; returns the
    trainer's counters and the per-rank entries."""
    try:
        module.load_state_dict(payload["model"])
        restore_optimizer(optimizer, payload["optimizer"])
        if scaler.is_enabled() and payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        return dict(payload["trainer"]), list(payload["ranks"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise WeftError(f"the saved training state in {run_dir} does not match this run "
                        f"({exc})") from None


def load_state_file(path: str | Path) -> dict[str, Any]:
    tensors, metadata = load_tensors(path)
    if metadata.get("format") != FORMAT or "state" not in metadata:
        raise DamagedFileError(f"{path} is not a weft training state "
                               f"(format {metadata.get('format')!r})")
    try:
        state = unflatten(json.loads(metadata["state"]), tensors)
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedFileError(f"{path} is damaged: its state description is invalid "
                               f"({exc})") from None
    if not isinstance(state, dict):
        raise DamagedFileError(f"{path} is damaged: its state is not a mapping")
    return state


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` as the newest checkpoint, keeping the one before as the previous."""
    run_dir = Path(run_dir)
    last = run_dir / LAST_STATE
    if last.exists():
        # Until the new file is renamed into place, the old one is complete under the
        # previous name: a crash in between leaves a state to resume from.
        os.replace(last, run_dir / PREVIOUS_STATE)
    save_state_file(last, state)


def check_resumable(run_dir: str | Path) -> None:
    """Fail early, and say why, when a run directory holds no state to resume from."""
    run_dir = Path(run_dir)
    if (run_dir / LAST_STATE).exists() or (run_dir / PREVIOUS_STATE).exists():
        return
    if (run_dir / LEGACY_STATE).exists():
        raise WeftError(
            f"{run_dir} has only {LEGACY_STATE}, a pickled state that weft does not load "
            "because unpickling a file can run code; start a new run (its model.safetensors "
            "still loads for generation)"
        )
    raise WeftError(f"{run_dir} has no {LAST_STATE} to resume from")


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The newest intact checkpoint; a damaged newest one is set aside with a warning."""
    run_dir = Path(run_dir)
    problems = []
    for name in (LAST_STATE, PREVIOUS_STATE):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = load_state_file(path)
        except DamagedFileError as exc:
            problems.append(str(exc))
            # Renamed so the next save does not rotate it over the good previous state.
            os.replace(path, path.with_name(path.name + DAMAGED_SUFFIX))
            log.warning("%s; set aside as %s%s", exc, name, DAMAGED_SUFFIX)
            continue
        if problems:
            log.warning("resuming from the previous saved state (%s), step %s", name,
                        state.get("trainer", {}).get("step", "?"))
        return state
    if problems:
        raise WeftError("no intact training state to resume from: " + "; ".join(problems))
    check_resumable(run_dir)
    raise AssertionError("unreachable: check_resumable raises")


# Optimizer options chosen for the device the trainer runs on, not for the one that saved.
DEVICE_OPTIONS = ("fused", "foreach", "capturable")


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load a saved optimizer state, keeping this device's kernel options: a state saved on
    CUDA (fused AdamW) continues on a CPU, and the reverse (a fused step is what takes
    GradScaler's arguments under fp16)."""
    chosen = [{k: group[k] for k in DEVICE_OPTIONS if k in group}
              for group in optimizer.param_groups]
    # Set before loading: they decide where each saved step count goes (a fused or
    # capturable AdamW keeps it on the parameters' device).
    groups = [{**group, **options}  # zip raises ValueError on another number of groups
              for group, options in zip(saved["param_groups"], chosen, strict=True)]
    optimizer.load_state_dict({**saved, "param_groups": groups})


def capture_rng_state() -> dict[str, Any]:
    """Every random generator a task might draw from, so that a resumed run draws the same."""
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng_state` saved (GPU draws only with as many GPUs)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning("the number of GPUs changed since the state was saved: GPU random "
                        "draws (dropout) differ from an uninterrupted run")
    if "numpy" in state:
        saved = state["numpy"]
        np.random.set_state(("MT19937", saved["keys"].numpy().astype(np.uint32),
                             saved["pos"], saved["has_gauss"], saved["gauss"]))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


def gather_rank_states(task: TrainingTask, dist: Distributed) -> list[dict[str, Any]]:
    """Every rank's task state and random state, in rank order (on every rank)."""
    mine = {"task": task.state_dict(), "rng": capture_rng_state()}
    return distributed.all_gather(mine) if dist.enabled else [mine]


def restore_rank_state(task: TrainingTask, ranks: list[dict[str, Any]], dist: Distributed,
                       seed: int, step: int) -> None:
    """Give this rank its saved task state and random state. A state saved by another number
    of ranks is resharded by the task, if it can: the same data order and steps follow, but
    dropout draws are reseeded, so they differ from an uninterrupted run's."""
    rank, world = dist.rank, dist.world_size
    if len(ranks) == world:
        task.load_state_dict(ranks[rank]["task"])
        restore_rng_state(ranks[rank]["rng"])
        return
    resharded = task.reshard_state([r["task"] for r in ranks], rank, world)
    if resharded is None:
        raise WeftError(f"this run was saved by {len(ranks)} processes and this task cannot "
                        f"change that; resume it with torchrun --nproc-per-node {len(ranks)}")
    task.load_state_dict(resharded)
    restore_rng_state(ranks[0]["rng"])
    torch.manual_seed(distributed.rank_seed(seed, rank) + step)
    if dist.is_main:
        log.warning("resuming with %d processes instead of %d: same data order and steps, but "
                    "dropout draws differ from an uninterrupted run", world, len(ranks))
