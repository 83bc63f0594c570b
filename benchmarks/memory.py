"""Peak memory of real ``weft train`` runs: the default model, and a 1 GB corpus memory-mapped.

Each run is the real command in a child process; its peak resident set size comes from
``wait4``. The large corpus repeats Tiny Shakespeare (or the built-in corpus) up to the size
asked for and trains with ``--memmap``, so the token ids stay on disk, paged in as read.

    python -m benchmarks.memory --steps 20 --memmap-gb 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import data_dir, machine, write_result
from weft.data.corpus import read_text
from weft.runs import TOKENS


def peak_rss_mib(args: list[str]) -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of ``python -m weft ARGS``."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "weft", *args])
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"weft {' '.join(args)} failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--memmap-gb", type=float, default=1.0, help="0 skips the large run")
    args = parser.parse_args()
    started = machine()  # the load average before the work, as it is named
    path = data_dir() / "tinyshakespeare" / "input.txt"
    corpus = str(path) if path.exists() else "builtin:pydoc-topics"
    steps = ["--max-steps", str(args.steps), "--quiet"]
    result: dict[str, Any] = {"benchmark": "memory"}
    with tempfile.TemporaryDirectory() as tmp:
        rss, _ = peak_rss_mib(["train", corpus, "--out", f"{tmp}/small", *steps])
        result["default_model"] = {"corpus": Path(corpus).name, "peak_rss_mib": round(rss, 1)}
        if args.memmap_gb > 0:
            big = Path(tmp) / "big.txt"
            piece = read_text(corpus).encode("utf-8")
            target = int(args.memmap_gb * 1e9)
            with open(big, "wb") as handle:
                for _ in range(target // len(piece) + 1):
                    handle.write(piece)
            size = big.stat().st_size
            rss, wall = peak_rss_mib(["train", str(big), "--out", f"{tmp}/big", "--memmap",
                                      "--val-fraction", "0.001", *steps])
            tokens = (Path(tmp) / "big" / TOKENS).stat().st_size
            result["memmap_corpus"] = {
                "corpus_bytes": size, "token_file_bytes": tokens,
                "peak_rss_mib": round(rss, 1), "wall_s": round(wall, 1),
                "peak_rss_over_token_array": round(rss * 2**20 / tokens, 3),
            }
    result["machine"] = started
    write_result("memory", result)


if __name__ == "__main__":
    main()
