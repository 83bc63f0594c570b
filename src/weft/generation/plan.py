"""Choosing how to generate on this machine: float32 or int8 (and which int8 product), threads,
compiled or not.

Which path is fastest depends on the CPU, not only on the model. With AVX-512 VNNI, int8 through
oneDNN (``torch._int_mm``) is several times float32's speed; on an AVX2-only CPU the same product
is slower than float32, and FBGEMM's int8 product is the fast one (docs/benchmarks.md has both).
So the choice is made in two steps:

1. From what the CPU can do (``torch.backends.cpu.get_cpu_capability()`` and the VNNI / AMX
   flags in ``/proc/cpuinfo``): which int8 product this CPU should use, if any.
2. Where that does not settle it (float32 or int8, 1 or 2 threads), a short measurement when
   generation starts: a few dozen steps of each candidate, interleaved, best of three rounds.
   The result is kept on disk per machine, PyTorch and model shape (:func:`cache_file`), so a
   machine measures a model shape once (again if it was measured on a busy machine and the
   machine is quieter now).

What the caller set explicitly (``quantize`` other than ``auto``, ``threads``, ``compile``) is
kept. Models whose weights fit in a core's cache (:data:`SMALL_WEIGHT_BYTES`) are not measured:
their step is dispatch overhead, and float32 is as fast and exact. ``torch.compile`` is never
switched on here: its cold compile (30-55 s) costs more than a typical request gains.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from weft.config import GenerationConfig
from weft.device import cpu_threads
from weft.errors import WeftError
from weft.generation.quantized import Int8Stepper, fbgemm_available, int_mm_available
from weft.generation.stepper import RecurrentStepper
from weft.io import atomic_write_json, read_json
from weft.models.rnn_lm import RNNLanguageModel

log = logging.getLogger("weft")

# Below this many streams a CPU step is a few small matrix-vector products: two threads may
# split the weight reads and beat one, but more cost more in synchronization than they gain.
FEW_STREAMS = 8
FEW_STREAMS_THREADS = 2
# float32 weights read per step below which a model is not measured (a core's L2 holds them).
SMALL_WEIGHT_BYTES = 2 * 2**20
MEASURE_ROUNDS = 3
MEASURE_STEPS = 8  # per round and candidate, after 2 warm-up steps: 26 steps each
DROP_SLOWER = 3.0
MANY_STREAMS_MEASURED = 64
VNNI_FLAGS = ("avx512_vnni", "amx_int8")


@dataclass(frozen=True)
class CpuFacts:
    """What this CPU offers generation."""

    model: str
    capability: str  # PyTorch's kernels: AVX512, AVX2, DEFAULT, ... (ATEN_CPU_CAPABILITY)
    flags: frozenset[str]  # the VNNI / AMX flags of /proc/cpuinfo that it has

    @property
    def int8_vnni(self) -> bool:
        """Whether oneDNN's int8 product has VNNI or AMX here (it needs AVX-512 kernels)."""
        return self.capability.startswith("AVX512") and bool(self.flags)

    def describe(self) -> str:
        vnni = ", ".join(sorted(self.flags)) or "no VNNI/AMX"
        return f"{self.model}; PyTorch kernels {self.capability}; {vnni}"


@functools.cache
def cpu_facts() -> CpuFacts:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return CpuFacts(model, torch.backends.cpu.get_cpu_capability(),
                    frozenset(f for f in VNNI_FLAGS if f in flags))


def int8_kernel(facts: CpuFacts) -> str | None:
    """The int8 product for this CPU: oneDNN's with VNNI/AMX, else FBGEMM's (made for AVX2),
    else oneDNN's anyway; None when this PyTorch has neither."""
    if facts.int8_vnni and int_mm_available():
        return "int_mm"
    if fbgemm_available():
        return "fbgemm"
    return "int_mm" if int_mm_available() else None


