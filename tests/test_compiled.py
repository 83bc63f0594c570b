"""Compiled generation (``--compile``): the same tokens as the uncompiled path, 8 per call."""

from __future__ import annotations

import logging

import pytest
import torch
from click.testing import CliRunner

import weft
from weft.cli.main import cli
from weft.config import GenerationConfig, ModelConfig
from weft.generation import compiled as compiled_module
from weft.generation import generate
from weft.generation.compiled import SamplingKnobs, sample
from weft.generation.sampling import next_tokens
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import CharTokenizer


@pytest.fixture(autouse=True)
def short_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiling is the slow part of these tests and grows with the chunk, so they compile
    chunks of 2 tokens (generation_speed.py measures the real 8)."""
    monkeypatch.setattr(compiled_module, "CHUNK_TOKENS", 2)


SETTINGS = [
    {},
    {"temperature": 1.7},
    {"temperature": 0.0},
    {"top_k": 3},
    {"top_k": 1},
    {"top_p": 0.6},
    {"top_k": 5, "top_p": 0.8, "repetition_penalty": 1.5},
    {"repetition_penalty": 0.5},
    {"temperature": 1e-200},  # greedy
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_branch_free_sampling_draws_what_next_tokens_draws(settings: dict) -> None:
    """next_tokens searches the running sums with one uniform per row;
    ``sample`` must pick the same tokens from the same uniforms, for every setting."""
    torch.manual_seed(0)
    rows, vocab = 16, 11
    config = GenerationConfig(**settings)
    logits = torch.randn(rows, vocab) * 3
    logits[:, 4] = logits[:, 2]  # ties at the top-k boundary must be kept alike
    banned = torch.zeros(vocab, dtype=torch.bool)
    banned[0] = True
    seen = torch.rand(rows, vocab) < 0.3
    for seed in range(20):
        expected = next_tokens(logits, config, seen=seen, banned=banned,
                               generator=torch.Generator().manual_seed(seed))
        uniforms = torch.rand(rows, 1, generator=torch.Generator().manual_seed(seed))
        knobs = SamplingKnobs.from_config(config, vocab, logits.device)
        drawn = sample(logits, uniforms.squeeze(1), banned, seen, knobs)
        assert torch.equal(drawn, expected), seed
        assert not banned[drawn].any()


def test_rows_with_no_probability_left_fall_back_to_greedy() -> None:
    logits = torch.full((2, 5), float("-inf"))
    logits[0, 3] = float("nan")
    logits[1] = torch.tensor([0.0, 1.0, float("inf"), 2.0, 0.5])
    knobs = SamplingKnobs.from_config(GenerationConfig(), 5, logits.device)
    drawn = sample(logits, torch.tensor([0.5, 0.5]), torch.zeros(5, dtype=torch.bool), None,
                   knobs)
    assert drawn[1] == 2  # +inf becomes the largest float: certain


def _model(cell: str = "lstm") -> tuple[RNNLanguageModel, CharTokenizer]:
    torch.manual_seed(3)
    tokenizer = CharTokenizer.train(["the cat sat on a mat.\n"])
    model = RNNLanguageModel(ModelConfig(cell=cell, vocab_size=tokenizer.vocab_size,
                                         hidden_size=16, embedding_dim=4, layers=2))
    return model.eval(), tokenizer


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_compiled_generation_gives_the_uncompiled_tokens(quantize: str) -> None:
    """Eight streams: the uncompiled path then draws the same uniforms, so with equal logits
    the texts are equal; 21 tokens end inside a chunk, so the surplus must be dropped."""
    model, tokenizer = _model()
    config = GenerationConfig(max_new_tokens=21, seed=5, num_return_sequences=8, top_k=6,
                              repetition_penalty=1.3, quantize=quantize)
    plain = generate(model, tokenizer, "the", config, threads=1)
    compiled = generate(model, tokenizer, "the", config.__class__(
        **{**config.__dict__, "compile": True}), threads=1)
    assert compiled == plain
    assert all(len(text) == 21 for text in compiled)


def test_compiling_failure_falls_back_to_the_same_function(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def broken(*args: object) -> None:
        calls.append(1)
        raise RuntimeError("no C++ compiler found\ndetails")

    monkeypatch.setattr(compiled_module, "_compiled", broken)
    model, tokenizer = _model("gru")
    config = GenerationConfig(max_new_tokens=30, seed=2, num_return_sequences=8, stop=("t",))
    plain = generate(model, tokenizer, "a", config)
    compiled_config = GenerationConfig(**{**config.__dict__, "compile": True})
    with caplog.at_level(logging.WARNING, logger="weft"):
        fallen_back = generate(model, tokenizer, "a", compiled_config)
        assert generate(model, tokenizer, "a", compiled_config) == fallen_back
    assert fallen_back == plain
    assert "no C++ compiler found" in caplog.text and "details" not in caplog.text
    assert len(calls) == 1  # the next generation does not try to compile again
    assert caplog.text.count("--compile failed") == 1


def test_compile_from_the_api_and_the_cli(tmp_path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on a mat.\n" * 100)
    run = weft.train(corpus, out=tmp_path / "run", hidden_size=16, embedding_dim=4, layers=2,
                     seq_len=16, max_steps=5, eval_every=5, threads=1, quiet=True)
    first = run.generate("the", max_new_tokens=30, seed=4, compile=True)
    assert first == run.generate("the", max_new_tokens=30, seed=4, compile=True)
    assert len(first[0]) == 30
    with pytest.raises(weft.WeftError, match="compile"):
        run.generate("the", compile="yes")
    result = CliRunner().invoke(cli, ["generate", str(tmp_path / "run"), "--prompt", "the",
                                      "--max-new-tokens", "30", "--seed", "4", "--compile",
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert result.output == "the" + first[0] + "\n"


def test_concurrent_first_calls_compile_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads asking for the compiled chunk at once must not each compile it (a race on the
    module's global)."""
    import threading
    import time

    calls: list[object] = []

    def slow_compile(function: object, **_: object) -> object:
        calls.append(function)
        time.sleep(0.05)
        return function

    monkeypatch.setattr(compiled_module, "_compiled", None)
    monkeypatch.setattr(compiled_module.torch, "compile", slow_compile)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(compiled_module.compiled_chunk()))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(got) == 4 and len(set(map(id, got))) == 1
