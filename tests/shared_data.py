"""Shared test helpers: where the optional shared data sets live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """``$WEFT_DATA``, or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("WEFT_DATA", REPO.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    path = data_dir() / relative
    if not path.is_file():
        pytest.skip(f"shared data file {relative} not available (set WEFT_DATA)")
    return path
