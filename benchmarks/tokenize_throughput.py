"""Tokenizer throughput and memory-mapped encoding, as JSON.

    python -m benchmarks.tokenize_throughput [--size-mb 100]
        [--memmap-mb 1024] [--memmap-levels char,word]

Writes benchmarks/results/tokenize_throughput.json.

1. Encoding speed (MB of UTF-8 per second, one thread) of the char and word tokenizers on a
   ~``--size-mb`` corpus built by repeating ``tinyshakespeare/input.txt`` from the shared data
   directory (``$WEFT_DATA``, default ``../shared/data`` beside the repository), or generated
   text when that is absent; byte-level BPE is timed on a tenth of it. Targets: char >= 50 MB/s,
   word >= 10 MB/s.
2. A ``--memmap-mb`` corpus file (written to a temporary directory, deleted afterwards) encoded
   chunk by chunk into a memory-mapped ``.npy`` (weft.data.memmap) in a child process, whose
   peak resident memory is reported: it should stay near one chunk, not the corpus size.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one core for the Rust BPE encoder too

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import REPO, data_dir, machine, write_result
from weft.data.memmap import encode_to_npy, iter_text_chunks
from weft.tokenizers import build_tokenizer

MB = 1_000_000


def base_text() -> tuple[str, str]:
    path = data_dir() / "tinyshakespeare" / "input.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8"), "tinyshakespeare/input.txt"
    rng = np.random.default_rng(0)
    words = ["the", "a", "cat", "sat", "on", "mat", "and", "dog", "ran", "away", "don't",
             "it's", "very", "quickly", "Alice", "said", "hello", "world", "3.14", "well-known"]
    lines = []
    for _ in range(20_000):
        n = int(rng.integers(4, 14))
        line = " ".join(words[i] for i in rng.integers(0, len(words), n))
        lines.append(line[0].upper() + line[1:] + rng.choice([".", ",", "!", "?"]))
    return "\n".join(lines) + "\n", "generated"


def time_encode(tokenizer: Any, text: str, repeats: int = 1) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        ids = tokenizer.encode(text)
        best = min(best, time.perf_counter() - start)
        count = len(ids)
        del ids
    return best, count


def throughput(size_mb: int) -> dict[str, Any]:
    base, source = base_text()
    copies = max(1, round(size_mb * MB / len(base.encode("utf-8"))))
    text = base * copies
    nbytes = len(text.encode("utf-8"))
    results: dict[str, Any] = {"source": source, "corpus_mb": round(nbytes / MB, 1)}
    for level in ("char", "word"):
        tok = build_tokenizer(level, [base])
        tok.encode(base)  # warm caches (the word level caches each distinct chunk)
        seconds, tokens = time_encode(tok, text, repeats=2)
        results[level] = {"seconds": round(seconds, 3), "tokens": tokens,
                          "mb_per_s": round(nbytes / MB / seconds, 1),
                          "vocab_size": tok.vocab_size}
    bpe_text = base * max(1, copies // 10)
    bpe = build_tokenizer("bpe", [base], vocab_size=2000)
    seconds, tokens = time_encode(bpe, bpe_text)
    bpe_mb = len(bpe_text.encode("utf-8")) / MB
    results["bpe"] = {"seconds": round(seconds, 3), "tokens": tokens, "corpus_mb": round(bpe_mb, 1),
                      "mb_per_s": round(bpe_mb / seconds, 1), "vocab_size": bpe.vocab_size}
    return results


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM counts only the current program image;
    ru_maxrss would also count the parent's memory inherited through fork before exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * 1024 / MB, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB, 1)


def memmap_child(corpus: str, out: str, level: str) -> None:
    """Runs in a fresh process so that its peak RSS is the encoder's alone."""
    sample = next(iter_text_chunks(corpus))
    tok = build_tokenizer(level, [sample])
    start = time.perf_counter()
    ids = encode_to_npy(iter_text_chunks(corpus), tok, out)
    seconds = time.perf_counter() - start
    # What training would do: read windows from the memmap, not the whole array.
    window = torch.from_numpy(np.asarray(ids[len(ids) // 2 : len(ids) // 2 + 64 * 65]))
    print(json.dumps({"tokens": len(ids), "seconds": round(seconds, 2),
                      "dtype": str(ids.dtype), "window_sum": int(window.sum()),
                      "npy_mb": round(Path(out).stat().st_size / MB, 1),
                      "peak_rss_mb": peak_rss_mb()}))


def memmap(memmap_mb: int, levels: list[str]) -> dict[str, Any]:
    base, _ = base_text()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="weft-bench-") as tmp:
        corpus = Path(tmp) / "corpus.txt"
        block = (base * max(1, (8 * MB) // len(base))).encode("utf-8")
        with open(corpus, "wb") as handle:
            written = 0
            while written < memmap_mb * MB:
                handle.write(block)
                written += len(block)
        results["corpus_mb"] = round(written / MB, 1)
        # A child that only imports (torch, numpy, weft): the floor every child starts from.
        floor = subprocess.run([sys.executable, "-m", __spec__.name, "--baseline"], cwd=REPO,
                               check=True, capture_output=True, text=True)
        results["import_only_rss_mb"] = float(floor.stdout.strip())
        for level in levels:
            out = Path(tmp) / f"{level}.npy"
            proc = subprocess.run(
                [sys.executable, "-m", __spec__.name, "--child", str(corpus), str(out), level],
                cwd=REPO, check=True, capture_output=True, text=True)
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            child["mb_per_s"] = round(written / MB / child["seconds"], 1)
            results[level] = child
            out.unlink()
    results["note"] = "peak_rss_mb: VmHWM of the encoding child process (includes imports)"
    return results


def main() -> None:
    if sys.argv[1:] == ["--baseline"]:
        print(peak_rss_mb())
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        memmap_child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", "--megabytes", type=int, default=100)
    parser.add_argument("--memmap-mb", type=int, default=1024, help="0 skips the memmap part")
    parser.add_argument("--memmap-levels", default="char")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict[str, Any] = {
        "benchmark": "tokenize_throughput",
        "machine": machine(),
        "numpy": np.__version__,
        "throughput": throughput(args.size_mb),
    }
    if args.memmap_mb:
        report["memmap"] = memmap(args.memmap_mb, args.memmap_levels.split(","))
    write_result("tokenize_throughput", report)


if __name__ == "__main__":
    main()
