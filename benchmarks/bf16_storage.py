"""What storing a model's weights in bf16 costs: held-out bits/char, float32-stored vs bf16-stored.

    nice -n 19 python -m benchmarks.bf16_storage [--run builtin:english] [--threads 1]

The run is copied into a temporary folder and its copy's weights are rewritten in bf16
(``weft.runs.store_weights``, what ``tools/train_base_model.py --storage bf16`` does); the
original is never touched. Both are scored with ``LanguageModel.evaluate`` on held-out files:
the 10 KB of *Alice* after its first 100 KB, the last 50 tweets of the sentiment140 test set
(one per line) and the first 10 KB of the WikiText-2 test set. Each is scored twice: at the
precision a user gets (``auto``: bf16 autocast on a CPU with bf16 instructions) and in fp32,
which shows the storage's rounding alone.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import data_file, machine, write_result
from weft.api import load_language_model
from weft.builtin import resolve_run
from weft.runs import WEIGHTS, store_weights

KB = 1000


def held_out_texts() -> dict[str, str]:
    alice = data_file("alice/wonderland.txt").read_text(encoding="utf-8")
    with data_file("tweets/sentiment140-testdata-with-header.csv").open(
            encoding="utf-8", newline="") as handle:
        tweets = [row["text"] for row in csv.DictReader(handle)]
    wiki = data_file("wikitext-2/test.txt").read_text(encoding="utf-8")
    return {"alice": alice[100 * KB: 110 * KB], "tweets": "\n".join(tweets[-50:]) + "\n",
            "wikitext-2": wiki[: 10 * KB]}


def scores(run: Path, files: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Bits/char of each file, at the run's own precision (``auto``) and in fp32."""
    model = load_language_model(run, device="cpu")
    out: dict[str, dict[str, float]] = {}
    for precision in (model.precision, None):
        model.precision = precision
        label = "fp32" if precision is None else f"auto ({str(precision).split('.')[-1]})"
        out[label] = {name: round(model.evaluate(path).bits_per_char, 5)
                      for name, path in files.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="builtin:english")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="bf16_storage")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        texts = held_out_texts()
        files: dict[str, Path] = {}
        for name, text in texts.items():
            files[name] = folder / f"{name}.txt"
            files[name].write_text(text, encoding="utf-8")
        float32_run, bf16_run = folder / "float32", folder / "bf16"
        shutil.copytree(resolve_run(args.run), float32_run)
        shutil.copytree(float32_run, bf16_run)
        store_weights(bf16_run / WEIGHTS, bf16_run / WEIGHTS, "bf16")
        result: dict[str, Any] = {
            "machine": machine(), "run": args.run, "threads": args.threads,
            "held_out_chars": {name: len(text) for name, text in texts.items()},
            "bytes": {"float32": (float32_run / WEIGHTS).stat().st_size,
                      "bf16": (bf16_run / WEIGHTS).stat().st_size},
            "bits_per_char": {"float32": scores(float32_run, files),
                              "bf16": scores(bf16_run, files)},
        }
    per_char = result["bits_per_char"]
    result["bf16_minus_float32"] = {
        precision: {name: round(per_char["bf16"][precision][name] - value, 5)
                    for name, value in by_text.items()}
        for precision, by_text in per_char["float32"].items()}
    write_result(args.name, result)


if __name__ == "__main__":
    main()
