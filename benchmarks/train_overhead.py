"""Training overhead: tokens/s of weft's trainer vs a bare PyTorch loop on the same model.

Both run the same model, batch, windows, optimizer, clipping and precision; the bare loop has
no progress bar, schedule, metrics or checks. Runs alternate (bare, weft, bare, weft, ...) so
that a change in machine load hits both, and the medians are compared.

    python -m benchmarks.train_overhead --steps 30 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from benchmarks.common import data_dir, machine, matmul_peak, write_result
from weft.config import ModelConfig, TrainConfig
from weft.data.corpus import read_text
from weft.data.stream import StreamBatches
from weft.device import autocast, resolve_precision
from weft.models.rnn_lm import RNNLanguageModel, detach_state
from weft.tokenizers import CharTokenizer
from weft.training.stream_task import StreamLMTask
from weft.training.trainer import Trainer


def corpus_ids() -> tuple[CharTokenizer, np.ndarray]:
    path = data_dir() / "tinyshakespeare" / "input.txt"
    text = read_text(path if path.exists() else "builtin:pydoc-topics")
    tokenizer = CharTokenizer.train([text])
    return tokenizer, tokenizer.encode(text)


def bare_loop(model_config: ModelConfig, train: TrainConfig, ids: np.ndarray, steps: int,
              precision: torch.dtype | None) -> float:
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = RNNLanguageModel(model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, fused=True)  # as weft's
    batches = StreamBatches(ids, train.batch_size, train.seq_len, device, "corpus")
    state = None
    start = 0.0
    for step in range(steps + 3):
        if step == 3:  # the first steps warm up allocators and kernels
            start = time.perf_counter()
        inputs, targets = batches.window(step % batches.num_windows)
        with autocast(device, precision):
            out = model(inputs, state, targets)
        state = detach_state(out.state)
        assert out.loss is not None
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * train.batch_size * train.seq_len / (time.perf_counter() - start)


def weft_trainer(model_config: ModelConfig, train: TrainConfig, tokenizer: CharTokenizer,
                 ids: np.ndarray, steps: int, precision: torch.dtype | None) -> float:
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = RNNLanguageModel(model_config)
    task = StreamLMTask(model, tokenizer, ids, ids[:0], train, device, precision)
    with tempfile.TemporaryDirectory() as tmp:
        warm = Trainer(task, TrainConfig(**{**train.__dict__, "max_steps": 3}), tmp,
                       device=device, precision=precision, quiet=True)
        warm.fit()
        config = TrainConfig(**{**train.__dict__, "max_steps": steps, "eval_every": 10**9})
        trainer = Trainer(task, config, tmp, device=device, precision=precision, quiet=True)
        result = trainer.fit()
    return result.tokens / result.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    info = machine()
    tokenizer, ids = corpus_ids()
    model_config = ModelConfig(vocab_size=tokenizer.vocab_size)
    train = TrainConfig()
    precision = resolve_precision(args.precision, torch.device("cpu"))
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(model_config, train, ids, args.steps, precision))
        ours.append(weft_trainer(model_config, train, tokenizer, ids, args.steps, precision))
    ratio = statistics.median(ours) / statistics.median(bare)
    # Training costs about 3x the forward pass, whose matrix products take 2 FLOP per
    # multiply-add: the recurrent layers' 4 gates x hidden x (input + hidden), then the head.
    m = model_config
    inputs = [m.embedding_dim or m.vocab_size] + [m.hidden_size] * (m.layers - 1)
    forward = 2 * (sum(4 * m.hidden_size * (n + m.hidden_size) for n in inputs)
                   + m.hidden_size * m.vocab_size)
    peak = matmul_peak(torch.float32)
    write_result("train_overhead", {
        "benchmark": "train_overhead",
        "model": f"{model_config.layers} x {model_config.hidden_size} {model_config.cell}",
        "batch": f"{train.batch_size} x {train.seq_len}",
        "precision": str(precision or "fp32"),
        "steps_per_run": args.steps,
        "bare_tokens_per_s": [round(x) for x in bare],
        "weft_tokens_per_s": [round(x) for x in ours],
        "weft_over_bare": round(ratio, 3),
        "train_mflop_per_token": round(3 * forward / 1e6, 2),
        "fp32_matmul_peak_gflops": round(peak, 1),
        "weft_fraction_of_fp32_peak": round(statistics.median(ours) * 3 * forward / 1e9 / peak, 3),
        "target": ">= 0.90",
        "machine": info,
    })


if __name__ == "__main__":
    main()
