"""The dependency floors that pyproject.toml declares are true of the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import torch

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# What weft uses of PyTorch that older releases lack, and the release that added it.
TORCH_NEEDS = {
    "torch.amp.GradScaler": (2, 3),  # the trainer's fp16 loss scaling on CUDA
    "torch.from_numpy of uint16": (2, 3),  # compact id arrays of vocabularies up to 65,536
}


def _torch_floor() -> tuple[int, ...]:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    spec = next(d for d in dependencies if re.match(r"torch\b", d))
    floor = re.search(r">=\s*([\d.]+)", spec)
    assert floor, spec
    return tuple(int(part) for part in floor.group(1).split("."))


def test_torch_floor_covers_every_api_used() -> None:
    assert _torch_floor() >= max(TORCH_NEEDS.values())


def test_the_apis_named_exist_here() -> None:
    assert torch.amp.GradScaler("cuda", enabled=False) is not None
    ids = torch.from_numpy(np.array([1, 65535], dtype=np.uint16))
    assert ids.long().tolist() == [1, 65535]
