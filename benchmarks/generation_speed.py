"""Generation speed: weft's steppers (float32, int8) vs naive ``nn.LSTM`` stepping.

Model: a 2 x 512 character LSTM (vocabulary 65, embedding 64), as in the classic char-rnn
recipes; speed does not depend on what the weights have learned, so they are random.
Single-stream figures are taken with 1 and 2 threads (the choice ``generate`` makes is
recorded in weft.generation.generate). ``--compile`` (weft.generation.compiled) is measured
with the default thread policy, after a first call whose time (compiling) is reported apart.
Also measures the machine's float32, bf16 and int8 matrix-product peaks, to say how close to
the limit each figure is. A 2 x 512 LSTM step costs
about 6.6 MFLOP per token.

With ``--run RUN --text FILE`` it also measures what int8 costs in quality: the held-out loss
(nats per token) of the trained model in RUN on FILE, stepped in float32 and in int8.

``--kinds native,avx2`` compares every documented path on several kinds of CPU instead: each
kind is a child process with the instruction sets capped by environment variables
(:data:`CPU_KINDS`), rounds of short runs with kinds and paths interleaved, best round of each
(``benchmarks/results/generation_speed_kinds.json``; see docs/benchmarks.md).

    python -m benchmarks.generation_speed [--run RUN --text FILE]
    python -m benchmarks.generation_speed --kinds native,avx2 [--run RUN] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import data_file, machine, matmul_peak, write_result
from weft.api import load
from weft.config import GenerationConfig, ModelConfig
from weft.device import cpu_threads
from weft.generation import generate
from weft.generation.plan import GenerationPlan, choose_plan, cpu_facts
from weft.generation.quantized import Int8Stepper
from weft.generation.stepper import RecurrentStepper
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import CharTokenizer

CHARS = "".join(chr(c) for c in range(32, 96))  # 64 characters + <unk> = 65 tokens


@torch.no_grad()
def naive_stepping(model: RNNLanguageModel, streams: int, tokens: int) -> float:
    """What a tutorial does: call the whole module (nn.LSTM inside) once per token, on the
    model's device."""
    device = model.head.weight.device
    generator = torch.Generator(device=device).manual_seed(0)
    token = torch.zeros(streams, 1, dtype=torch.long, device=device)
    state = None
    start = time.perf_counter()
    for _ in range(tokens):
        logits, _, state = model(token, state)
        probs = torch.softmax(logits[:, -1] / 0.8, dim=-1)
        token = torch.multinomial(probs, 1, generator=generator)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return streams * tokens / (time.perf_counter() - start)


def weft_generation(model: RNNLanguageModel, tokenizer: CharTokenizer, streams: int,
                    tokens: int, quantize: str, threads: int | None,
                    compile: bool = False) -> float:
    config = GenerationConfig(max_new_tokens=tokens, temperature=0.8, seed=0,
                              num_return_sequences=streams, quantize=quantize, compile=compile)
    start = time.perf_counter()
    texts = generate(model, tokenizer, "", config, threads=threads)
    elapsed = time.perf_counter() - start
    return sum(len(t) for t in texts) / elapsed


@torch.no_grad()
def held_out_loss(stepper: RecurrentStepper | Int8Stepper, model: RNNLanguageModel,
                  ids: torch.Tensor, streams: int = 32) -> float:
    """Mean next-token loss over ``ids``, cut into ``streams`` rows stepped side by side."""
    length = len(ids) // streams
    rows = ids[: streams * length].view(streams, length)
    state = stepper.from_module_state(model.initial_state(streams))
    total = 0.0
    for t in range(length - 1):
        logits, state = stepper.step(rows[:, t], state)
        total += float(torch.nn.functional.cross_entropy(logits, rows[:, t + 1],
                                                         reduction="sum"))
    return total / (streams * (length - 1))


def int8_quality(run: str, text_file: str, characters: int) -> dict[str, Any]:
    trained = load(run, device="cpu")
    text = Path(text_file).read_text(encoding="utf-8")[-characters:]  # the end: held out
    ids = torch.as_tensor(trained.tokenizer.encode(trained.prepare_prompt(text))).long()
    model = trained.module.eval()
    exact = held_out_loss(RecurrentStepper(model), model, ids)
    quantized = held_out_loss(Int8Stepper(model), model, ids)
    return {"run": Path(run).name, "model": f"{model.config.layers} x {model.config.hidden_size} "
            f"{model.config.cell}", "tokens": len(ids),
            "float32_nats_per_token": round(exact, 4), "int8_nats_per_token": round(quantized, 4),
            "int8_minus_float32": round(quantized - exact, 4)}


def best_of(repeats: int, fn: Any, *args: Any) -> float:
    return max(fn(*args) for _ in range(repeats))


