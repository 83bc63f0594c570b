"""max_copy everywhere text is generated: streamed texts are bounded as they are written (a
token that would complete a copy is drawn again), unstreamed ones generated again; both HTTP
APIs take it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import weft
from weft.data.corpus_index import CorpusIndex
from weft.generation.copy_guard import MAX_REDRAWS, CopyGuard, redraw
from weft.runs import COPY_INDEX

LIMIT = 12


def first_redraw(index: CorpusIndex, free: str, limit: int) -> int:
    """Where a text bounded as it is written first differs from the same draws unbounded: the
    copy's last character is drawn again there."""
    end = index.first_copy_end(free, limit)
    assert end is not None
    return end - 1


@pytest.fixture(scope="module")
def model(copier: Path) -> Any:
    return weft.load(copier, device="cpu")


def test_the_guard_watches_only_what_may_become_a_copy(model: Any) -> None:
    index = model.copy_index
    guard = CopyGuard(index, 10)
    assert guard.take("@@") is None and guard.end == ""  # never in the corpus
    assert guard.take("The quick") is None and guard.end == "The quick"
    assert guard.completes(" brown") and guard.end == "The quick" and not guard.cut
    assert not guard.completes("@ brown")
    assert guard.take(" brown") == 0 and guard.cut  # "The quick " completes 10 characters


def test_redraw_takes_the_first_draw_that_does_not_copy() -> None:
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    drawn: list[int] = []

    def greedy(masked: torch.Tensor) -> int:
        drawn.append(int(masked.argmax()))
        return drawn[-1]

    assert redraw(3, logits, lambda t: False, greedy, None) == 3 and drawn == []
    assert redraw(0, logits, lambda t: t in (0, 1), greedy, None) == 2 and drawn == [1, 2]
    assert logits[0, 0] == 5.0  # the caller's logits are left alone
    # Every token copies: each is tried once, then the last drawn is returned (the guard
    # cuts the text there); banned tokens are never tried.
    drawn.clear()
    banned = torch.tensor([False, False, False, False, True])
    assert redraw(0, logits, lambda t: True, greedy, banned) == 3 and drawn == [1, 2, 3]
    many = torch.arange(100.0).flip(0)[None, :]
    drawn.clear()
    redraw(0, many, lambda t: True, greedy, None)
    assert len(drawn) == MAX_REDRAWS


def test_a_streamed_text_never_shows_a_copy_and_goes_on_past_it(model: Any) -> None:
    index = model.copy_index
    options = {"max_new_tokens": 80, "num_return_sequences": 3, "seed": 0}
    free = model.samples(**options)
    assert all(s.longest_copy.chars >= LIMIT for s in free)  # the copier copies
    shown = ["", "", ""]

    def show(i: int, text: str) -> None:
        shown[i] += text

    bounded = model.samples(max_copy=LIMIT, on_text=show, **options)
    for sample, streamed in zip(bounded, shown, strict=True):
        assert streamed == sample.text and len(sample.text) == 80  # one token, one character
        assert sample.longest_copy == index.longest_copy(sample.text)
        assert sample.longest_copy.chars < LIMIT and not sample.cut and sample.tries == 1
        assert sample.text.finish_reason == "length"
    # The same draws as without the limit, up to the first token that would copy.
    at = min(first_redraw(index, s.text, LIMIT) for s in free)
    assert [s.text[:at] for s in bounded] == [s.text[:at] for s in free]
    assert any(b.text[at] != f.text[at] for b, f in zip(bounded, free, strict=True))
    single = "".join(model.stream(max_copy=LIMIT, max_new_tokens=80, seed=0))
    assert single == model.samples(max_copy=LIMIT, on_text=lambda i, t: None,
                                   max_new_tokens=80, seed=0)[0].text
    assert index.longest_copy(single).chars < LIMIT


def test_a_text_ends_before_a_copy_only_when_every_draw_copies(model: Any) -> None:
    # Every character of the corpus is a copy of 1 character: no draw can avoid it.
    shown: list[str] = []
    sample = model.samples(max_copy=1, on_text=lambda i, t: shown.append(t), seed=0,
                           max_new_tokens=20)[0]
    assert sample.text == "" and shown == [] and sample.cut
    assert sample.text.finish_reason == "stop"


def test_a_stop_string_and_the_guard_together(model: Any) -> None:
    index = model.copy_index
    options = {"max_new_tokens": 80, "seed": 3, "stop": ["fox"]}
    shown: list[str] = []
    bounded = model.samples(max_copy=LIMIT, on_text=lambda i, t: shown.append(t),
                            **options)[0]
    assert "".join(shown) == bounded.text and "fox" not in bounded.text
    assert index.longest_copy(bounded.text).chars < LIMIT


