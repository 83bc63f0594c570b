"""Choosing the device, the autocast precision and CPU threads."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from weft.errors import WeftError

log = logging.getLogger("weft")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, else Apple MPS, else the CPU; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise WeftError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WeftError("--device cuda was asked for, but no CUDA GPU is available; "
                        "use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise WeftError("--device mps was asked for but MPS is not available; use --device cpu")
    return device


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain float32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return None
    if precision in PRECISION_NEEDS:
        if not precision_runs_on(precision, device):
            raise WeftError(f"--precision {precision} needs {PRECISION_NEEDS[precision]}, which "
                            "this device is not; use --precision auto or fp32")
        return torch.float16 if precision == "fp16" else torch.bfloat16
    raise WeftError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")


def run_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a saved run's ``precision`` on ``device``, which need not be the
    device it was trained on. Weights load as float32 (stored so, or in bf16), so a run trained
    in fp16 (CUDA only) or bf16 loads and resumes anywhere: where the device cannot run that
    precision (fp16 off CUDA, bf16 on a CPU without bf16 instructions) it takes the device's
    own choice, as ``auto`` would."""
    if not precision_runs_on(precision, device):
        return resolve_precision("auto", device)
    return resolve_precision(precision, device)


# What a half precision needs. oneDNN has no bf16 LSTM/GRU kernel on a CPU without these
# instructions: a run there would fail at its first step with an opaque "primitive descriptor"
# error.
PRECISION_NEEDS = {"fp16": "a CUDA GPU", "bf16": "a CUDA GPU or a CPU with AVX512-BF16 or AMX"}


def precision_runs_on(precision: str, device: torch.device) -> bool:
    """Whether ``device`` can train and evaluate recurrent layers in ``precision``."""
    if precision == "fp16":
        return device.type == "cuda"
    if precision == "bf16" and device.type == "cpu":
        return cpu_supports_bf16()
    return True


def training_precision(precision: str, device: torch.device, *,
                       resume: bool) -> torch.dtype | None:
    """The autocast dtype to train in. A new run must be able to use what it asks for; a
    resumed run moved off CUDA continues in the device's own choice, with a warning."""
    if resume and not precision_runs_on(precision, device):
        chosen = run_precision(precision, device)
        log.warning("this run trained in %s, which %s cannot run; it continues in %s",
                    precision, device, "bf16" if chosen == torch.bfloat16 else "fp32")
        return chosen
    return resolve_precision(precision, device)


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise WeftError("--threads must be >= 1")
        torch.set_num_threads(threads)


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` CPU threads (None leaves the setting alone)."""
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
