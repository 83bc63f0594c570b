"""Running weft in real subprocesses (as a user or a scheduler would) for the reliability tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from weft.training.metrics import read_metrics

SRC = Path(__file__).resolve().parent.parent / "src"


def env() -> dict[str, str]:
    """The environment for ``python -m weft``: this checkout's sources first on the path."""
    values = dict(os.environ)
    values["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), values.get("PYTHONPATH")]))
    return values


def weft(*args: str) -> list[str]:
    return [sys.executable, "-m", "weft", *args]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(weft(*args), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(weft(*args), env=env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return read_metrics(run_dir / "metrics.jsonl")


def losses(run_dir: Path) -> list[tuple[int, float, float]]:
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in metrics(run_dir)]


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str],
             timeout: float = 60.0) -> bool:
    """Poll ``condition`` until it holds; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.005)
    raise TimeoutError("condition not reached")
