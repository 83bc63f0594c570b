"""Peak memory of a short ``weft train`` run (the default model on Tiny Shakespeare).

Runs the real command in a child process and reads its peak resident set size.

    python -m benchmarks.memory --steps 20
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import data_dir, machine, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    path = data_dir() / "tinyshakespeare" / "input.txt"
    corpus = str(path) if path.exists() else "builtin:pydoc-topics"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "weft", "train", corpus, "--out",
                        str(Path(tmp) / "run"), "--max-steps", str(args.steps), "--quiet"],
                       check=True)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    write_result("memory", {
        "benchmark": "memory",
        "command": f"weft train {Path(corpus).name} --max-steps {args.steps} (default model)",
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "machine": machine(),
    })


if __name__ == "__main__":
    main()