# What each kind caps: ATen's own kernels and Inductor's generated code
# (ATEN_CPU_CAPABILITY), oneDNN's JIT kernels, which torch._int_mm runs on (ONEDNN_MAX_CPU_ISA),
# and MKL's float32 products (MKL_ENABLE_INSTRUCTIONS). FBGEMM has no such switch: it picks
# AVX2 or AVX-512 kernels from the CPU itself.
CPU_KINDS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
# The paths compared per kind: (name, streams, plan fields or None for weft's choice,
# GenerationConfig fields). "before" is the default before weft.generation.plan existed.
KIND_PATHS: list[tuple[str, int, dict[str, Any] | None, dict[str, Any]]] = [
    ("before: float32, 2 threads", 1, {"quantize": "none", "threads": 2}, {}),
    ("float32, 1 thread", 1, {"quantize": "none", "threads": 1}, {}),
    ("int8 (int_mm), 1 thread", 1, {"quantize": "int8", "kernel": "int_mm", "threads": 1}, {}),
    ("int8 (fbgemm), 1 thread", 1, {"quantize": "int8", "kernel": "fbgemm", "threads": 1}, {}),
    ("default (auto)", 1, None, {}),
    ("--quantize none", 1, None, {"quantize": "none"}),
    ("--quantize int8", 1, None, {"quantize": "int8"}),
    ("--compile", 1, None, {"compile": True}),
    ("--quantize none --compile", 1, None, {"quantize": "none", "compile": True}),
    ("--quantize int8 --compile", 1, None, {"quantize": "int8", "compile": True}),
    ("64 streams, before: float32", 64, {"quantize": "none", "threads": None}, {}),
    ("64 streams, default (auto)", 64, None, {}),
    ("64 streams, --quantize int8", 64, None, {"quantize": "int8"}),
]


def timed_generation(model: RNNLanguageModel, tokenizer: CharTokenizer, streams: int,
                     seconds: float, plan: GenerationPlan | None,
                     config_fields: dict[str, Any]) -> tuple[float, str]:
    """tokens/s of generating for about ``seconds``, and the path taken."""
    config = GenerationConfig(max_new_tokens=100_000, temperature=0.8, seed=0,
                              num_return_sequences=streams, **config_fields)
    plan = plan or choose_plan(model, config)
    generate(model, tokenizer, "", GenerationConfig(**{**config.__dict__, "max_new_tokens": 16}),
             plan=plan)  # warm: packing, and compiling (not timed; see first_call_s)
    start = time.perf_counter()
    texts = generate(model, tokenizer, "", config, plan=plan,
                     should_stop=lambda: time.perf_counter() - start > seconds)
    return sum(len(t) for t in texts) / (time.perf_counter() - start), plan.label()


