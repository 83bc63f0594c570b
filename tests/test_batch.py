"""The batch shared by concurrent requests (weft.generation.batch): requests join and leave at
any step, each with its own settings, and a seeded request writes what it writes alone."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import weft
from weft.config import GenerationConfig
from weft.generation import Completion, generate
from weft.generation.batch import BatchedGenerator, BatchRequest
from weft.language_model import LanguageModel

from .serve_fixtures import wait_until


@pytest.fixture(scope="module")
def model(tiny_run: Path) -> LanguageModel:
    return weft.load(tiny_run, device="cpu")


class Waiter:
    """Collects one request's result from the batch's thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: list[Completion] | BaseException | None = None
        self.chunks: dict[int, list[str]] = {}

    def on_done(self, result: list[Completion] | BaseException) -> None:
        self.result = result
        self.done.set()

    def on_text(self, index: int, chunk: str) -> None:
        self.chunks.setdefault(index, []).append(chunk)

    def texts(self) -> list[Completion]:
        assert self.done.wait(30), "the batch never finished this request"
        assert isinstance(self.result, list), self.result
        return self.result


def submit(batch: BatchedGenerator, prompt: str, **settings: Any) -> tuple[BatchRequest, Waiter]:
    waiter = Waiter()
    request = BatchRequest(prompt, GenerationConfig(**settings), waiter.on_done,
                           on_text=waiter.on_text)
    batch.submit(request)
    return request, waiter


SETTINGS: list[dict[str, Any]] = [
    {"seed": 1, "max_new_tokens": 40, "temperature": 0.9, "num_return_sequences": 2},
    {"seed": 2, "max_new_tokens": 25, "top_k": 5, "stop": ("o",)},
    {"seed": 3, "max_new_tokens": 60, "top_p": 0.8, "repetition_penalty": 1.3},
    {"seed": 4, "max_new_tokens": 30, "temperature": 0},
    {"seed": 5, "max_new_tokens": 50, "temperature": 0.7, "num_return_sequences": 3},
]


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_a_seeded_request_writes_the_same_text_alone_or_batched(model: LanguageModel,
                                                                quantize: str) -> None:
    prompts = ["The", "Pack my", "", "quick", "box"]
    alone = [generate(model.module, model.tokenizer, prompt,
                      GenerationConfig(quantize=quantize, **settings))
             for prompt, settings in zip(prompts, SETTINGS, strict=True)]
    batch = BatchedGenerator(model.module, model.tokenizer, quantize=quantize)
    try:
        # All at once: they join together, run side by side and leave at different steps.
        waiters = [submit(batch, prompt, **settings)[1]
                   for prompt, settings in zip(prompts, SETTINGS, strict=True)]
        together = [w.texts() for w in waiters]
        # And one joining a batch that is already running (a long request ahead of it).
        _, long = submit(batch, "The", max_new_tokens=400, seed=9)
        late = submit(batch, prompts[2], **SETTINGS[2])[1].texts()
        long.texts()
    finally:
        batch.close()
    assert together == alone
    assert late == alone[2]
    for texts, expected in zip(together, alone, strict=True):
        assert [t.finish_reason for t in texts] == [t.finish_reason for t in expected]
        assert [t.tokens for t in texts] == [t.tokens for t in expected]
    assert {t.finish_reason for t in together[1]} == {"stop"}  # the stop string "o"
    assert {t.finish_reason for t in together[0]} == {"length"}


def test_streamed_chunks_add_up_to_the_texts(model: LanguageModel) -> None:
    batch = BatchedGenerator(model.module, model.tokenizer)
    try:
        _, waiter = submit(batch, "The", seed=3, max_new_tokens=30, num_return_sequences=2,
                           stop=("e",))
        texts = waiter.texts()
    finally:
        batch.close()
    assert ["".join(waiter.chunks.get(i, [])) for i in range(2)] == texts


def test_a_cancelled_request_leaves_the_batch_at_once(model: LanguageModel) -> None:
    batch = BatchedGenerator(model.module, model.tokenizer)
    try:
        endless, waiter = submit(batch, "The", max_new_tokens=10**9, num_return_sequences=3)
        wait_until(lambda: batch.rows == 3, 10)
        other = submit(batch, "The", seed=1, max_new_tokens=20)[1]
        endless.cancel()
        texts = waiter.texts()
        assert {t.finish_reason for t in texts} == {"cancelled"}
        assert len(other.texts()[0]) == 20
        wait_until(lambda: batch.rows == 0, 10)  # set just after the results are handed out
    finally:
        batch.close()


