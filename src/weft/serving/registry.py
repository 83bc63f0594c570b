"""Finding the runs under the served folders, describing them, and loading them on demand.

Several roots may be served together: folders of runs, run directories and built-in models
(``weft serve runs builtin:english``). Requests name a run by its path relative to the folder
of runs it is in (``shakespeare`` or ``exp/gru-2``); a served run directory is named by its
folder, a built-in model as weft names it (``builtin:english``). Two roots may not give two
runs one name: that is refused when serving starts (a run created later under a second name
is shadowed by the first root's). A name is only ever looked up in the table built by scanning
those folders, never joined onto a path, so a request cannot reach outside them (``..``,
absolute paths and symlinks leading out are not in the table). A run is ready when it has the
files its kind needs to be loaded (:data:`NEEDED`); one that is not is described with the
reason and never loaded. Loaded models are cached, least recently used dropped first, and
reloaded when their weights file changes (a run still training keeps improving).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from weft.builtin import builtin_dir, is_builtin
from weft.data.labels import load_labels
from weft.errors import WeftError
from weft.io import read_json
from weft.runs import (
    CONFIG,
    GENERATION,
    LANGUAGE_MODEL,
    METRICS,
    TAGGER,
    TOKENIZER,
    VOCAB,
    WEIGHTS,
    run_kind,
)
from weft.training.metrics import read_metrics

Loader = Callable[[Path, str], Any]
Root = str | os.PathLike[str]  # a folder of runs, a run directory, or builtin:NAME

# The files a run of each kind needs to be loaded (the weights come last: a new run lacks them
# longest). A run missing any is listed as not ready, and never loaded.
NEEDED = {LANGUAGE_MODEL: (CONFIG, TOKENIZER, WEIGHTS), TAGGER: (CONFIG, VOCAB, WEIGHTS)}


class UnknownRun(WeftError):
    """No run of that name under the served folder (answered with 404)."""


def _default_loader(path: Path, device: str) -> Any:
    from weft.api import load

    return load(path, device=device)


class RunRegistry:
    """The runs under each root: a folder of runs, one run directory, or a built-in model
    such as ``builtin:english``."""

    def __init__(self, roots: Root | Sequence[Root], *, device: str = "cpu",
                 max_loaded: int = 4, loader: Loader | None = None, max_depth: int = 4,
                 rescan_seconds: float = 2.0) -> None:
        given = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        if not given:
            raise WeftError("nothing to serve: give a folder of runs, a run directory or "
                            "builtin:english")
        # (folder, the name it has when it is one run: a request names a built-in model as
        # everything else in weft does, a run directory by its folder)
        self._roots: list[tuple[Path, str]] = []
        for root in given:
            folder = (builtin_dir(root) if is_builtin(root) else Path(root)).resolve()
            if not folder.is_dir():
                raise WeftError(f"{root} is not a folder: give a run directory or a folder "
                                "of runs")
            self._roots.append((folder, str(root) if is_builtin(root) else folder.name))
        self.device = device
        self.max_loaded = max(1, max_loaded)
        self.loader = loader or _default_loader
        self.max_depth = max_depth
        self.rescan_seconds = rescan_seconds
        self._runs: dict[str, Path] = {}
        self._scanned_at = -math.inf
        # name -> (weights file version, loaded model, run kind)
        # name -> (weights' mtime, model, run kind, the weights' path as a string: made once,
        # as building and formatting a Path on every request cost a tenth of the event loop)
        self._loaded: OrderedDict[str, tuple[int, Any, str, str]] = OrderedDict()
        # The loaded models, replaced whole on each load: read from the event loop unlocked.
        self._held: tuple[Any, ...] = ()
        self._lock = threading.Lock()
        if len(self._roots) > 1:
            self._scan(strict=True)

    # -- finding -------------------------------------------------------------------------
    def _scan(self, strict: bool = False) -> dict[str, Path]:
        """Every root's runs by name; ``strict``: a name given by two roots is an error (else
        the first root's run keeps it)."""
        found: dict[str, Path] = {}
        for root, single_name in self._roots:
            for name, path in self._scan_root(root, single_name).items():
                if name not in found:
                    found[name] = path
                elif strict and found[name] != path:
                    raise WeftError(f"two runs would be served as {name!r} ({found[name]} and "
                                    f"{path}): serve them separately, or rename one")
        return dict(sorted(found.items()))

    def _scan_root(self, root: Path, single_name: str) -> dict[str, Path]:
        if (root / CONFIG).is_file():
            return {single_name: root}
        found: dict[str, Path] = {}
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            here = Path(dirpath)
            depth = len(here.relative_to(root).parts)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                 and depth < self.max_depth)
            if CONFIG in filenames and here != root:
                dirnames[:] = []  # a run directory holds no runs
                if here.resolve().is_relative_to(root):  # a symlink must not lead out
                    found[here.relative_to(root).as_posix()] = here
            # Symlinked folders are not walked into; a symlinked run inside the root counts.
            for name in list(dirnames):
                link = here / name
                if link.is_symlink():
                    dirnames.remove(name)
                    target = link.resolve()
                    if target.is_relative_to(root) and (target / CONFIG).is_file():
                        found[link.relative_to(root).as_posix()] = target
        return found

    def runs(self) -> dict[str, Path]:
        """Name -> run directory; rescanned at most every ``rescan_seconds``."""
        now = time.monotonic()
        if now - self._scanned_at > self.rescan_seconds:
            self._runs = self._scan()
            self._scanned_at = now
        return self._runs

    def path(self, name: str) -> Path:
        path = self.runs().get(name)
        if path is None:
            path = self._scan().get(name)  # maybe created since the last scan
            self._scanned_at = -math.inf
        if path is None:
            raise UnknownRun(f"no run named {name!r} here; GET /api/models lists them")
        return path

    # -- describing ----------------------------------------------------------------------
    def config(self, name: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = read_json(self.path(name) / CONFIG)
        except (OSError, ValueError) as exc:
            raise WeftError(f"run {name!r} has an unreadable {CONFIG} ({exc})") from None
        return data

    def describe(self, name: str) -> dict[str, Any]:
        """What the playground shows about a run, without loading its weights."""
        path = self.path(name)
        config = self.config(name)
        generation: dict[str, Any] = {}
        if (path / GENERATION).is_file():
            try:
                generation = read_json(path / GENERATION)
            except (OSError, ValueError):
                generation = {}
        records = read_metrics(path / METRICS)
        not_ready = self.not_ready(name, run_kind(config))
        vals = [r["val_loss"] for r in records if _finite(r.get("val_loss"))]
        try:
            labels = load_labels(path).to_dict()["columns"]
        except WeftError:
            labels = []
        return {
            "name": name,
            "kind": run_kind(config),
            "ready": not_ready is None,
            "not_ready": not_ready,
            "loaded": name in self._loaded,
            "steps": records[-1].get("step") if records else None,
            "best_val_loss": min(vals) if vals else None,
            "generation": generation,
            "labels": labels,
            "config": config,
        }

    def not_ready(self, name: str, kind: str) -> str | None:
        """Why run ``name`` (of ``kind``) cannot be loaded yet, or None when it can: the files
        it needs that are missing."""
        path = self.path(name)
        missing = [file for file in NEEDED.get(kind, (CONFIG, WEIGHTS))
                   if not (path / file).is_file()]
        if missing == [WEIGHTS]:
            return f"no {WEIGHTS} yet: train it first"
        return f"missing {' and '.join(missing)}" if missing else None

    def metrics(self, name: str) -> list[dict[str, Any]]:
        return read_metrics(self.path(name) / METRICS)

    # -- loading -------------------------------------------------------------------------
    def loaded(self, name: str) -> tuple[Any, str] | None:
        """The model of ``name`` and its run kind when it is loaded and its weights have not
        changed since, else None. Cheap enough for the event loop (a lookup and one stat):
        the common request needs no worker thread and no read of ``config.json``."""
        entry = self._loaded.get(name)
        if entry is None or name not in self.runs():
            return None
        try:
            version = os.stat(entry[3]).st_mtime_ns
        except OSError:
            return None
        if version != entry[0]:
            return None
        if self._lock.acquire(blocking=False):  # never wait on a load in progress here
            try:
                if name in self._loaded:
                    self._loaded.move_to_end(name)
            finally:
                self._lock.release()
        return entry[1], entry[2]

    def get(self, name: str) -> Any:
        """The loaded model (language model or tagger) for ``name``; blocking: call in a thread."""
        path = self.path(name)
        weights = path / WEIGHTS
        kind = run_kind(self.config(name))
        missing = self.not_ready(name, kind)
        if missing is not None:
            raise WeftError(f"run {name!r} is not ready ({missing})")
        version = weights.stat().st_mtime_ns
        with self._lock:  # one load at a time: a second request for it waits and reuses it
            cached = self._loaded.get(name)
            if cached is not None and cached[0] == version:
                self._loaded.move_to_end(name)
                return cached[1]
            model = self.loader(path, self.device)
            self._loaded[name] = (version, model, kind, str(weights))
            self._loaded.move_to_end(name)
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
            self._held = tuple(entry[1] for entry in self._loaded.values())
            return model

    def holds(self, model: Any) -> bool:
        """Whether ``model`` is one of the loaded models (not replaced by newer weights, nor
        dropped for another model)."""
        return any(held is model for held in self._held)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
