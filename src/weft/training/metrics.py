"""The run's metrics log (``metrics.jsonl``) and its loss plot (``loss.png``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from weft.io import atomic_write, atomic_write_text


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records in order; a torn last line (a crash mid-append) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_metrics(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as one line, flushed to disk.

    Appending is not atomic, so a crash can leave a torn last line; that line is ended first
    here (so it cannot swallow the new record), skipped by :func:`read_metrics`, and dropped
    when a resumed run rewrites the file with :func:`truncate_metrics`.
    """
    line = (json.dumps(record) + "\n").encode("utf-8")
    with open(path, "ab+") as handle:
        if handle.tell() > 0:
            handle.seek(-1, 2)
            if handle.read(1) != b"\n":
                line = b"\n" + line
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Drop records after ``last_step`` (they are recomputed when a run resumes)."""
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def plot_metrics(metrics_path: str | Path, out_path: str | Path, title: str = "") -> bool:
    """Draw training and validation loss against steps; False when there is nothing to draw."""
    records = read_metrics(metrics_path)
    train = [(r["step"], r["train_loss"]) for r in records if _finite(r.get("train_loss"))]
    val = [(r["step"], r["val_loss"]) for r in records if _finite(r.get("val_loss"))]
    if not train and not val:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", markersize=3, label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(out_path, lambda handle: fig.savefig(handle, format="png"))
    plt.close(fig)
    return True


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
