from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import torch

import weft
from weft.config import GenerationConfig
from weft.errors import WeftError
from weft.generation.sampling import filter_top_k, filter_top_p, next_tokens
from weft.language_model import LanguageModel


@pytest.fixture(scope="module")
def model(tiny_run: Path) -> LanguageModel:
    return weft.load(tiny_run, device="cpu")


def test_temperature_zero_is_deterministic(model: LanguageModel) -> None:
    a = model.generate("The", temperature=0, max_new_tokens=40, seed=1)
    b = model.generate("The", temperature=0, max_new_tokens=40, seed=2)
    assert a == b and len(a[0]) == 40


def test_top_k_one_equals_greedy(model: LanguageModel) -> None:
    greedy = model.generate("The", temperature=0, max_new_tokens=40)
    top1 = model.generate("The", temperature=1.0, top_k=1, max_new_tokens=40, seed=5)
    assert top1 == greedy


def test_a_seed_repeats_and_sequences_differ(model: LanguageModel) -> None:
    a = model.generate("", temperature=1.5, max_new_tokens=60, seed=7,
                       num_return_sequences=4)
    b = model.generate("", temperature=1.5, max_new_tokens=60, seed=7,
                       num_return_sequences=4)
    assert a == b and len(a) == 4
    assert len(set(a)) > 1


def test_stop_string_ends_output(model: LanguageModel) -> None:
    free = model.generate("The", temperature=0, max_new_tokens=80)[0]
    stop = free[5:8]
    stopped = model.generate("The", temperature=0, max_new_tokens=80, stop=[stop])[0]
    assert stopped == free[: free.index(stop)]


def test_streaming_gives_the_same_text(model: LanguageModel) -> None:
    whole = model.generate("Pack", temperature=0, max_new_tokens=50, stop=["jugs"])[0]
    assert "".join(model.stream("Pack", temperature=0, max_new_tokens=50, stop=["jugs"])) \
        == whole


def test_an_abandoned_stream_stops_its_thread(model: LanguageModel) -> None:
    before = set(threading.enumerate())
    pieces = model.stream("Pack", temperature=1.0, max_new_tokens=100_000, seed=1)
    assert next(pieces)
    workers = set(threading.enumerate()) - before
    assert workers
    pieces.close()  # as a caller's break or garbage collection does
    assert not any(worker.is_alive() for worker in workers)


def test_unknown_prompt_characters_warn_and_do_not_crash(
    model: LanguageModel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="weft"):
        text = model.generate("Zébra ☃", max_new_tokens=10, seed=0)[0]
    assert len(text) == 10
    assert "U+00E9" in caplog.text and "U+2603" in caplog.text


def test_specials_are_never_sampled(model: LanguageModel) -> None:
    text = model.generate("", temperature=3.0, max_new_tokens=300, seed=0)[0]
    assert "\ufffd" not in text


def test_sampling_filters() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_top_k(logits, 2)).tolist() == [[True, False, False, True]]
    probs = torch.softmax(logits, -1)[0]  # about 0.09, 0.67, 0.24, 0.03
    kept = ~torch.isinf(filter_top_p(logits, 0.8))
    assert kept.tolist() == [[False, True, True, False]] and probs[1] < 0.8
    assert (~torch.isinf(filter_top_p(logits, 0.5))).sum() == 1


@pytest.mark.parametrize("rows", [1, 64])  # one multinomial call; inverse-CDF search
def test_sampling_draws_each_token_at_its_probability(rows: int) -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0, 2.5, -1.0]]).repeat(rows, 1)
    banned = torch.tensor([False, False, False, False, False, True])
    config = GenerationConfig(temperature=0.7, top_k=4)
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([next_tokens(logits, config, banned=banned, generator=generator)
                       for _ in range(20_000 // rows)])
    expected = torch.softmax(filter_top_k(logits[:1, :5] / 0.7, 4), -1)[0]
    frequencies = torch.bincount(draws, minlength=6).float() / len(draws)
    assert frequencies[3] == 0 and frequencies[5] == 0  # outside the top 4, and banned
    torch.testing.assert_close(frequencies[:5], expected, atol=0.015, rtol=0)


def test_repetition_penalty_lowers_seen_tokens() -> None:
    logits = torch.tensor([[2.0, 1.9]])
    seen = torch.tensor([[True, False]])
    greedy = GenerationConfig(temperature=0)
    assert next_tokens(logits, greedy, seen=seen).item() == 0
    penalized = GenerationConfig(temperature=0, repetition_penalty=1.5)
    assert next_tokens(logits, penalized, seen=seen).item() == 1


@pytest.mark.parametrize("options", [dict(temperature=1e-200), dict(top_p=1e-300),
                                     dict(repetition_penalty=1e-40), dict(temperature=1e30),
                                     dict(repetition_penalty=1e30, temperature=1e-3)])
def test_extreme_sampling_values_do_not_crash(model: LanguageModel, options: dict) -> None:
    texts = model.generate("The", max_new_tokens=20, seed=0, **options)
    assert len(texts[0]) == 20


def test_twenty_records_each_end_at_the_end_token() -> None:
    from weft.config import ModelConfig
    from weft.generation import generate
    from weft.models.rnn_lm import RNNLanguageModel
    from weft.tokenizers import RECORD_SPECIALS, build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer("char", ["hello world"], specials=RECORD_SPECIALS)
    assert tokenizer.eos_id is not None
    model = RNNLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=8,
                                         embedding_dim=4)).eval()
    # Every step: end-of-record with probability about 3%, else a character, so each stream
    # ends after its own number of characters.
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(0.0)
        model.head.bias[tokenizer.eos_id] = -1.5
    config = GenerationConfig(max_new_tokens=500, temperature=1.0, seed=5,
                              num_return_sequences=20)
    texts = generate(model, tokenizer, "", config)
    # Each of the 20 streams stops at its own end token: lengths differ, none runs to 500,
    # and neither the end token nor any other special token is ever shown.
    assert len(texts) == 20
    assert all(len(t) < 500 for t in texts) and len({len(t) for t in texts}) > 3
    assert all(set(t) <= set("helo wrd") for t in texts)


def test_wrong_python_options_are_one_line_errors(model: LanguageModel) -> None:
    with pytest.raises(WeftError, match="unknown generation option 'bogus'"):
        model.generate("x", bogus=3)
    with pytest.raises(WeftError, match="temperature must be a number"):
        model.generate("x", temperature="hot")
    with pytest.raises(WeftError, match="one sequence, without num_return_sequences"):
        list(model.stream("x", num_return_sequences=2))
    with pytest.raises(WeftError, match="without copy_meter"):
        list(model.stream("x", copy_meter=True))
    assert list(model.stream("x", num_return_sequences=1, max_new_tokens=3))
    # One stop string given as a str is that string, not each of its characters.
    assert model.generation_config(stop="ab").stop == ("ab",)