def test_a_request_that_fails_to_start_fails_alone(model: LanguageModel) -> None:
    batch = BatchedGenerator(model.module, model.tokenizer)
    try:
        _, bad = submit(batch, "The", top_p=5.0)
        _, good = submit(batch, "The", seed=1, max_new_tokens=5)
        assert bad.done.wait(30) and "top-p" in str(bad.result)
        assert len(good.texts()[0]) == 5
    finally:
        batch.close()


def test_a_prompt_primed_lately_is_not_primed_again(model: LanguageModel,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from weft.generation import batch_rows

    settings = {"seed": 7, "max_new_tokens": 20, "num_return_sequences": 2}
    alone = generate(model.module, model.tokenizer, "Pack my", GenerationConfig(**settings))
    monkeypatch.setattr(batch_rows, "PRIMED_PROMPTS", 2)
    batch = BatchedGenerator(model.module, model.tokenizer)
    passes: list[int] = []
    forward = batch.model.forward
    monkeypatch.setattr(batch.model, "forward", lambda ids, *a: passes.append(ids.size(0))
                        or forward(ids, *a))
    try:
        for prompt in ["Pack my", "Pack my", "The", "box", "Pack my"]:
            texts = submit(batch, prompt, **settings)[1].texts()
            if prompt == "Pack my":
                assert texts == alone  # primed or kept, the same text
    finally:
        batch.close()
    # "Pack my" primed, kept, primed again once two other prompts pushed it out.
    assert len(passes) == 4


def test_uniforms_drawn_in_blocks_are_those_drawn_a_step_at_a_time() -> None:
    import torch

    from weft.generation.batch_rows import Uniforms

    uniforms = Uniforms(torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    for _ in range(150):  # across blocks
        assert uniforms.take(3) == torch.rand(3, generator=generator).tolist()


@pytest.mark.parametrize("kind", ["byte", "word"])
def test_text_decoded_at_the_end_is_the_text_decoded_as_it_came(kind: str) -> None:
    """An unstreamed request in the batch decodes its tokens only when it ends."""
    from weft.generation.generate import TextState
    from weft.tokenizers.byte import ByteTokenizer
    from weft.tokenizers.word import WordTokenizer

    text = 'He said "café, naïve" — then left . ( quietly ) ok'
    tokenizer = (ByteTokenizer(specials=["<eos>"]) if kind == "byte"
                 else WordTokenizer.train([text], specials=["<unk>", "<eos>"]))
    ids = tokenizer.encode(text).tolist()
    eos = tokenizer.eos_id
    for cut in (len(ids), 7):  # the whole text; a piece ending inside a character
        for end_token in (False, True):
            eager, lazy = TextState(tokenizer, ()), TextState(tokenizer, (), lazy=True)
            for state in (eager, lazy):
                for token in ids[:cut] + ([eos] if end_token else []):
                    state.push(token, eos)
                state.finish()
            assert lazy.lazy and lazy.completion(False) == eager.completion(False)
            assert lazy.completion(False).finish_reason == eager.completion(False).finish_reason
            assert lazy.tokens == eager.tokens
    assert not TextState(tokenizer, ("x",), lazy=True).lazy  # a stop string reads the text


def test_a_request_joining_as_the_batch_closes_is_cancelled(model: LanguageModel,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """close() cancels what waits and what runs; a request between the two (taken from the
    queue, not yet in the batch) must not run on to its length."""
    batch = BatchedGenerator(model.module, model.tokenizer)
    join = batch._join
    closing: list[threading.Thread] = []

    def join_as_it_closes(requests: list[BatchRequest]) -> None:
        closing.append(threading.Thread(target=batch.close))
        closing[0].start()
        wait_until(lambda: batch.closed, 10)
        join(requests)

    monkeypatch.setattr(batch, "_join", join_as_it_closes)
    _, waiter = submit(batch, "The", max_new_tokens=100_000)
    assert waiter.texts()[0].finish_reason == "cancelled"
    closing[0].join(10)
