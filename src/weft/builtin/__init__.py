"""Models shipped inside the package, addressed as ``builtin:NAME`` wherever a run is accepted.

Each is an ordinary run directory (``config.json``, ``tokenizer.json``, ``model.safetensors``,
``generation.json``) under this folder, plus ``MANIFEST.json`` with the SHA-256 of every file,
checked before the model is used so that a damaged installation is reported, not trained on.
``tools/train_base_model.py`` reproduces them from public-domain books; docs/base-model.md says
how they were trained and how well they do.
"""

from __future__ import annotations

import os
from pathlib import Path

from weft.errors import WeftError
from weft.io import read_json, sha256_file

PREFIX = "builtin:"
MANIFEST = "MANIFEST.json"
_HERE = Path(__file__).resolve().parent


def builtin_names() -> list[str]:
    """The shipped models, as ``builtin:NAME``."""
    return sorted(PREFIX + p.name for p in _HERE.iterdir() if (p / MANIFEST).is_file())


def is_builtin(name: str | os.PathLike[str]) -> bool:
    return str(name).startswith(PREFIX)


def builtin_dir(name: str | os.PathLike[str]) -> Path:
    """The run directory of ``builtin:NAME``, after checking its files against the manifest."""
    key = str(name)[len(PREFIX):]
    folder = _HERE / key
    if not key or "/" in key or "\\" in key or key.startswith(".") or not (
            folder / MANIFEST).is_file():
        available = ", ".join(builtin_names()) or "none in this installation"
        raise WeftError(f"unknown built-in model {str(name)!r}; available: {available}")
    manifest = read_json(folder / MANIFEST)
    for file_name, expected in manifest.get("sha256", {}).items():
        path = folder / file_name
        if not path.is_file() or sha256_file(path) != expected:
            raise WeftError(f"the built-in model {name} is damaged ({file_name} does not match "
                            "its checksum); reinstall weft")
    return folder


def resolve_run(run: str | os.PathLike[str]) -> Path:
    """A run directory from what a user typed: a path, or ``builtin:NAME``."""
    return builtin_dir(run) if is_builtin(run) else Path(run)
