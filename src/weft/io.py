"""Atomic, checksummed file writes for run directories.

Every file in a run directory is written to a temporary name in the same folder, flushed to disk
and renamed over the target, so a crash never leaves a half-written file behind. Tensor files are
safetensors whose metadata carries a SHA-256 of their header and data, so truncation or
corruption is detected when they are read (and a safetensors file holds no code to execute).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from safetensors.torch import load as _load_safetensors
from safetensors.torch import save as _save_safetensors

from weft.errors import WeftError

SHA256_KEY = "sha256"


class DamagedFileError(WeftError, ValueError):
    """A file in a run directory is truncated, corrupted or not in the expected format.

    Also a ValueError, as json.load's errors were, for callers that catch those.
    """


class MissingFileError(WeftError, FileNotFoundError):
    """A file a run directory must hold is not there (an incomplete copy, a deleted file).

    Also a FileNotFoundError, as ``open``'s was, for callers that catch those.
    """


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write a file through ``write(fileobj)`` to a temporary name, fsync it, then rename it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp_name, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable across a power cut (a kill alone never loses it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    atomic_write(path, lambda handle: _write_all(handle, data))


def _write_all(handle: IO[bytes], data: bytes) -> None:
    handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file's value; a truncated or corrupted file is a :class:`DamagedFileError`, a
    missing one a :class:`MissingFileError`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise MissingFileError(f"{path} is missing: the run directory is incomplete (copy it "
                               "again whole, or train it again)") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise DamagedFileError(f"{path} is damaged or not JSON ({exc})") from None
    except RecursionError:
        raise DamagedFileError(f"{path} is nested too deeply to be a weft file") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a whole file (the provenance of fine-tuned weights, shipped models)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> None:
    """Write a safetensors file atomically, with the SHA-256 of its data in its metadata."""
    blob = _save_safetensors(tensors, metadata=dict(metadata or {}))
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    data = memoryview(blob)[8 + size :]
    header.setdefault("__metadata__", {})[SHA256_KEY] = _digest(header, data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # safetensors keeps the data 8-byte aligned

    def write(handle: IO[bytes]) -> None:
        handle.write(len(head).to_bytes(8, "little"))
        handle.write(head)
        handle.write(data)

    atomic_write(path, write)


def _digest(header: dict[str, Any], data: bytes | memoryview) -> str:
    """SHA-256 of the header (less the checksum itself, in a canonical form) and the data."""
    described = dict(header)
    described["__metadata__"] = {k: v for k, v in (header.get("__metadata__") or {}).items()
                                 if k != SHA256_KEY}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode("utf-8"))
    digest.update(data)
    return digest.hexdigest()


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, checked against its recorded SHA-256.

    Raises :class:`DamagedFileError` for a truncated, corrupted or foreign file. Files written
    without a checksum (by other tools) are still read; safetensors checks their sizes.
    """
    name = str(path)
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise DamagedFileError(f"cannot read {name} ({exc.strerror})") from None
    if len(blob) < 8:
        raise DamagedFileError(f"{name} is damaged: only {len(blob)} bytes (truncated?)")
    size = int.from_bytes(blob[:8], "little")
    if size > len(blob) - 8:
        raise DamagedFileError(f"{name} is damaged or not a safetensors file: its header claims "
                               f"{size:,} bytes but the file has {len(blob):,} (truncated?)")
    try:
        header = json.loads(blob[8 : 8 + size])
        metadata = header.get("__metadata__") or {}
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not a mapping")
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError) as exc:
        raise DamagedFileError(f"{name} is damaged or not a safetensors file ({exc})") from None
    expected = metadata.get(SHA256_KEY)
    if expected is not None and _digest(header, memoryview(blob)[8 + size :]) != expected:
        raise DamagedFileError(f"{name} is damaged: its data does not match the checksum "
                               "written with it (truncated or corrupted)")
    try:
        tensors = _load_safetensors(blob)
    except Exception as exc:  # safetensors raises its own error types
        raise DamagedFileError(f"{name} is damaged or not a safetensors file ({exc})") from None
    return tensors, {str(k): str(v) for k, v in metadata.items()}
