"""Generation speed: weft's fused stepper vs naive ``nn.LSTM`` stepping, 1 and 64 streams.

Model: a 2 x 512 character LSTM (vocabulary 65, embedding 64), as in the classic char-rnn
recipes; speed does not depend on what the weights have learned, so they are random.
Also measures the machine's float32 (and bf16) matrix-product peak, to say how close to the
limit each figure is. A 2 x 512 LSTM step costs about 6.6 MFLOP per token.

    python -m benchmarks.generation_speed
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from benchmarks.common import machine, write_result
from weft.config import GenerationConfig, ModelConfig
from weft.generation import generate
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import CharTokenizer

CHARS = "".join(chr(c) for c in range(32, 96))  # 64 characters + <unk> = 65 tokens


def matmul_peak(dtype: torch.dtype, size: int = 1024, seconds: float = 1.5) -> float:
    """Sustained GFLOP/s of square matrix products."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


@torch.no_grad()
def naive_stepping(model: RNNLanguageModel, streams: int, tokens: int) -> float:
    """What a tutorial does: call the whole module (nn.LSTM inside) once per token."""
    generator = torch.Generator().manual_seed(0)
    token = torch.zeros(streams, 1, dtype=torch.long)
    state = None
    start = time.perf_counter()
    for _ in range(tokens):
        logits, _, state = model(token, state)
        probs = torch.softmax(logits[:, -1] / 0.8, dim=-1)
        token = torch.multinomial(probs, 1, generator=generator)
    return streams * tokens / (time.perf_counter() - start)


def weft_generation(model: RNNLanguageModel, tokenizer: CharTokenizer, streams: int,
                    tokens: int) -> float:
    config = GenerationConfig(max_new_tokens=tokens, temperature=0.8, seed=0,
                              num_return_sequences=streams)
    start = time.perf_counter()
    texts = generate(model, tokenizer, "", config)
    elapsed = time.perf_counter() - start
    return sum(len(t) for t in texts) / elapsed


def best_of(repeats: int, fn: Any, *args: Any) -> float:
    return max(fn(*args) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    info = machine()
    torch.manual_seed(0)
    tokenizer = CharTokenizer(CHARS)
    model = RNNLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=512,
                                         layers=2, embedding_dim=64)).eval()
    flops_per_token = 6.6e6
    peak_fp32 = matmul_peak(torch.float32)
    peak_bf16 = matmul_peak(torch.bfloat16)
    results: dict[str, Any] = {}
    for streams, tokens in ((1, args.tokens), (64, args.tokens // 4)):
        naive = best_of(args.repeats, naive_stepping, model, streams, tokens)
        fast = best_of(args.repeats, weft_generation, model, tokenizer, streams, tokens)
        results[f"{streams}_streams"] = {
            "naive_nn_lstm_tokens_per_s": round(naive),
            "weft_tokens_per_s": round(fast),
            "speedup": round(fast / naive, 2),
            "fraction_of_fp32_matmul_peak": round(fast * flops_per_token / 1e9 / peak_fp32, 3),
        }
    write_result("generation_speed", {
        "benchmark": "generation_speed",
        "model": "2 x 512 LSTM, char vocabulary 65",
        "matmul_peak_gflops": {"fp32": round(peak_fp32, 1), "bf16": round(peak_bf16, 1)},
        **results,
        "targets": {"1_streams": ">= 5000 tokens/s and >= 25x naive",
                    "64_streams": ">= 30000 tokens/s"},
        "machine": info,
    })


if __name__ == "__main__":
    main()
