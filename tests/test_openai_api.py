"""The OpenAI-compatible API, driven by the official ``openai`` client against a live server;
API keys; and ``GET /metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("openai")

import httpx
import openai

import weft
from weft.serving import Limits, create_app

from .serve_fixtures import LiveServer, loader, make_served

KEY = "sk-test-0123456789"


@pytest.fixture(scope="module")
def served(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_served(tmp_path_factory.mktemp("openai"), tiny_run)


@pytest.fixture(scope="module")
def server(served: Path) -> Iterator[LiveServer]:
    app = create_app(served, limits=Limits(max_new_tokens=60, max_sequences=4), loader=loader,
                     batch_process=True)  # as `weft serve` runs it
    with LiveServer(app) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Any:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def model(tiny_run: Path) -> Any:
    return weft.load(tiny_run, device="cpu")


def expected(model: Any, prompt: str, **options: Any) -> list[Any]:
    """What the Python API writes for an OpenAI request (OpenAI's defaults: temperature 1,
    top_p 1)."""
    return list(model.generate(prompt, **{"temperature": 1.0, "top_p": 1.0, **options}))


def test_models_lists_the_language_models_that_can_generate(client: Any) -> None:
    ids = sorted(m.id for m in client.models.list())
    # Not the tagger, the untrained run, the one without its tokenizer, the broken one.
    assert ids == ["exp/tiny2", "tiny"]
    assert client.models.retrieve("tiny").owned_by == "weft"
    for name in ("tagger", "untrained", "notokenizer", "broken", "nope"):  # left out: 404
        with pytest.raises(openai.NotFoundError) as error:
            client.models.retrieve(name)
        assert error.value.body["code"] == "model_not_found", name


def test_a_completion_is_what_the_python_api_writes(client: Any, model: Any) -> None:
    done = client.completions.create(model="tiny", prompt="The", max_tokens=30, seed=4,
                                     temperature=0.8)
    want = expected(model, "The", max_new_tokens=30, seed=4, temperature=0.8)
    assert [c.text for c in done.choices] == want
    assert done.choices[0].finish_reason == "length" and done.object == "text_completion"
    assert done.usage.prompt_tokens == 3 and done.usage.completion_tokens == 30
    assert done.usage.total_tokens == 33 and done.model == "tiny"
    assert len(client.completions.create(model="tiny", prompt="The").choices[0].text) == 16


def test_n_stop_list_and_seed(client: Any, model: Any) -> None:
    done = client.completions.create(model="tiny", prompt="The", max_tokens=40, n=2, seed=7,
                                     stop=["o", "z"], extra_body={"top_k": 5,
                                                                  "repetition_penalty": 1.2})
    want = expected(model, "The", max_new_tokens=40, num_return_sequences=2, seed=7,
                    stop=("o", "z"), top_k=5, repetition_penalty=1.2)
    assert [c.text for c in done.choices] == want and [c.index for c in done.choices] == [0, 1]
    assert [c.finish_reason for c in done.choices] == [t.finish_reason for t in want]
    assert "stop" in {c.finish_reason for c in done.choices}
    assert all("o" not in c.text for c in done.choices)
    assert done.usage.prompt_tokens == 3  # once, not once per choice


def test_streaming_sends_data_chunks_then_done(client: Any, server: LiveServer,
                                               model: Any) -> None:
    chunks = list(client.completions.create(model="tiny", prompt="The", max_tokens=25, n=2,
                                            seed=2, stream=True,
                                            stream_options={"include_usage": True}))
    texts = ["", ""]
    reasons: dict[int, str] = {}
    for chunk in chunks[:-1]:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    assert texts == expected(model, "The", max_new_tokens=25, num_return_sequences=2, seed=2)
    assert reasons == {0: "length", 1: "length"}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 50
    assert chunks[-1].usage.prompt_tokens == 3  # the prompt once, not once per choice
    body = {"model": "tiny", "prompt": "The", "max_tokens": 3, "stream": True}
    raw = httpx.post(f"{server.url}/v1/completions", json=body).text
    assert raw.startswith("data: {") and raw.endswith("data: [DONE]\n\n")


def test_a_list_of_prompts(client: Any, model: Any) -> None:
    done = client.completions.create(model="tiny", prompt=["The", "Pack"], max_tokens=10, n=2,
                                     seed=1)
    assert [c.index for c in done.choices] == [0, 1, 2, 3]
    assert [c.text for c in done.choices] == (
        expected(model, "The", max_new_tokens=10, num_return_sequences=2, seed=1)
        + expected(model, "Pack", max_new_tokens=10, num_return_sequences=2, seed=1))
    # Each prompt counted once (as OpenAI counts it), however many choices it has.
    assert done.usage.prompt_tokens == 3 + 4 and done.usage.completion_tokens == 40


@pytest.mark.parametrize(("options", "param"), [
    ({"logprobs": 2}, "logprobs"),
    ({"echo": True}, "echo"),
    ({"best_of": 3}, "best_of"),
    ({"suffix": "end"}, "suffix"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"extra_body": {"min_p": 0.1}}, "min_p"),
    ({"max_tokens": 61}, "max_tokens"),
    ({"n": 5}, "n"),
    ({"top_p": 2}, "top_p"),
])
def test_what_weft_cannot_do_is_a_400_naming_it(client: Any, options: dict[str, Any],
                                                param: str) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model="tiny", prompt="The", **options)
    assert error.value.status_code == 400
    assert error.value.body["param"] == param and param in error.value.body["message"]


def test_neutral_values_are_accepted_and_unknown_models_are_404(client: Any) -> None:
    done = client.completions.create(model="tiny", prompt="The", max_tokens=2, echo=False,
                                     best_of=1, presence_penalty=0, frequency_penalty=0)
    assert len(done.choices) == 1
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="The")
    with pytest.raises(openai.BadRequestError, match="POST /api/tag"):
        client.completions.create(model="tagger", prompt="The")


def test_what_is_not_offered_is_an_error_in_openais_shape(client: Any,
                                                          server: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    assert "POST /v1/completions" in error.value.body["message"]
    assert "no chat completions" in error.value.body["message"]
    wrong_method = httpx.get(f"{server.url}/v1/completions")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{server.url}/api/nope").json() == {"detail": "Not Found"}  # weft's API


def test_the_api_key_guards_every_api(served: Path) -> None:
    app = create_app(served, loader=loader, api_key=KEY)
    with LiveServer(app) as live:
        right = openai.OpenAI(base_url=f"{live.url}/v1", api_key=KEY, max_retries=0)
        wrong = openai.OpenAI(base_url=f"{live.url}/v1", api_key="sk-wrong", max_retries=0)
        assert right.completions.create(model="tiny", prompt="The", max_tokens=3).choices
        with pytest.raises(openai.AuthenticationError) as error:
            wrong.models.list()
        assert error.value.body["code"] == "invalid_api_key"
        for path in ("/api/models", "/api/health", "/metrics"):
            refused = httpx.get(live.url + path)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            allowed = httpx.get(live.url + path, headers={"authorization": f"Bearer {KEY}"})
            assert allowed.status_code == 200, path
        assert "detail" in httpx.get(live.url + "/api/models").json()
        assert httpx.get(live.url + "/").status_code == 200  # the page itself asks for the key


def test_metrics_count_requests_tokens_and_rows(client: Any, server: LiveServer) -> None:
    client.completions.create(model="tiny", prompt="The", max_tokens=5)
    httpx.get(server.url + "/no/such/path")
    text = httpx.get(server.url + "/metrics").text
    assert 'weft_requests_total{endpoint="/v1/completions",status="200"}' in text
    assert 'weft_requests_total{endpoint="other",status="404"}' in text
    assert 'weft_generated_tokens_total{model="tiny"}' in text
    for name in ("weft_generation_seconds_bucket", "weft_time_to_first_token_seconds_count",
                 "weft_queue_rows", "weft_batch_rows"):
        assert name in text
