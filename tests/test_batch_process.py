"""The serving batch in a process of its own (weft.serving.batch_process): what crosses the
pipe, cancelling, errors, closing; the API through it is tested in test_serve.py."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import weft
from weft.config import GenerationConfig
from weft.errors import WeftError
from weft.generation.batch import BatchedGenerator, BatchRequest
from weft.generation.copy_guard import CopyGuard
from weft.serving.batch_process import BatchProcess
from weft.tokenizers.word import WordTokenizer


class Answer:
    """A request's results, waited for from the test's thread."""

    def __init__(self) -> None:
        self.result: Any = None
        self.chunks: list[tuple[int, str]] = []
        self.ready = threading.Event()

    def done(self, result: Any) -> None:
        self.result = result
        self.ready.set()

    def text(self, index: int, chunk: str) -> None:
        self.chunks.append((index, chunk))

    def wait(self) -> Any:
        assert self.ready.wait(60), "no answer from the batch"
        return self.result


def ask(batch: BatchProcess | BatchedGenerator, config: GenerationConfig, prompt: str = "The",
        streamed: bool = False, **fields: Any) -> tuple[BatchRequest, Answer]:
    answer = Answer()
    request = BatchRequest(prompt, config, answer.done,
                           on_text=answer.text if streamed else None, **fields)
    batch.submit(request)
    return request, answer


@pytest.fixture(scope="module")
def model(tiny_run: Path) -> Any:
    return weft.load(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def batch(model: Any) -> Iterator[BatchProcess]:
    counted: list[int] = []
    process = BatchProcess(model.module, model.tokenizer, quantize="none",
                           on_step=counted.append)
    process.counted = counted  # type: ignore[attr-defined]
    yield process
    process.close()


def test_texts_streams_and_counts_are_those_of_a_batch_in_a_thread(model: Any,
                                                                  batch: BatchProcess) -> None:
    config = GenerationConfig(max_new_tokens=30, temperature=0.9, top_k=5, seed=4,
                              num_return_sequences=2, stop=("zz",), quantize="none")
    local = BatchedGenerator(model.module, model.tokenizer, quantize="none")
    try:
        expected = ask(local, config)[1].wait()
    finally:
        local.close()
    request, answer = ask(batch, config, streamed=True)
    texts = answer.wait()
    assert texts == expected
    assert [t.finish_reason for t in texts] == [t.finish_reason for t in expected]
    assert [t.tokens for t in texts] == [t.tokens for t in expected]
    for i, text in enumerate(texts):
        assert "".join(chunk for index, chunk in answer.chunks if index == i) == text
    assert request.first_token_at is not None
    assert sum(batch.counted) >= 60  # type: ignore[attr-defined]


def test_cancelling_frees_the_rows_at_once(batch: BatchProcess) -> None:
    endless = GenerationConfig(max_new_tokens=10**6, quantize="none")
    request, answer = ask(batch, endless)
    while batch.rows == 0:  # it has joined the batch
        threading.Event().wait(0.01)
    request.cancel()
    texts = answer.wait()
    assert texts[0].finish_reason == "cancelled" and 0 < texts[0].tokens < 10**6
    cancelled_first = BatchRequest("The", endless, Answer().done)
    cancelled_first.cancel()  # before it was sent: answered at once, no rows
    later = Answer()
    cancelled_first.on_done = later.done
    batch.submit(cancelled_first)
    assert later.wait()[0].finish_reason == "cancelled"


def test_errors_come_back_as_errors(batch: BatchProcess) -> None:
    config = GenerationConfig(max_new_tokens=5, num_return_sequences=2, quantize="none")
    _, answer = ask(batch, config, prefixes=[[1], [1]])  # labels, but the model has no <bos>
    error = answer.wait()
    assert isinstance(error, WeftError) and "label tokens follow <bos>" in str(error)


def test_closing_answers_what_is_left_and_ends_the_process(model: Any) -> None:
    process = BatchProcess(model.module, model.tokenizer, quantize="none")
    _, answer = ask(process, GenerationConfig(max_new_tokens=10**6, quantize="none"))
    process.close()
    assert answer.wait()[0].finish_reason == "cancelled"
    assert process.closed and not process._process.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        ask(process, GenerationConfig(max_new_tokens=3))


def test_copy_guards_cross_and_report_their_cut(copier: Path) -> None:
    run = weft.load(copier, device="cpu")
    index = run.copy_index
    assert index is not None
    reopened = pickle.loads(pickle.dumps(index))
    assert reopened.run_dir == index.run_dir and reopened.find(b"the") >= 0
    process = BatchProcess(run.module, run.tokenizer, quantize="none")
    try:
        guards = [CopyGuard(index, 6), CopyGuard(index, 1)]
        config = GenerationConfig(max_new_tokens=200, temperature=0, quantize="none")
        texts = []
        for guard in guards:
            _, answer = ask(process, config, prompt="", streamed=True, guards=[guard])
            texts.append(answer.wait()[0])
    finally:
        process.close()
    # Drawn again where it would copy, so the text goes on; at 1 character every draw copies.
    assert not guards[0].cut and len(texts[0]) == 200
    assert index.longest_copy(texts[0]).chars < 6
    assert guards[1].cut and texts[1] == ""


def test_a_word_tokenizer_pickles_without_its_lock() -> None:
    tokenizer = WordTokenizer.train(["the cat sat on the mat ."] * 3)
    tokenizer.encode("the cat")  # fills the cache
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy.encode("the mat .").tolist() == tokenizer.encode("the mat .").tolist()
