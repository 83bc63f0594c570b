"""Run the benchmark suite, one benchmark per process, and print a summary table.

    python benchmarks/run.py            # everything (about 20 minutes on 2 cores)
    python benchmarks/run.py --quick    # shorter runs, for a smoke check

Each benchmark writes ``benchmarks/results/NAME.json``; this script gathers them into
``benchmarks/results/summary.json``. Benchmarks whose data is missing are skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE: list[tuple[str, list[str], list[str]]] = [
    # (module, full arguments, quick arguments)
    ("benchmarks.generation_speed", [], ["--tokens", "400", "--repeats", "1"]),
    ("benchmarks.train_overhead", [], ["--steps", "8", "--repeats", "1"]),
    ("benchmarks.memory", [], ["--steps", "5", "--memmap-gb", "0.05"]),
    ("benchmarks.tokenize_throughput", [], ["--megabytes", "10", "--memmap-mb", "50"]),
    ("benchmarks.tagger_speed", [], []),
    ("benchmarks.shakespeare_quality", [], ["--budget", "20"]),
    ("benchmarks.serve_load", [], ["--clients", "4", "--duration", "5"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", help="module names to run (e.g. generation_speed)")
    args = parser.parse_args()
    names = [module.rsplit(".", 1)[1] for module, _, _ in SUITE]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; "
                         f"choose from: {', '.join(names)}")
    summary = {}
    for module, full, quick in SUITE:
        name = module.rsplit(".", 1)[1]
        if args.only and name not in args.only:
            continue
        if not (HERE / f"{name}.py").exists():
            print(f"skip {name}: not in this checkout")
            continue
        print(f"== {name}", flush=True)
        done = subprocess.run([sys.executable, "-m", module, *(quick if args.quick else full)],
                              cwd=HERE.parent, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"   failed or skipped: {done.stderr.strip().splitlines()[-1:]}")
            continue
        result_file = HERE / "results" / f"{name}.json"
        if result_file.exists():
            summary[name] = json.loads(result_file.read_text())
    (HERE / "results" / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "machine"}
                      for k, v in summary.items()}, indent=1))


if __name__ == "__main__":
    main()
