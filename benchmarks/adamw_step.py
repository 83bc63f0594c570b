"""One AdamW step on the CPU: PyTorch's default (one tensor at a time) against the fused kernel.

The models are the ones weft trains: the default tagger with EWT's vocabulary sizes (15,734
words, 110 characters, 17 tags; the word embedding is most of its parameters) and
``builtin:english``'s shape (2 x 512 byte LSTM). Every parameter gets a random gradient, then
the two optimizers step in turn (one, the other, ...) so that a change in machine load hits
both; the medians are compared. Also checks that the two give the same weights after a few
steps (to float rounding).

    python -m benchmarks.adamw_step [--steps 30] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from benchmarks.common import machine, write_result
from weft.builtin import builtin_dir
from weft.models.rnn_lm import RNNLanguageModel
from weft.runs import read_run_config, run_config
from weft.tagging.model import BiLSTMTagger, TaggerModelConfig

KINDS = {"default": {"foreach": False}, "fused": {"fused": True}}


def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    tagger = BiLSTMTagger(TaggerModelConfig(num_words=15734, num_chars=110, num_tags=17))
    base = builtin_dir("builtin:english")
    lm = RNNLanguageModel(run_config(read_run_config(base), base).model)
    return {"tagger (EWT sizes)": tagger, "builtin:english (2 x 512 LSTM)": lm}


def time_steps(model: nn.Module, options: dict[str, bool], steps: int) -> float:
    """Milliseconds per optimizer step."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, **options)
    for p in params:
        p.grad = torch.randn_like(p)
    for _ in range(3):  # allocate the state, warm the kernels
        optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000


def max_difference(model: nn.Module, steps: int = 5) -> float:
    """Largest weight difference between the two kinds after ``steps`` equal-gradient steps."""
    copies = [[p.detach().clone().requires_grad_() for p in model.parameters()] for _ in KINDS]
    optimizers = [torch.optim.AdamW(c, lr=1e-3, **options)
                  for c, options in zip(copies, KINDS.values(), strict=True)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for params in zip(*copies, strict=True):
            grad = torch.randn(params[0].shape, generator=generator)
            for p in params:
                p.grad = grad.clone()
        for optimizer in optimizers:
            optimizer.step()
    return max((a - b).abs().max().item() for a, b in zip(*copies, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    results = {}
    for name, model in models().items():
        times: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for _ in range(args.repeats):
            for kind, options in KINDS.items():
                times[kind].append(time_steps(model, options, args.steps))
        medians = {kind: statistics.median(t) for kind, t in times.items()}
        results[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "ms_per_step": {kind: [round(t, 2) for t in ts] for kind, ts in times.items()},
            "median_ms": {kind: round(m, 2) for kind, m in medians.items()},
            "default_over_fused": round(medians["default"] / medians["fused"], 2),
            "max_weight_difference_after_5_steps": max_difference(model),
        }
    write_result("adamw_step", {"benchmark": "adamw_step", "threads": args.threads,
                                "steps_per_timing": args.steps, "results": results,
                                "machine": info})


if __name__ == "__main__":
    main()