def kind_child(seconds: float, run: str | None, threads: int | None) -> None:
    """One round of every path in :data:`KIND_PATHS`, on this process's CPU kind (JSON out).
    ``threads`` caps PyTorch's threads (what weft's own choices may use)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    if run:
        trained = load(run, device="cpu")
        model, tokenizer = trained.module.eval(), trained.tokenizer
    else:
        tokenizer = CharTokenizer(CHARS)
        model = RNNLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=512,
                                             layers=2, embedding_dim=64)).eval()
    rows = {}
    for name, streams, plan_fields, config_fields in KIND_PATHS:
        plan = None
        if plan_fields is not None:
            plan = GenerationPlan(plan_fields["quantize"], plan_fields.get("kernel"), False,
                                  plan_fields["threads"])
        start = time.perf_counter()
        speed, label = timed_generation(model, tokenizer, streams, seconds, plan, config_fields)
        rows[name] = {"tokens_per_s": round(speed, 1), "path": label,
                      "seconds": round(time.perf_counter() - start, 1)}
    facts = cpu_facts()
    print(json.dumps({"cpu": facts.describe(), "rows": rows}))


def compare_kinds(kinds: list[str], rounds: int, seconds: float, run: str | None,
                  threads: int | None) -> None:
    """Rounds of :func:`kind_child` per kind, interleaved; the best round of each path."""
    info = machine()
    cache = tempfile.mkdtemp(prefix="weft-plan-cache-")  # each kind measures its plan afresh
    inductor = tempfile.mkdtemp(prefix="weft-inductor-")  # the first round compiles cold
    best: dict[str, dict[str, Any]] = {kind: {} for kind in kinds}
    loads = []
    for _ in range(rounds):
        for kind in kinds:
            loads.append(os.getloadavg()[0])
            env = {**os.environ, **CPU_KINDS[kind], "WEFT_CACHE_DIR": os.path.join(cache, kind),
                   "TORCHINDUCTOR_CACHE_DIR": os.path.join(inductor, kind)}
            command = [sys.executable, "-m", "benchmarks.generation_speed", "--kind-child",
                       "--seconds", str(seconds)] + (["--run", run] if run else []) + (
                       ["--threads", str(threads)] if threads else [])
            out = subprocess.run(command, env=env, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"the {kind} child failed:\n{out.stderr[-3000:]}")
            child = json.loads(out.stdout.strip().splitlines()[-1])
            best[kind]["cpu"] = child["cpu"]
            for name, row in child["rows"].items():
                rows = best[kind].setdefault("rows", {})
                if name not in rows or row["tokens_per_s"] > rows[name]["tokens_per_s"]:
                    rows[name] = row
    write_result("generation_speed_kinds", {
        "benchmark": "generation_speed --kinds",
        "model": f"2 x 512 LSTM ({'trained: ' + Path(run).name if run else 'random weights'})",
        "rounds": rounds, "seconds_per_path": seconds, "threads_cap": threads, "kinds": best,
        "load_average_1m_per_child": [round(x, 2) for x in loads], "machine": info})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", help="a trained run, to measure int8's held-out loss")
    parser.add_argument("--text", help="held-out text for --run (its last --characters): a "
                        "file, or a path under $WEFT_DATA")
    parser.add_argument("--characters", type=int, default=100_000)
    parser.add_argument("--kinds", help="compare paths on these CPU kinds: "
                        + ", ".join(CPU_KINDS) + " (comma-separated)")
    parser.add_argument("--rounds", type=int, default=3, help="with --kinds")
    parser.add_argument("--seconds", type=float, default=1.5, help="per path and round")
    parser.add_argument("--threads", type=int, help="with --kinds: cap PyTorch's threads")
    parser.add_argument("--kind-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kind_child:
        kind_child(args.seconds, args.run, args.threads)
        return
    if args.kinds:
        compare_kinds(args.kinds.split(","), args.rounds, args.seconds, args.run, args.threads)
        return
    text_file = None
    if args.run:  # checked before minutes of measuring, not after
        if not args.text:
            raise SystemExit("--run needs --text (held-out text for the model)")
        text_file = Path(args.text) if Path(args.text).is_file() else data_file(args.text)
    # Compile times are reported cold: Inductor's on-disk cache starts empty.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="weft-inductor-")
    info = machine()
    torch.manual_seed(0)
    tokenizer = CharTokenizer(CHARS)
    model = RNNLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=512,
                                         layers=2, embedding_dim=64)).eval()
    flops_per_token = 6.6e6
    peaks = {name: matmul_peak(dtype) for name, dtype in
             (("fp32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8))}
    results: dict[str, Any] = {}
    for streams, tokens in ((1, args.tokens), (64, args.tokens // 4)):
        # The baseline is naive stepping at its better thread count: at 1 stream, per-call
        # overhead can make 2 threads slower than 1.
        naive_by_threads = {}
        for threads in (1, 2):
            with cpu_threads(threads):
                naive_by_threads[threads] = best_of(args.repeats, naive_stepping, model,
                                                    streams, tokens)
        naive = max(naive_by_threads.values())
        row: dict[str, Any] = {"naive_nn_lstm_tokens_per_s": round(naive),
                               "naive_by_threads": {str(k): round(v) for k, v in
                                                    naive_by_threads.items()}}
        for quantize, compile in (("none", False), ("int8", False), ("none", True),
                                  ("int8", True)):
            # 1 stream: both thread counts, side by side (compiled: the default policy's 2);
            # 64 streams: all threads.
            for threads in ((1, 2) if streams == 1 and not compile else (None,)):
                key = ("float32" if quantize == "none" else "int8") + ("_compiled" * compile)
                key += f"_{threads}_threads" if threads else ""
                row[key] = {}
                if compile:  # the first call compiles (cold: a fresh cache, see main)
                    start = time.perf_counter()
                    weft_generation(model, tokenizer, streams, 16, quantize, threads, True)
                    row[key]["first_call_s"] = round(time.perf_counter() - start, 1)
                fast = best_of(args.repeats, weft_generation, model, tokenizer, streams,
                               tokens, quantize, threads, compile)
                peak = peaks["fp32" if quantize == "none" else "int8"]
                row[key].update({"tokens_per_s": round(fast), "speedup": round(fast / naive, 2),
                                 "fraction_of_matmul_peak":
                                     round(fast * flops_per_token / 1e9 / peak, 3)})
        results[f"{streams}_streams"] = row
    result: dict[str, Any] = {
        "benchmark": "generation_speed",
        "model": "2 x 512 LSTM, char vocabulary 65",
        "matmul_peak_gflops": {name: round(value, 1) for name, value in peaks.items()},
        **results,
        "targets": {"1_streams": ">= 5000 tokens/s and >= 25x naive",
                    "64_streams": ">= 30000 tokens/s"},
        "machine": info,
    }
    if args.run and text_file is not None:
        result["int8_quality"] = int8_quality(args.run, str(text_file), args.characters)
    write_result("generation_speed", result)


if __name__ == "__main__":
    main()
