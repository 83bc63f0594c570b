"""The copy meter's index: size and build time per MB of corpus, and check time per text.

    python -m benchmarks.copy_meter [--sizes-mb 1,17,200] [--texts 50]

Writes benchmarks/results/copy_meter.json. Each corpus is the Gutenberg books of the shared
data directory (``$WEFT_DATA``) joined and repeated to the size asked (``tinyshakespeare`` for
the first, 1 MB, size). Each index is built in a child process, so its peak resident memory is
its own. Checked texts, 500 characters each: "novel" ones are pieces of the WikiText-2 test
split (natural English that is not in the corpus: short shared phrases only), "copied" ones are
cut straight from the corpus (the worst case: every window is found).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import data_dir, machine, write_result
from weft.data.corpus_index import CorpusIndex, build_index

MB = 1_000_000
TEXT_CHARS = 500


def corpus_text(size_mb: float) -> str:
    if size_mb <= 1.5:
        return (data_dir() / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    books = sorted((data_dir() / "gutenberg").glob("*.txt"))
    text = "".join(book.read_text(encoding="utf-8", errors="replace") for book in books)
    repeats = max(1, round(size_mb * MB / len(text.encode("utf-8"))))
    return text * repeats


def build_child(size_mb: float, folder: str) -> dict[str, Any]:
    """Runs in a child process: build the index, report time and peak memory."""
    text = corpus_text(size_mb)
    start = time.perf_counter()
    stats = build_index(folder, [text], max_bytes=1 << 40)
    assert stats is not None
    seconds = time.perf_counter() - start
    return {"text_bytes": stats.text_bytes, "index_bytes": stats.index_bytes,
            "build_seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def check_times(folder: str, size_mb: float, texts: int) -> dict[str, Any]:
    index = CorpusIndex(folder)
    rng = np.random.default_rng(0)
    novel_source = (data_dir() / "wikitext-2" / "test.txt").read_text(encoding="utf-8")
    corpus = corpus_text(size_mb)
    results: dict[str, Any] = {}
    for kind, source in (("novel", novel_source), ("copied", corpus)):
        starts = rng.integers(0, len(source) - TEXT_CHARS, size=texts)
        pieces = [source[s:s + TEXT_CHARS] for s in starts.tolist()]
        start = time.perf_counter()
        lengths = [index.longest_copy(piece).chars for piece in pieces]
        seconds = (time.perf_counter() - start) / texts
        results[kind] = {"ms_per_text": seconds * 1000, "mean_longest_copy": float(
            np.mean(lengths)), "max_longest_copy": int(max(lengths))}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="1,17,200")
    parser.add_argument("--texts", type=int, default=50)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    started = machine()  # the load average before the work, as it is named
    if args.child:
        print(json.dumps(build_child(float(args.child[0]), args.child[1])))
        return
    rows = []
    for size in (float(s) for s in args.sizes_mb.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            built = json.loads(subprocess.run(
                [sys.executable, "-m", "benchmarks.copy_meter", "--child", str(size), folder],
                check=True, capture_output=True, text=True).stdout)
            mb = built["text_bytes"] / MB
            row = {"corpus_mb": round(mb, 2), **built,
                   "index_bytes_per_text_byte": built["index_bytes"] / built["text_bytes"],
                   "build_seconds_per_mb": built["build_seconds"] / mb,
                   "check": check_times(folder, size, args.texts)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    write_result("copy_meter", {"machine": started, "text_chars": TEXT_CHARS,
                                "texts_per_kind": args.texts, "corpora": rows})


if __name__ == "__main__":
    main()
