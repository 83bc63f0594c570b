"""The GPU check: does every CUDA path work, and how fast is weft on this GPU?

One command for a machine with one NVIDIA GPU; it ends within ``--limit`` seconds (default
460, under the 8 minutes it is given) and writes one JSON file (after each part, so a kill
keeps what was done), then prints a summary:

1. ``tests``: the suite's CUDA tests (``pytest -m cuda tests/test_cuda.py``).
2. ``training``: tokens/s of a 2 x 1024 LSTM at batch 256 x seq-len 128 in fp32, bf16 and
   fp16, each step as the trainer takes it (the language-model task's loss under autocast,
   then ``Trainer._step``: GradScaler, clipping, fused AdamW), and the share of the GPU's
   dense bf16 peak that its matrix products reach. Model FLOPs count 6 per matrix weight per
   token (forward 2, backward 4); the recurrence's elementwise work is left out.
3. ``generation``: tokens/s at 1 and 64 streams on the device, float32: weft (tokens chosen
   on the device, one host copy per 8 tokens), weft stepping one token at a time, and naive
   ``nn.LSTM`` stepping.
4. ``quality``: Tiny Shakespeare (nanoGPT's split) held-out nats/char after 60 s of training
   on the GPU, for each of :data:`QUALITY_CANDIDATES`.

``--dry-run`` runs the same code at tiny sizes on whatever device there is (seconds, on a
CPU); the test suite runs it so that this script never rots.

    python -m benchmarks.gpu_check --dry-run --out /tmp/gpu_check.json   # anywhere
    bash benchmarks/gpu_run.sh      # on the GPU machine (docs/benchmarks.md, "The GPU check")
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import REPO, data_dir, machine
from benchmarks.generation_speed import CHARS, naive_stepping
from benchmarks.shakespeare_quality import train_and_score
from weft.config import GenerationConfig, ModelConfig, TrainConfig
from weft.device import PRECISION_NEEDS, autocast, precision_runs_on
from weft.generation import generate
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import CharTokenizer
from weft.training.stream_task import StreamLMTask
from weft.training.trainer import Trainer

# Dense bf16 tensor-core peaks (no sparsity) from NVIDIA's datasheets, by a word in the
# device's name. H100 SXM and H200 SXM share the chip: 989.4 TFLOP/s.
DENSE_BF16_PEAKS = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12}

# Settings tried for the 60-second Tiny Shakespeare run (weft.train options). A GPU takes a
# window of 128 steps in about the time a CPU takes one short step, so windows are long and
# batches wide; at this many tokens per second a model sees the corpus dozens of times in
# 60 s, so it is regularized with dropout and selected on validation (the default).
QUALITY_CANDIDATES: dict[str, dict[str, Any]] = {
    "2x512_d0.25_b64x128_lr3e-3": dict(hidden_size=512, layers=2, dropout=0.25, batch_size=64,
                                       seq_len=128, lr=3e-3, precision="bf16"),
    "2x1024_d0.35_b128x128_lr2e-3": dict(hidden_size=1024, layers=2, dropout=0.35,
                                         batch_size=128, seq_len=128, lr=2e-3,
                                         precision="bf16"),
}
DRY_QUALITY = {"tiny": dict(hidden_size=32, batch_size=4, seq_len=16, eval_every=5)}


@dataclass(frozen=True)
class Sizes:
    hidden: int
    layers: int
    batch: int
    seq_len: int
    train_seconds: float  # timed training per precision
    tokens_1_stream: int
    tokens_64_streams: int
    quality_budget: float
    tests_timeout: float


FULL = Sizes(1024, 2, 256, 128, 4.0, 512, 256, 60.0, 200.0)
DRY = Sizes(32, 2, 4, 16, 0.2, 16, 8, 1.0, 120.0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, any device")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/gpu_check.json")
    parser.add_argument("--limit", type=float, default=460.0, help="wall-clock seconds")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["tests", "training", "generation", "quality"])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not torch.cuda.is_available() and not args.dry_run:
        raise SystemExit("gpu_check: no CUDA GPU here; use --dry-run to check the script")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = DRY if args.dry_run else FULL
    result: dict[str, Any] = {"benchmark": "gpu_check", "dry_run": args.dry_run,
                              "sizes": asdict(sizes), "machine": machine(),
                              "cuda": cuda_facts(device)}
    parts: list[tuple[str, float, Callable[[], dict[str, Any]]]] = [
        ("tests", 30, lambda: cuda_tests(sizes.tests_timeout, args.out.parent)),
        ("training", 20, lambda: training_throughput(device, sizes)),
        ("generation", 15, lambda: generation_speed(device, sizes)),
        ("quality", sizes.quality_budget + 30,
         lambda: quality(device, sizes, start + args.limit, args.dry_run)),
    ]
    for name, needs, run in parts:
        left = start + args.limit - time.perf_counter()
        if name in args.skip:
            result[name] = {"skipped": "--skip"}
        elif left < needs:
            result[name] = {"skipped": f"{left:.0f} s left of --limit; it needs about {needs:.0f}"}
        else:
            result[name] = timed(run)
        result["wall_s"] = round(time.perf_counter() - start, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    return result


def timed(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s record with its seconds; an exception becomes the record's ``error``."""
    begin = time.perf_counter()
    try:
        record = run()
    except Exception as exc:  # a part that breaks must not cost the others
        record = {"error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc().splitlines()[-8:]}
    record["seconds"] = round(time.perf_counter() - begin, 1)
    return record


def cuda_facts(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"device": str(device)}
    props = torch.cuda.get_device_properties(device)
    return {"device": props.name, "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "measured_bf16_tflops": round(measured_bf16_peak(device) / 1e12, 1)}


def measured_bf16_peak(device: torch.device, size: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of large bf16 matrix products on random data (CUDA events, after warm-up)."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    return 2 * size**3 * repeats / (begin.elapsed_time(end) / 1e3)


def cuda_tests(timeout: float, out_dir: Path) -> dict[str, Any]:
    """The CUDA tests in a child pytest; counts and each failure's first lines from JUnit XML."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "gpu_check_tests.xml"
    paths = [str(REPO / "src"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    command = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-m", "cuda", "-q",
               "-o", "addopts=", "-p", "no:cacheprovider", f"--junitxml={report}"]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)})
    except subprocess.TimeoutExpired:
        return {"error": f"the CUDA tests ran past {timeout:.0f} s"}
    # The report's folder is this machine's: the result names the file alone.
    shown = [*command[1:-1], f"--junitxml={report.name}"]
    record: dict[str, Any] = {"command": " ".join(shown), "exit_code": done.returncode,
                              "output_tail": done.stdout.splitlines()[-5:]}
    if not report.exists():
        record["error"] = (done.stdout + done.stderr)[-2000:]
        return record
    cases = ElementTree.parse(report).getroot().iter("testcase")
    outcomes: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    failures = {}
    for case in cases:
        name = case.get("name", "?")
        problem = next((c for c in case if c.tag in ("failure", "error")), None)
        if problem is not None:
            outcomes["failed"].append(name)
            failures[name] = (problem.get("message") or "")[:400]
        elif case.find("skipped") is not None:
            outcomes["skipped"].append(name)
        else:
            outcomes["passed"].append(name)
    return {**record, **{f"tests_{k}": len(v) for k, v in outcomes.items()},
            "failures": failures, "passed_tests": outcomes["passed"]}


def random_ids(tokens: int, vocab: int) -> np.ndarray:
    """Random character ids: speed does not depend on what the text says."""
    return np.random.default_rng(0).integers(0, vocab, tokens).astype(np.uint8)


def training_throughput(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    tokenizer = CharTokenizer(CHARS)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=sizes.hidden,
                         layers=sizes.layers)
    train = TrainConfig(batch_size=sizes.batch, seq_len=sizes.seq_len)
    probe = RNNLanguageModel(config)
    matrices = sum(p.numel() for n, p in probe.named_parameters()
                   if n.startswith("rnn.weight") or n == "head.weight")
    flops_per_token = 6 * matrices
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    peak = next((v for k, v in DENSE_BF16_PEAKS.items() if k in name), None)
    record: dict[str, Any] = {
        "model": f"{sizes.layers} x {sizes.hidden} LSTM, embedding {config.embedding_dim}, "
                 f"vocabulary {config.vocab_size}",
        "batch": sizes.batch, "seq_len": sizes.seq_len,
        "model_flops_per_token": flops_per_token,
        "dense_bf16_peak_tflops": peak / 1e12 if peak else None,
        "peak_source": "NVIDIA datasheet, dense (no sparsity)" if peak else "unknown GPU",
    }
    ids = random_ids(sizes.batch * (sizes.seq_len + 1) * 64, tokenizer.vocab_size)
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if not precision_runs_on(name, device):
            record[name] = {"skipped": f"{name} needs {PRECISION_NEEDS[name]}"}
            continue
        torch.manual_seed(0)
        model = RNNLanguageModel(config).to(device)
        task = StreamLMTask(model, tokenizer, ids, ids[:0], train, device, dtype)
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(task, train, run_dir, device=device, precision=dtype, quiet=True)
            tokens_per_s = _steps_per_second(task, trainer, device, dtype,
                                             sizes.train_seconds) * sizes.batch * sizes.seq_len
        row: dict[str, Any] = {"tokens_per_s": round(tokens_per_s),
                               "model_tflops": round(tokens_per_s * flops_per_token / 1e12, 2)}
        if peak:
            row["share_of_dense_bf16_peak"] = round(tokens_per_s * flops_per_token / peak, 4)
        record[name] = row
        del model, task, trainer
    return record


def _steps_per_second(task: StreamLMTask, trainer: Trainer, device: torch.device,
                      dtype: torch.dtype | None, seconds: float) -> float:
    windows = task.steps_per_epoch()

    def step(index: int) -> None:
        with autocast(device, dtype):
            loss, _ = task.train_loss(0, index % windows)
        trainer._step(loss)

    for index in range(3):  # cuDNN picks its kernels; the allocator settles
        step(index)
    _synchronize(device)
    count, begin = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - begin < seconds:
        step(count)
        count += 1
    _synchronize(device)
    return count / (time.perf_counter() - begin)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generation_speed(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    tokenizer = CharTokenizer(CHARS)
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size,
                                         hidden_size=sizes.hidden, layers=sizes.layers))
    model = model.to(device).eval()
    record: dict[str, Any] = {"model": f"{sizes.layers} x {sizes.hidden} LSTM, float32, "
                                       "random weights", "device": str(device)}

    def weft_rate(streams: int, tokens: int, chunked: bool) -> float:
        config = GenerationConfig(max_new_tokens=tokens, temperature=0.8, seed=0,
                                  num_return_sequences=streams)
        begin = time.perf_counter()
        texts = generate(model, tokenizer, "", config, chunked=chunked)
        return sum(len(t) for t in texts) / (time.perf_counter() - begin)

    for streams, tokens in ((1, sizes.tokens_1_stream), (64, sizes.tokens_64_streams)):
        for warm in (True, False):  # the first calls pay for kernel loading
            rates = {"weft_tokens_per_s": weft_rate(streams, tokens, chunked=True),
                     "weft_per_token_sync_tokens_per_s": weft_rate(streams, tokens, False),
                     "naive_nn_lstm_tokens_per_s": naive_stepping(model, streams, tokens)}
            if warm:
                continue
            row = {k: round(v) for k, v in rates.items()}
            row["speedup_vs_naive"] = round(rates["weft_tokens_per_s"]
                                            / rates["naive_nn_lstm_tokens_per_s"], 2)
            record[f"{streams}_streams"] = {"tokens": tokens, **row}
    return record


def quality(device: torch.device, sizes: Sizes, deadline: float,
            dry_run: bool) -> dict[str, Any]:
    """Held-out nats/char after ``quality_budget`` seconds, per candidate that time allows."""
    record: dict[str, Any] = {"budget_s": sizes.quality_budget}
    with tempfile.TemporaryDirectory() as tmp:
        if dry_run:
            corpus = Path(tmp) / "corpus.txt"
            corpus.write_text("The quick brown fox jumps over the lazy dog.\n" * 200)
            candidates = DRY_QUALITY
        else:
            corpus = data_dir() / "tinyshakespeare" / "input.txt"
            if not corpus.exists():
                return {"error": f"{corpus} not found: set WEFT_DATA (benchmarks/gpu_prepare.sh "
                                 "copies it into .gpu/data)"}
            candidates = QUALITY_CANDIDATES
        record["corpus"] = corpus.name if dry_run else "tinyshakespeare/input.txt"
        for name, options in candidates.items():
            if deadline - time.perf_counter() < sizes.quality_budget + 20:
                record[name] = {"skipped": "not enough time left"}
                continue
            record[name] = timed(lambda options=options: train_and_score(
                corpus, sizes.quality_budget, {**options, "device": str(device)}))
    scores = {k: v["held_out_nats_per_char"] for k, v in record.items()
              if isinstance(v, dict) and "held_out_nats_per_char" in v}
    if scores:
        record["best"] = min(scores, key=lambda k: scores[k])
    cpu = REPO / "benchmarks" / "results" / "shakespeare_quality.json"
    if cpu.exists():  # the figure to beat: the CPU default's, after 104 s
        saved = json.loads(cpu.read_text())
        record["cpu_reference"] = {k: saved.get(k) for k in ("budget_s",
                                                             "held_out_nats_per_char")}
    return record


def summary(result: dict[str, Any]) -> str:
    lines = [f"gpu_check on {result['cuda'].get('device')} "
             f"({'dry run, ' if result['dry_run'] else ''}{result.get('wall_s')} s)"]
    if "measured_bf16_tflops" in result["cuda"]:
        lines.append(f"  bf16 matrix products: {result['cuda']['measured_bf16_tflops']} TFLOP/s")
    tests = result.get("tests", {})
    lines.append(f"  CUDA tests: {tests.get('tests_passed')} passed, "
                 f"{tests.get('tests_failed')} failed, {tests.get('tests_skipped')} skipped"
                 + _problem(tests))
    for name, failure in tests.get("failures", {}).items():
        lines.append(f"    FAILED {name}: {failure.splitlines()[0] if failure else ''}")
    training = result.get("training", {})
    lines.append(f"  training ({training.get('model')}, {training.get('batch')} x "
                 f"{training.get('seq_len')}):" + _problem(training))
    for precision in ("fp32", "bf16", "fp16"):
        row = training.get(precision, {})
        if "tokens_per_s" in row:
            share = row.get("share_of_dense_bf16_peak")
            lines.append(f"    {precision}: {row['tokens_per_s']:,} tokens/s, "
                         f"{row['model_tflops']} TFLOP/s"
                         + (f" ({100 * share:.1f}% of the dense bf16 peak)" if share else ""))
    generation = result.get("generation", {})
    lines.append("  generation:" + _problem(generation))
    for key in ("1_streams", "64_streams"):
        row = generation.get(key)
        if row:
            lines.append(f"    {key.replace('_', ' ')}: weft {row['weft_tokens_per_s']:,} "
                         f"tokens/s, per-token sync {row['weft_per_token_sync_tokens_per_s']:,}, "
                         f"naive nn.LSTM {row['naive_nn_lstm_tokens_per_s']:,} "
                         f"({row['speedup_vs_naive']}x)")
    scores = result.get("quality", {})
    cpu = scores.get("cpu_reference") or {}
    lines.append(f"  quality ({scores.get('budget_s')} s of training; the CPU: "
                 f"{cpu.get('held_out_nats_per_char')} after {cpu.get('budget_s')} s):"
                 + _problem(scores))
    for name, row in scores.items():
        if isinstance(row, dict) and name != "cpu_reference":
            shown = (f"{row['held_out_nats_per_char']} nats/char, {row['tokens_per_s']:,} "
                     "tokens/s" if "held_out_nats_per_char" in row
                     else row.get("error") or row.get("skipped"))
            lines.append(f"    {name}: {shown}")
    return "\n".join(lines)


def _problem(record: dict[str, Any]) -> str:
    return (f" ERROR {record['error']}" if "error" in record
            else f" skipped: {record['skipped']}" if "skipped" in record else "")


if __name__ == "__main__":
    main()
