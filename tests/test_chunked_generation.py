"""Tokens chosen on the device in chunks (the GPU's path) give what per-token stepping gives.

On a GPU, generation draws 8 tokens per call on the device and copies them to the host once
(no host sync per token). The same path runs here on the CPU with ``chunked=True``: with 8 or
more sequences its uniform draws are the very ones the per-token path makes, and greedy is
greedy, so the texts, stop strings and streamed pieces must be identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import weft
from weft.config import GenerationConfig
from weft.generation import compiled, generate
from weft.generation.generate import chooses_on_device

SETTINGS: list[dict[str, Any]] = [
    # Greedy, one sequence; 21 tokens end inside a chunk, so its surplus must be dropped.
    dict(temperature=0.0, max_new_tokens=21),
    dict(temperature=0.0, max_new_tokens=40, stop=("dog", "x")),
    dict(temperature=0.9, top_k=5, top_p=0.9, repetition_penalty=1.1, seed=3,
         num_return_sequences=8, max_new_tokens=37),
    dict(temperature=1.2, seed=7, num_return_sequences=9, max_new_tokens=30, stop=("o",)),
]


def _run(tiny_run: Path, chunked: bool, **settings: Any) -> tuple[list[str], list[list[str]]]:
    model = weft.load(tiny_run, device="cpu")
    config = GenerationConfig(**settings)
    pieces: list[list[str]] = [[] for _ in range(config.num_return_sequences)]
    texts = generate(model.module, model.tokenizer, "The ", config, chunked=chunked,
                     on_text=lambda i, piece: pieces[i].append(piece))
    return texts, pieces


@pytest.mark.parametrize("settings", SETTINGS)
def test_chunks_chosen_on_the_device_give_the_per_token_text(tiny_run: Path,
                                                             settings: dict[str, Any]) -> None:
    chunked, chunked_pieces = _run(tiny_run, True, **settings)
    per_token, per_token_pieces = _run(tiny_run, False, **settings)
    assert chunked == per_token
    # Streaming stays exact: the same pieces, adding up to the text; no stop string shows.
    assert chunked_pieces == per_token_pieces
    assert ["".join(p) for p in chunked_pieces] == chunked
    for stop in settings.get("stop", ()):
        assert all(stop not in piece for pieces in chunked_pieces for piece in pieces)


def test_cancelling_inside_a_chunk_stops_there(tiny_run: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_chunk = compiled.chunk

    def counted(*args: Any) -> Any:
        calls.append(1)
        return real_chunk(*args)

    monkeypatch.setattr(compiled, "chunk", counted)
    model = weft.load(tiny_run, device="cpu")
    config = GenerationConfig(temperature=0.0, max_new_tokens=50)
    polls = {"n": 0}

    def should_stop() -> bool:
        polls["n"] += 1
        return polls["n"] >= 5  # after the 5th token: mid-chunk

    text = generate(model.module, model.tokenizer, "The ", config, chunked=True,
                    should_stop=should_stop)[0]
    assert len(text) == 5
    assert len(calls) == 1  # the first token comes from the prompt; 4 more, in one chunk
    assert text == generate(model.module, model.tokenizer, "The ", config)[0][:5]


def test_tokens_are_chosen_on_the_device_off_the_cpu_only() -> None:
    assert chooses_on_device(torch.device("cuda"))
    assert chooses_on_device(torch.device("mps"))
    assert not chooses_on_device(torch.device("cpu"))
