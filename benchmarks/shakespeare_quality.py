"""Quality at equal CPU time: held-out nats/char on Tiny Shakespeare after a fixed time budget.

The split is nanoGPT's: the first 90% of the characters train, the last 10% are held out.
The held-out figure is ``weft eval`` over that whole last 10% (state carried over columns).

    python -m benchmarks.shakespeare_quality                    # the default model, 104 s
    python -m benchmarks.shakespeare_quality --budget 60 --set hidden_size=256 --set lr=3e-3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import weft
from benchmarks.common import data_file, machine, parse_value, write_result
from weft.data.corpus import read_text
from weft.runs import METRICS
from weft.training.metrics import read_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=104.0, help="training seconds")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a training option (repeatable)")
    parser.add_argument("--name", default="shakespeare_quality")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    options = {k: parse_value(v) for k, v in overrides.items()}
    info = machine()
    result = train_and_score(data_file("tinyshakespeare/input.txt"), args.budget, options)
    write_result(args.name, {"benchmark": "shakespeare_quality", **result, "machine": info})


def train_and_score(corpus: Path, budget: float, options: dict[str, Any]) -> dict[str, Any]:
    """Train on the first 90% of ``corpus`` for ``budget`` seconds; score the last 10%."""
    text = read_text(corpus)
    held_out = text[int(len(text) * 0.9):]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model = weft.train(corpus, out=Path(tmp) / "run", time_budget=budget,
                           val_fraction=0.1, quiet=True, **options)
        assert model is not None
        wall = time.perf_counter() - start
        result = model.evaluate(held_out)
        config = model.config.to_dict()
        trained = read_metrics(Path(tmp) / "run" / METRICS)[-1]
    return {
        "budget_s": budget,
        "wall_s": round(wall, 1),
        "held_out_nats_per_char": round(result.loss, 4),
        "held_out_bits_per_char": round(result.bits_per_char, 4),
        "target_nats_per_char": 1.55,
        # How much training the budget bought: it falls when the machine is busy or slow.
        "steps": trained["step"],
        "tokens": trained["tokens"],
        "tokens_per_s": round(trained["tokens"] / trained["elapsed"]),
        "overrides": options,
        "model": config["model"],
        "train": config["train"],
    }


if __name__ == "__main__":
    main()
