"""Data-parallel training across processes started by ``torchrun``.

``torchrun --nproc-per-node N -m weft train ...`` starts N copies of weft with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` set; :func:`setup` joins them into one process group (NCCL on
GPUs, Gloo on CPUs). Each rank trains on its own share of the batch columns and
``DistributedDataParallel`` averages the gradients, so N ranks x ``--batch-size B`` take the same
steps as one process with batch N x B. Rank 0 alone writes the run directory and prints.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) nothing here does any work: the single-process
path stays as it was.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

from weft.errors import WeftError

T = TypeVar("T")

# Rank 0 evaluates and writes while the others wait in the next collective; a long validation
# must not trip the default timeout (10 minutes for NCCL).
TIMEOUT = dt.timedelta(minutes=60)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Distributed()


def from_environment() -> Distributed:
    """The rank and world size ``torchrun`` put in the environment."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise WeftError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (set by torchrun)"
                        ) from None
    return Distributed(rank, world, local) if world > 1 else SINGLE


def setup(device_name: str) -> tuple[Distributed, str]:
    """Join the process group; returns this rank and the device name it should use."""
    dist = from_environment()
    if not dist.enabled:
        return dist, device_name
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if use_cuda:
        if dist.local_rank >= torch.cuda.device_count():
            raise WeftError(f"local rank {dist.local_rank} has no GPU ({torch.cuda.device_count()}"
                            " visible): use --nproc-per-node up to the number of GPUs")
        device_name = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(device_name)
    elif device_name in ("auto", "cuda"):
        device_name = "cpu"
    if device_name.startswith("mps"):
        raise WeftError("torchrun training runs on CUDA GPUs (NCCL) or CPUs (Gloo), not MPS")
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if use_cuda else "gloo", timeout=TIMEOUT)
    return dist, device_name


def teardown(*, finished: bool = False) -> None:
    """Leave the process group; ``finished`` (all ranks got here) waits for every rank first.

    Gloo's worker threads must be joined while the interpreter is alive: a process group still
    referenced at exit (by a DDP reducer in a reference cycle, say) is destroyed during
    finalization, where joining aborts the process ("terminate called without an active
    exception"). So the cycles are collected, and the ranks pass a barrier so that none closes
    its connections while another is still in a collective. After an error the barrier is
    skipped: the other ranks may never reach it.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    if finished:
        torch_dist.barrier()
    gc.collect()
    torch_dist.destroy_process_group()


def _device() -> torch.device:
    """Where collective tensors live: the current GPU for NCCL, else the CPU."""
    if torch_dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (one small collective)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=_device())
    torch_dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def rank_seed(seed: int, rank: int) -> int:
    """Each rank's own seed: the same seed on every rank would draw the same dropout masks."""
    return seed + 7919 * rank


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel: calling it averages gradients over the ranks in
    backward(), and the wrapper copies rank 0's weights to every rank."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model,
                                   device_ids=[device.index] if device.type == "cuda" else None)


@dataclass(frozen=True)
class StepAgreement:
    """What every rank takes from one training step, the same on all of them."""

    stop: bool  # a stop was asked (a signal) on some rank: all stop at this step
    tokens: int  # tokens of the step over all ranks
    loss: float  # the step's loss averaged over the ranks (0 where it was skipped)
    clock: float  # rank 0's training time, which the time budget and schedule follow


def lost_a_rank(exc: BaseException, saved_step: int | None,
                resume_command: str) -> WeftError | None:
    """A collective that failed because another rank went away (killed, or stopped by
    torchrun after it failed), as one line saying what is kept; else None."""
    backend_error = getattr(torch_dist, "DistBackendError", ())
    text = str(exc).strip()
    if not (isinstance(exc, backend_error) or any(
            mark in text for mark in ("gloo", "Connection reset", "Connection closed", "NCCL"))):
        return None
    first = text.splitlines()[0][:200] if text else type(exc).__name__
    return WeftError(f"another rank stopped or lost its connection ({first}); the state saved "
                     f"at step {saved_step} is kept: continue with {resume_command}")


def agree_on_step(dist: Distributed, *, stop_requested: bool, tokens: int, loss: float,
                  clock: float) -> StepAgreement:
    """One small collective per step (see :class:`StepAgreement`)."""
    stop, tokens_all, loss_all, clock_all = all_sum(
        [float(stop_requested), float(tokens), loss, clock if dist.is_main else 0.0])
    return StepAgreement(bool(stop), int(tokens_all), loss_all / dist.world_size, clock_all)


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    box: list[Any] = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers, in place, on every rank."""
    for tensor in module.state_dict().values():
        torch_dist.broadcast(tensor, src=0)


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    out: list[Any] = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(out, obj)
    return out


def on_main(dist: Distributed, work: Callable[[], T]) -> T:
    """Run ``work`` on rank 0 and hand its result (or its WeftError) to every rank.

    Without this, a check that fails on rank 0 alone would leave the other ranks waiting for
    it in the next collective until the timeout.
    """
    if not dist.enabled:
        return work()
    result: Any = None
    error: str | None = None
    if dist.is_main:
        try:
            result = work()
        except WeftError as exc:
            error = str(exc)
    result, error = broadcast((result, error))
    if error is not None:
        raise WeftError(error)
    return result
