"""What ``max_copy`` costs a streamed generation: tokens per second with and without it.

A streamed text under ``max_copy`` looks at every token before keeping it (its text against
the suffix array of the training corpus, weft.generation.copy_guard) and draws again a token
that would complete a copy. This trains a small character model on a book for ``--train``
(or takes ``--run``), then streams ``--rows`` texts of ``--tokens`` tokens each, with and
without the limit, alternating for ``--rounds`` rounds; best round of each, and how many
texts had to be cut (every draw copied) and how long their longest copies were.

    python -m benchmarks.copy_guard_cost [--run RUN] [--max-copy 20] [--rounds 3]
    (results/copy_guard_cost_MAXCOPY.json)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import data_file, machine, write_result
from weft.api import load_language_model, run_training


def stream_rate(model: Any, tokens: int, rows: int, max_copy: int | None,
                seed: int) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    samples = model.samples(max_new_tokens=tokens, num_return_sequences=rows, seed=seed,
                            on_text=lambda i, text: None, max_copy=max_copy, copy_meter=True,
                            threads=1)
    return rows * tokens / (time.perf_counter() - started), samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run with a copy index")
    parser.add_argument("--corpus", default="alice/wonderland.txt")
    parser.add_argument("--train", default="60s", help="training time without --run")
    parser.add_argument("--max-copy", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "run"
            run_training([data_file(args.corpus)], run, time_budget=args.train, threads=1,
                         quiet=True)
        model = load_language_model(run, device="cpu")
        rates: dict[str, list[float]] = {"free": [], "max_copy": []}
        copies: dict[str, Any] = {}
        for round_ in range(args.rounds):
            for arm, limit in (("free", None), ("max_copy", args.max_copy)):
                rate, samples = stream_rate(model, args.tokens, args.rows, limit, round_)
                rates[arm].append(round(rate))
                copies[arm] = {"longest_copies": [s.longest_copy.chars for s in samples],
                               "cut": [s.cut for s in samples]}
                print(arm, round(rate), copies[arm], flush=True)
    best = {arm: max(values) for arm, values in rates.items()}
    write_result(f"copy_guard_cost_{args.max_copy}", {
        "benchmark": "copy_guard_cost", "corpus": args.corpus,
        # A run's folder name only: the result names no path of this machine.
        "run": args.run.name if args.run else f"char defaults, trained {args.train}",
        "max_copy": args.max_copy, "tokens": args.tokens, "rows": args.rows, "threads": 1,
        "machine": info, "tokens_per_s": rates, "best": best,
        "ratio": round(best["max_copy"] / best["free"], 3), "last_round": copies})


if __name__ == "__main__":
    main()