@pytest.fixture(scope="module")
def client(copier: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from weft.serving import create_app

    served = tmp_path_factory.mktemp("served")
    shutil.copytree(copier, served / "copier")
    shutil.copytree(copier, served / "old", ignore=shutil.ignore_patterns(COPY_INDEX))
    with TestClient(create_app(served)) as test_client:
        yield test_client


def events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines.get("event", "data"), json.loads(lines["data"])
                    if lines["data"] != "[DONE]" else None))
    return out


def test_weft_api_streams_under_max_copy(client: Any, model: Any) -> None:
    index = model.copy_index
    body = {"model": "copier", "max_new_tokens": 60, "seed": 0, "num_return_sequences": 2}
    free = client.post("/api/generate", json=body).json()["texts"]
    response = client.post("/api/generate", json={**body, "max_copy": LIMIT, "stream": True})
    assert response.status_code == 200
    received = events(response.text)
    streamed = ["", ""]
    for kind, data in received[:-1]:
        assert kind == "token"
        streamed[data["index"]] += data["text"]
    kind, done = received[-1]
    assert kind == "done" and done["texts"] == streamed
    # The batch draws what generate draws: the same texts as the Python API streams.
    assert streamed == [str(s.text) for s in model.samples(
        max_copy=LIMIT, on_text=lambda i, t: None, max_new_tokens=60, seed=0,
        num_return_sequences=2)]
    assert all(len(t) == 60 for t in streamed) and streamed != free
    at = min(first_redraw(index, t, LIMIT) for t in free)
    assert [t[:at] for t in streamed] == [t[:at] for t in free]
    assert all(c["chars"] < LIMIT for c in done["longest_copy"])
    assert done["cut"] == [False, False] and done["tries"] == [1, 1]


def test_openai_api_takes_max_copy_streamed_or_not(client: Any, model: Any) -> None:
    openai = pytest.importorskip("openai")
    index = model.copy_index
    api = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client,
                        max_retries=0)
    options = {"model": "copier", "prompt": ["", "The"], "max_tokens": 50, "n": 2, "seed": 0}
    free = [c.text for c in api.completions.create(**options).choices]
    done = api.completions.create(**options, extra_body={"max_copy": LIMIT})
    for choice in done.choices:
        extra = choice.model_extra
        assert extra["longest_copy"] == index.longest_copy(choice.text).to_dict()
        assert extra["longest_copy"]["chars"] < LIMIT and extra["tries"] >= 1
    assert any(c.model_extra["tries"] > 1 or c.model_extra["cut"] for c in done.choices)
    streamed = ["", "", "", ""]
    finished: dict[int, dict[str, Any]] = {}
    for chunk in api.completions.create(**options, stream=True,
                                        extra_body={"max_copy": LIMIT}):
        for choice in chunk.choices:
            streamed[choice.index] += choice.text
            if choice.finish_reason:
                finished[choice.index] = choice.model_extra
    assert streamed != free
    for i, text in enumerate(streamed):
        assert finished[i]["longest_copy"] == index.longest_copy(text).to_dict()
        assert finished[i]["longest_copy"]["chars"] < LIMIT
        assert not finished[i]["cut"] and finished[i]["tries"] == 1


def test_copy_meter_is_reported_in_an_openai_stream(client: Any, model: Any) -> None:
    body = {"model": "copier", "prompt": "", "max_tokens": 20, "seed": 1, "stream": True,
            "copy_meter": True}
    received = [data for _, data in events(client.post("/v1/completions", json=body).text)]
    text = "".join(d["choices"][0]["text"] for d in received[:-1])
    last = received[-2]["choices"][0]
    assert last["finish_reason"] and last["longest_copy"] == (
        model.copy_index.longest_copy(text).to_dict())
    assert "cut" not in last  # max_copy not asked for


@pytest.mark.parametrize(("body", "words"), [
    ({"model": "old", "max_copy": 5}, "copy meter is unavailable"),
    ({"model": "copier", "max_copy": 0}, "max_copy"),
    ({"model": "old", "max_copy": 5, "stream": True}, "copy meter is unavailable"),
])
def test_openai_api_refuses_a_max_copy_it_cannot_honour(client: Any, body: dict[str, Any],
                                                        words: str) -> None:
    response = client.post("/v1/completions", json={"prompt": "", **body})
    assert response.status_code == 400
    error = response.json()["error"]
    assert words in error["message"] and error["param"] == "max_copy"
    assert error["type"] == "invalid_request_error"
