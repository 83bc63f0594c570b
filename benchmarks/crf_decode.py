"""CRF decoding time of one very long sentence: the per-step PyTorch loop weft used before,
against today's NumPy steps (Viterbi) and forward-backward (marginals).

The old code is kept here (:func:`loop_decode`, :func:`autograd_marginals`) as the reference:
tests/test_tagging_spans.py checks that today's decoding gives the same tags. Random emissions
and weights: the time does not depend on them. One thread, as ``weft tag predict --threads 1``.

    python -m benchmarks.crf_decode [--tokens 50000] [--tags 17]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from benchmarks.common import machine, write_result
from weft.tagging.crf import CRF


def loop_decode(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """weft's Viterbi until this benchmark: PyTorch ops per time step, unconstrained."""
    batch, length, _ = emissions.shape
    score = crf.start + emissions[:, 0]
    history = []
    for t in range(1, length):
        total = score.unsqueeze(2) + crf.transitions
        best, index = total.max(dim=1)
        step = best + emissions[:, t]
        keep = mask[:, t : t + 1]
        score = torch.where(keep, step, score)
        identity = torch.arange(crf.num_tags, device=emissions.device).expand_as(index)
        history.append(torch.where(keep, index, identity))
    score = score + crf.end
    best_last = score.argmax(dim=1)
    path = [best_last]
    for index in reversed(history):
        best_last = index.gather(1, best_last.unsqueeze(1)).squeeze(1)
        path.append(best_last)
    path.reverse()
    tags = torch.stack(path, dim=1) if length > 1 else best_last.unsqueeze(1)
    return tags * mask.long() if batch else tags


def autograd_marginals(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """weft's marginals until this benchmark: the gradient of log Z, in float64."""
    with torch.enable_grad():
        em = emissions.detach().double().requires_grad_(True)
        (grad,) = torch.autograd.grad(crf.log_partition(em, mask).sum(), em)
    return (grad * mask.unsqueeze(2)).float()


def _seconds(func: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=50_000)
    parser.add_argument("--tags", type=int, default=17, help="17: the UD UPOS tag set")
    parser.add_argument("--skip-old-marginals", action="store_true",
                        help="skip the slowest measurement (the old marginals)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    crf = CRF(args.tags)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(1, args.tokens, args.tags)
    mask = torch.ones(1, args.tokens, dtype=torch.bool)
    info = machine()
    with torch.no_grad():
        old_decode, old_tags = _seconds(loop_decode, crf, emissions, mask)
        new_decode, new_tags = _seconds(crf.decode, emissions, mask)
    new_marginals, new_probs = _seconds(crf.marginals, emissions, mask)
    result: dict[str, Any] = {
        "benchmark": "crf_decode", **info, "threads": 1, "tokens": args.tokens,
        "tags": args.tags,
        "viterbi_seconds_before": round(old_decode, 3),
        "viterbi_seconds_after": round(new_decode, 3),
        "viterbi_same_tags": bool(torch.equal(old_tags, new_tags)),
        "marginals_seconds_after": round(new_marginals, 3),
    }
    if not args.skip_old_marginals:
        old_marginals, old_probs = _seconds(autograd_marginals, crf, emissions, mask)
        result["marginals_seconds_before"] = round(old_marginals, 3)
        result["marginals_max_abs_difference"] = float((old_probs - new_probs).abs().max())
    write_result("crf_decode", result)


if __name__ == "__main__":
    main()