@dataclass(frozen=True)
class GenerationPlan:
    """The path one generation takes, and why."""

    quantize: str  # "none" (float32) or "int8"
    kernel: str | None  # the int8 product, when quantize is int8
    compile: bool
    threads: int | None  # None: leave PyTorch's setting alone
    reasons: tuple[str, ...] = ()
    tokens_per_s: dict[str, float] = field(default_factory=dict)  # measured candidates

    def label(self) -> str:
        return _label(self.quantize, self.kernel, self.threads) + (
            ", compiled" if self.compile else "")

    def explain(self) -> str:
        return "\n".join([f"generation path: {self.label()}", *(f"  {r}" for r in self.reasons)])


def _label(quantize: str, kernel: str | None, threads: int | None) -> str:
    path = "float32" if quantize == "none" else f"int8 ({kernel})"
    count = f"{threads} thread{'s' if threads != 1 else ''}" if threads else "PyTorch's threads"
    return f"{path}, {count}"


def cache_file() -> Path:
    """Where measured choices are kept: ``$WEFT_CACHE_DIR``, else the user's cache folder."""
    base = os.environ.get("WEFT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "weft")
    return Path(base) / "generation-paths.json"


def weight_bytes(model: RNNLanguageModel) -> int:
    """float32 bytes of the weights one step reads (the recurrent layers and the head)."""
    return 4 * (sum(p.numel() for p in model.rnn.parameters()) + model.output_weight_count())


def choose_plan(model: RNNLanguageModel, config: GenerationConfig,
                threads: int | None = None) -> GenerationPlan:
    """The path for generating with ``config`` on the model's device (see the module doc)."""
    if model.device.type != "cpu":
        quantize = "none" if config.quantize == "auto" else config.quantize
        return GenerationPlan(quantize, "int_mm" if quantize == "int8" else None,
                              config.compile, threads, ("not a CPU: float32, uncompiled",))
    facts = cpu_facts()
    kernel = int8_kernel(facts)
    reasons = [f"CPU: {facts.describe()}; int8 product: "
               + (f"{kernel}" + (" (oneDNN without VNNI is slower than float32)"
                                 if kernel == "fbgemm" else "") if kernel else "none")]
    few = config.num_return_sequences < FEW_STREAMS
    limit = torch.get_num_threads()
    thread_options: list[int | None]
    if threads is not None:
        thread_options = [threads]
        reasons.append(f"threads: {threads}, as asked")
    elif few:
        thread_options = [*sorted({1, min(FEW_STREAMS_THREADS, limit)})]
    else:
        thread_options = [None]
        reasons.append(f"threads: PyTorch's {limit} ({config.num_return_sequences} streams "
                       "keep them busy)")
    quantize_options = [config.quantize] if config.quantize != "auto" else ["none", "int8"]
    if config.quantize != "auto":
        reasons.append(f"quantize: {config.quantize}, as asked")
    elif kernel is None or getattr(model.rnn, "nonlinearity", "tanh") != "tanh":
        quantize_options = ["none"]
        reasons.append("quantize: float32 (int8 needs an int8 product and states in [-1, 1])")
    candidates = [(q, t) for q in quantize_options for t in thread_options]
    measured: dict[str, float] = {}
    if len(candidates) > 1 and weight_bytes(model) < SMALL_WEIGHT_BYTES:
        candidates = [c for c in candidates if c[0] == quantize_options[0]][-1:]
        reasons.append(f"small model ({weight_bytes(model) / 2**20:.1f} MB of float32 "
                       "weights, cached by the CPU): float32, not measured")
    elif len(candidates) > 1:
        measured = _measured(model, facts, kernel, candidates, few)
        reasons.append(f"measured ({cache_file()}): " + ", ".join(
            f"{name} {speed:,.0f} tokens/s" for name, speed in measured.items()))
        best = max(measured, key=lambda name: measured[name])
        candidates = [c for c in candidates if _label(c[0], kernel, c[1]) == best]
    quantize, chosen_threads = candidates[0]
    compile_ = config.compile
    if not compile_:
        reasons.append("compile: off (a cold compile takes 30-55 s; --compile for long texts)")
    elif quantize == "int8" and kernel == "fbgemm":
        compile_ = False
        reasons.append("compile: off: FBGEMM's int8 product cannot be traced (uncompiled int8 "
                       "is the faster path on this CPU)")
        log.warning("--compile with int8 on this CPU runs uncompiled: FBGEMM's int8 product "
                    "cannot be traced by torch.compile")
    return GenerationPlan(quantize, kernel if quantize == "int8" else None, compile_,
                          chosen_threads, tuple(reasons), measured)


_memo: dict[str, dict[str, float]] = {}


def _measured(model: RNNLanguageModel, facts: CpuFacts, kernel: str | None,
              candidates: list[tuple[str, int | None]], few: bool) -> dict[str, float]:
    """tokens/s of each candidate, from the cache or measured now (and then cached)."""
    c = model.config
    streams = 1 if few else MANY_STREAMS_MEASURED
    names = [_label(q, kernel, t) for q, t in candidates]
    key = " | ".join([facts.describe(), f"torch {torch.__version__}",
                      f"{c.cell} {c.layers}x{c.hidden_size} embedding {c.embedding_dim} "
                      f"vocabulary {c.vocab_size}", f"{streams} streams", "; ".join(names)])
    if key in _memo:
        return _memo[key]
    path = cache_file()
    try:
        cached = read_json(path) if path.exists() else {}
    except (OSError, ValueError, WeftError):
        cached = {}  # a damaged cache is measured again and rewritten
    entry = cached.get(key) if isinstance(cached, dict) else None
    if (isinstance(entry, dict) and set(entry.get("tokens_per_s", {})) == set(names)
            and not (_busy(entry.get("load_average_1m")) and not _busy(_load()))):
        _memo[key] = entry["tokens_per_s"]
        return _memo[key]
    started = time.perf_counter()
    speeds = measure(model, kernel, candidates, streams)
    result = {name: round(speed, 1) for name, speed in zip(names, speeds, strict=True)}
    log.info("measured generation paths in %.1f s: %s", time.perf_counter() - started, result)
    cached = cached if isinstance(cached, dict) else {}
    cached[key] = {"tokens_per_s": result, "date": dt.datetime.now(dt.UTC).isoformat(
        timespec="seconds"), "load_average_1m": _load()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cached)
    except OSError as error:  # a read-only home still generates; it measures again next time
        log.warning("could not keep the generation path choice in %s: %s", path, error)
    _memo[key] = result
    return result


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _busy(load: object) -> bool:
    """More runnable processes than cores: a measurement then mostly measures the neighbours
    (2 threads collapse first), so it is taken again once the machine is quieter."""
    return isinstance(load, (int, float)) and load > (os.cpu_count() or 1)


@torch.no_grad()
def measure(model: RNNLanguageModel, kernel: str | None,
            candidates: list[tuple[str, int | None]], streams: int) -> list[float]:
    """Tokens/s of each (quantize, threads) candidate stepping ``streams`` sequences: rounds
    of :data:`MEASURE_STEPS` steps, candidates interleaved, best round of each (on a busy
    machine the best round is the least disturbed one). A candidate :data:`DROP_SLOWER` times
    slower than the best after a round runs no more rounds."""
    steppers: dict[str, Any] = {"none": RecurrentStepper(model)}
    if any(q == "int8" for q, _ in candidates):
        steppers["int8"] = Int8Stepper(model, kernel or "int_mm")
    tokens = torch.zeros(streams, dtype=torch.long)
    runs = []
    for quantize, threads in candidates:
        stepper = steppers[quantize]
        runs.append([stepper, threads, stepper.from_module_state(model.initial_state(streams))])
    best = [float("inf")] * len(candidates)
    for round_index in range(MEASURE_ROUNDS):
        for i, run in enumerate(runs):
            if round_index and best[i] > DROP_SLOWER * min(best):
                continue  # clearly slower: its remaining rounds would only cost time
            stepper, threads, states = run
            with cpu_threads(threads):
                if round_index == 0:
                    for _ in range(2):  # warm-up: first calls allocate and pack
                        _, states = stepper.step(tokens, states)
                start = time.perf_counter()
                for _ in range(MEASURE_STEPS):
                    _, states = stepper.step(tokens, states)
                best[i] = min(best[i], (time.perf_counter() - start) / MEASURE_STEPS)
            run[2] = states
    return [streams / seconds for seconds in best]
