"""Shared helpers for the benchmarks: where the data is, what machine this is, JSON output."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """``$WEFT_DATA``, else the shared data folder beside the repository."""
    return Path(os.environ.get("WEFT_DATA", REPO.parent / "shared" / "data"))


def data_file(relative: str) -> Path:
    path = data_dir() / relative
    if not path.exists():
        raise SystemExit(f"benchmark data not found: {path} (set WEFT_DATA to the data folder)")
    return path


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "date": dt.date.today().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1m_at_start": load,
        "commit": _git_commit(),
    }


def _git_commit() -> str | None:
    """The commit measured, with ``+changes`` when tracked files differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=REPO,
                                 capture_output=True).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+changes" if changed else "")


def write_result(name: str, result: dict[str, Any], *, quiet: bool = False) -> Path:
    out = REPO / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if not quiet:
        print(json.dumps(result, indent=2))
    return out


_ARM_NAME = re.compile(r"[A-Za-z0-9_.+-]+")  # also a folder name under runs/


def parse_arm(spec: str) -> tuple[str, dict[str, Any]]:
    """One ``--arm NAME=JSON`` (a benchmark's arm: a name and its settings), or a one-line
    error."""
    name, sep, text = spec.partition("=")
    if not sep or not _ARM_NAME.fullmatch(name):
        raise SystemExit(f"--arm {spec!r}: give NAME=JSON, NAME of letters, digits, _.+-")
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--arm {name}: not JSON ({err})") from None
    if not isinstance(settings, dict):
        raise SystemExit(f"--arm {name}: the JSON must be an object of settings")
    return name, settings


def parse_value(text: str) -> Any:
    """A ``--set FIELD=VALUE`` value as int, float, bool or string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def matmul_peak(dtype: torch.dtype, size: int = 1024, seconds: float = 2.0,
                windows: int = 5) -> float:
    """Sustained GFLOP/s (GOP/s for int8) of square matrix products."""
    if dtype == torch.int8:
        a = torch.randint(-127, 128, (size, size), dtype=torch.int8)
        b = torch.randint(-127, 128, (size, size), dtype=torch.int8)

        def product() -> Any:
            return torch._int_mm(a, b)
    else:
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)

        def product() -> Any:
            return a @ b
    product()
    # The best of several short windows: on a shared machine one long average mostly measures
    # the neighbours.
    best = 0.0
    for _ in range(windows):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / windows:
            product()
            count += 1
        best = max(best, 2 * size**3 * count / (time.perf_counter() - start) / 1e9)
    return best
