"""The HTTP API of ``weft serve`` through FastAPI's test client: parameters, errors, limits,
streaming, path safety. Live-server behaviour (disconnects, busy) is in test_serve_live.py."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from click.testing import CliRunner
from fastapi.testclient import TestClient

import weft
from weft.cli.main import cli
from weft.config import GenerationConfig
from weft.generation import Completion
from weft.serving import Limits, create_app
from weft.serving.jobs import STREAM_INTERVAL, Job
from weft.serving.limits import Busy, Rows
from weft.serving.registry import RunRegistry, UnknownRun

from .serve_fixtures import fake_uvicorn, loader, make_served


@pytest.fixture(scope="module")
def served(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_served(tmp_path_factory.mktemp("serve"), tiny_run)


@pytest.fixture(scope="module", params=["thread", "process"])
def client(served: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """Every test of the API runs against both places a batch may step in."""
    limits = Limits(max_new_tokens=60, max_prompt_chars=50, max_sequences=3,
                    max_body_bytes=2000, max_rows=4)
    app = create_app(served, limits=limits, loader=loader,
                     batch_process=request.param == "process")
    with TestClient(app) as test_client:
        yield test_client


def gen(client: TestClient, **body: Any) -> Any:
    return client.post("/api/generate", json={"model": "tiny", **body})


def events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_models_lists_runs_under_the_folder_only(client: TestClient) -> None:
    data = client.get("/api/models").json()
    models = {m["name"]: m for m in data["models"]}
    # Not "escape" (leads outside), nor "broken" (its config.json is damaged).
    assert set(models) == {"tiny", "exp/tiny2", "tagger", "untrained", "notokenizer"}
    assert models["tiny"]["kind"] == "language-model" and models["tiny"]["ready"]
    assert models["tiny"]["not_ready"] is None
    assert models["tagger"]["kind"] == "tagger" and models["tagger"]["ready"]
    assert not models["untrained"]["ready"]
    assert models["untrained"]["not_ready"] == "no model.safetensors yet: train it first"
    # Any file a run needs to load, missing, makes it not ready (it is never loaded).
    assert not models["notokenizer"]["ready"]
    assert models["notokenizer"]["not_ready"] == "missing tokenizer.json"
    assert models["tiny"]["config"]["model"]["hidden_size"] == 32
    assert models["tiny"]["generation"]["max_new_tokens"] == 500
    assert models["tiny"]["steps"] == 30 and models["tiny"]["best_val_loss"] > 0
    assert data["limits"]["max_new_tokens"] == 60


def test_generate_matches_the_python_api(client: TestClient, tiny_run: Path) -> None:
    body = {"prompt": "The", "max_new_tokens": 25, "temperature": 0.9, "top_k": 5,
            "top_p": 0.9, "repetition_penalty": 1.1, "seed": 3, "num_return_sequences": 2}
    response = gen(client, **body)
    assert response.status_code == 200, response.text
    data = response.json()
    expected = weft.load(tiny_run, device="cpu").generate(**body)
    assert data["texts"] == expected and len(data["texts"]) == 2
    assert data["finish_reasons"] == [t.finish_reason for t in expected] == ["length"] * 2
    assert data["usage"] == {"prompt_tokens": 3,
                             "completion_tokens": sum(len(t) for t in expected)}
    assert data["prompt"] == "The" and data["model"] == "tiny" and not data["cancelled"]


def test_int8_generation_through_the_api(client: TestClient, tiny_run: Path) -> None:
    body = {"prompt": "The", "max_new_tokens": 20, "seed": 3, "quantize": "int8"}
    response = gen(client, **body)
    assert response.status_code == 200, response.text
    assert response.json()["texts"] == weft.load(tiny_run, device="cpu").generate(**body)
    assert gen(client, quantize="int4").status_code == 422


def test_stop_strings_and_greedy(client: TestClient) -> None:
    greedy = gen(client, prompt="The", temperature=0, max_new_tokens=40).json()["texts"][0]
    assert len(greedy) == 40
    stop = greedy[10:12]
    cut = gen(client, prompt="The", temperature=0, max_new_tokens=40, stop=[stop]).json()
    assert cut["texts"][0] == greedy[: greedy.index(stop)]
    assert cut["finish_reasons"] == ["stop"]


def test_a_nested_run_is_named_by_its_path(client: TestClient) -> None:
    response = client.post("/api/generate", json={"model": "exp/tiny2", "max_new_tokens": 5})
    assert response.status_code == 200 and len(response.json()["texts"][0]) == 5


def test_the_run_default_length_is_capped_by_the_server_limit(client: TestClient) -> None:
    text = gen(client, prompt="The").json()["texts"][0]  # the run's default is 500
    assert len(text) == 60  # a character model without end-of-sequence: exactly the cap


def test_streaming_sends_tokens_then_done(client: TestClient) -> None:
    body = {"prompt": "The", "max_new_tokens": 30, "seed": 9}
    response = gen(client, stream=True, **body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    received = events(response.text)
    kinds = [kind for kind, _ in received]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"token"} and len(kinds) >= 2
    streamed = "".join(data["text"] for kind, data in received if kind == "token")
    done = received[-1][1]
    assert streamed == done["texts"][0] == gen(client, **body).json()["texts"][0]
    assert done["usage"]["completion_tokens"] == 30 and done["finish_reasons"] == ["length"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"top_p": 3}, 422, "top_p"),
    ({"temperature": -1}, 422, "temperature"),
    ({"temperature": 3.4e38}, 422, "temperature"),  # inf in float32
    ({"temperature": 1e-200}, 422, "temperature"),  # logits / temperature overflow
    ({"repetition_penalty": 1e-40}, 422, "repetition_penalty"),
    ({"top_p": 1e-300}, 422, "top_p"),
    ({"seed": 2**64}, 422, "seed"),
    ({"max_new_tokens": "many"}, 422, "max_new_tokens"),
    ({"temprature": 1}, 422, "temprature"),
    ({"stop": "x"}, 422, "stop"),
    ({"model": None}, 422, "model"),
    ({"model": "nope"}, 404, "no run named 'nope'"),
    ({"model": "../tiny"}, 404, "no run named"),
    ({"model": "escape"}, 404, "no run named"),
    ({"model": "/etc"}, 404, "no run named"),
    ({"model": "untrained"}, 400, "train it first"),
    ({"model": "notokenizer"}, 400, "run 'notokenizer' is not ready (missing tokenizer.json)"),
    ({"model": "broken"}, 400, "unreadable config.json"),
    ({"model": "tagger"}, 400, "POST /api/tag"),
    ({"prompt": "x" * 51}, 422, "at most 50"),
    ({"max_new_tokens": 61}, 422, "at most 60"),
    ({"num_return_sequences": 4}, 422, "at most 3"),
    ({"stop": [""]}, 422, "non-empty"),
])
def test_bad_input_gets_a_4xx_with_a_message(client: TestClient, body: dict[str, Any],
                                             status: int, words: str) -> None:
    response = gen(client, **body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_malformed_bodies(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    bad_json = client.post("/api/generate", content=b"{nope", headers=headers)
    assert bad_json.status_code == 422 and bad_json.json()["detail"]
    not_json = client.post("/api/generate", content=b'{"model": "tiny"}',
                           headers={"content-type": "text/plain"})
    assert not_json.status_code == 415 and "application/json" in not_json.json()["detail"]
    assert client.post("/api/generate", json=[1, 2]).status_code == 422
    assert client.get("/api/generate").status_code == 405


def test_large_bodies_are_refused(client: TestClient) -> None:
    big = {"model": "tiny", "prompt": "x" * 3000}
    response = client.post("/api/generate", json=big)
    assert response.status_code == 413 and "2000 bytes" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no content-length: counted as it arrives
        yield b'{"model": "tiny", "prompt": "'
        yield b"x" * 3000
        yield b'"}'

    response = client.post("/api/generate", content=chunks(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    response = client.post("/v1/completions", json=big)  # in the shape of the API asked
    assert response.status_code == 413 and "2000 bytes" in response.json()["error"]["message"]


def test_tagging(client: TestClient) -> None:
    response = client.post("/api/tag", json={"model": "tagger", "text": "Ada met Bob"})
    assert response.status_code == 200, response.text
    assert response.json()["sentences"] == [{"words": ["Ada", "met", "Bob"],
                                             "tags": ["NOUN", "X", "NOUN"]}]
    wrong = client.post("/api/tag", json={"model": "tiny", "text": "Ada"})
    assert wrong.status_code == 400 and "POST /api/generate" in wrong.json()["detail"]
    long = client.post("/api/tag", json={"model": "tagger", "text": "x" * 51})
    assert long.status_code == 422


def test_metrics(client: TestClient, tiny_run: Path) -> None:
    data = client.get("/api/runs/exp/tiny2/metrics").json()
    lines = (tiny_run / "metrics.jsonl").read_text().splitlines()
    assert data["name"] == "exp/tiny2" and len(data["records"]) == len(lines)
    assert {"step", "elapsed", "train_loss", "val_loss"} <= set(data["records"][-1])
    assert client.get("/api/runs/untrained/metrics").json()["records"] == []
    for name in ("nope", "..", "../served/tiny", "escape", "%2e%2e/outside"):
        assert client.get(f"/api/runs/{name}/metrics").status_code == 404
    assert client.get("/api/runs/tiny").json()["kind"] == "language-model"


def test_schema_page_and_health(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/api/models", "/api/generate", "/api/tag", "/api/runs/{name}/metrics"} <= set(
        schema["paths"])
    props = schema["components"]["schemas"]["GenerateRequest"]["properties"]
    assert {"max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty",
            "num_return_sequences", "stop", "seed", "stream"} <= set(props)
    page = client.get("/")
    assert page.status_code == 200 and "weft" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "https://" not in page.text  # nothing is fetched from elsewhere
    for asset in ("app.js", "style.css"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and "https://" not in response.text
    assert client.get("/static/../app.py").status_code == 404
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["active"] == 0 and health["completed"] > 0


def test_only_allowed_host_headers(served: Path) -> None:
    app = create_app(served, allowed_hosts=["127.0.0.1", "localhost", "::1"])
    with TestClient(app, base_url="http://127.0.0.1:8000") as local:
        assert local.get("/api/health").status_code == 200
        for host in ("localhost", "LOCALHOST:8000", "[::1]:8000"):
            assert local.get("/api/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "127.0.0.1.evil.example:80", "[::2]", ""):
            refused = local.get("/api/health", headers={"host": host})
            assert refused.status_code == 400, host
            assert "Host header" in refused.json()["detail"]  # JSON, as every error is
        refused = local.get("/v1/models", headers={"host": "evil.example"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_host"


def test_registry_of_a_single_run(tiny_run: Path) -> None:
    registry = RunRegistry(tiny_run)
    assert list(registry.runs()) == [tiny_run.name]
    with pytest.raises(UnknownRun):
        registry.path("..")


def test_a_built_in_model_is_served_under_its_builtin_name() -> None:
    assert list(RunRegistry("builtin:english").runs()) == ["builtin:english"]
    with TestClient(create_app("builtin:english")) as served:
        assert [m["id"] for m in served.get("/v1/models").json()["data"]] == ["builtin:english"]
        assert served.get("/v1/models/builtin:english").status_code == 200
        body = {"model": "builtin:english", "prompt": "The", "max_tokens": 3}
        done = served.post("/v1/completions", json=body)
        assert done.status_code == 200 and done.json()["model"] == "builtin:english"
        assert served.get("/api/runs/builtin%3Aenglish").json()["name"] == "builtin:english"


def test_registry_caches_and_reloads_changed_weights(served: Path) -> None:
    loads: list[Path] = []

    def counting(path: Path, device: str) -> Any:
        loads.append(path)
        return object()

    registry = RunRegistry(served, loader=counting, max_loaded=1)
    first = registry.get("tiny")
    assert registry.get("tiny") is first and len(loads) == 1
    registry.get("exp/tiny2")  # evicts tiny (max_loaded=1)
    registry.get("tiny")
    assert len(loads) == 3


def test_registry_answers_loaded_models_without_loading(served: Path) -> None:
    # What the event loop asks on every request: no worker thread, no config.json read.
    registry = RunRegistry(served, loader=lambda path, device: object(), max_loaded=2)
    assert registry.loaded("tiny") is None  # not loaded yet: the caller loads it in a thread
    model = registry.get("tiny")
    assert registry.loaded("tiny") == (model, "language-model")
    weights = served / "tiny" / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert registry.loaded("tiny") is None  # changed weights: reloaded through get()
    assert registry.get("tiny") is not model


def test_a_stream_coalesces_tokens_after_the_first() -> None:
    # About a token a millisecond: the first goes at once, the rest in one event per
    # STREAM_INTERVAL (a socket write per token cost more than the token itself).
    took: list[float] = []

    async def scenario() -> list[tuple[int, str]]:
        job = Job("", GenerationConfig(max_new_tokens=200), streamed=True)

        def batch_thread() -> None:
            start = time.perf_counter()
            for _ in range(200):
                job.request.on_text(0, "x")  # type: ignore[misc]
                time.sleep(0.001)
            took.append(time.perf_counter() - start)
            job.request.on_done([Completion("x" * 200, "length", 200)])

        threading.Thread(target=batch_thread).start()
        return [piece async for piece in job.pieces()]

    pieces = asyncio.run(scenario())
    assert "".join(text for _, text in pieces) == "x" * 200
    assert pieces[0] == (0, "x")
    assert len(pieces) <= 2 + took[0] / STREAM_INTERVAL < 100  # not one event per token


def test_rows_bound_the_batch() -> None:
    async def scenario() -> None:
        rows = Rows(size=4, max_waiting=3, timeout=0.05)
        await rows.acquire(3)
        with pytest.raises(Busy):  # 2 more do not fit: waits 50 ms, then gives up
            await rows.acquire(2)
        assert rows.waiting == 0
        waiter = asyncio.ensure_future(rows.acquire(2))
        await asyncio.sleep(0)
        assert rows.waiting == 2
        with pytest.raises(Busy):  # 2 rows already wait: 2 more would be over 3
            await rows.acquire(2)
        first_come = asyncio.ensure_future(rows.acquire(1))  # fits, but waits its turn
        await asyncio.sleep(0)
        assert rows.active == 3 and rows.waiting == 3
        rows.release(3)
        await waiter
        await first_come
        assert rows.active == 3 and rows.waiting == 0
        rows.release(3)

    asyncio.run(scenario())


def test_cli_serve_flags(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--max-rows" in result.output
    result = runner.invoke(cli, ["serve", str(tmp_path), "--max-rows", "0"])
    assert result.exit_code == 2 and "must be > 0" in result.output
    result = runner.invoke(cli, ["serve", str(tmp_path / "missing")])
    assert result.exit_code == 2


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                        st.lists(st.text(max_size=3), max_size=3))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["prompt", "max_new_tokens", "temperature", "top_k",
                                        "top_p", "repetition_penalty", "num_return_sequences",
                                        "stop", "seed", "stream"]), JSON_VALUES, max_size=4))
def test_no_request_body_makes_a_server_error(client: TestClient, body: dict[str, Any]) -> None:
    if isinstance(body.get("max_new_tokens"), int) and not isinstance(
            body["max_new_tokens"], bool):
        body["max_new_tokens"] = min(body["max_new_tokens"], 20)  # keep it quick
    response = client.post("/api/generate", content=json.dumps({"model": "tiny", **body}),
                           headers={"content-type": "application/json"})
    assert response.status_code < 500, (body, response.text)
    assert response.status_code == 200 or response.json()["detail"]


def test_an_app_can_be_started_again(served: Path) -> None:
    app = create_app(served, loader=loader)
    for _ in range(2):  # the worker pool is shut down with the app, then made anew
        with TestClient(app) as again:
            assert gen(again, max_new_tokens=3).status_code == 200


def test_weft_serve_runs_the_app_on_uvicorn(tiny_run: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    started = fake_uvicorn(monkeypatch)
    result = CliRunner().invoke(cli, ["serve", str(tiny_run), "--port", "0",
                                      "--max-new-tokens", "7", "--threads", "1"])
    assert result.exit_code == 0, result.output
    host, port = started["address"]
    assert host == "127.0.0.1" and port > 0  # port 0: a free one, which the banner names
    assert "serving 1 run" in result.output and f"http://127.0.0.1:{port}/" in result.output
    with TestClient(started["app"], base_url="http://127.0.0.1:8123") as served:
        assert served.get("/api/models").json()["limits"]["max_new_tokens"] == 7
        assert served.get("/api/health", headers={"host": "evil.example"}).status_code == 400
        text = served.post("/api/generate", json={"model": tiny_run.name}).json()["texts"][0]
        assert len(text) == 7  # the server's cap, not the run's default of 500

    # Beyond loopback: any Host header, and a warning when there is no key.
    result = CliRunner().invoke(cli, ["serve", str(tiny_run), "--host", "0.0.0.0", "--port",
                                      "0"])
    assert result.exit_code == 0 and "without --api-key" in result.output
    with TestClient(started["app"]) as served:
        assert served.get("/api/health", headers={"host": "box.lan"}).status_code == 200


@pytest.mark.parametrize("port", ["65536", "99999", "-1"])
def test_weft_serve_refuses_a_port_out_of_range(tiny_run: Path, port: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    started = fake_uvicorn(monkeypatch)
    result = CliRunner().invoke(cli, ["serve", str(tiny_run), "--port", port])
    assert result.exit_code == 2 and not started
    assert result.output == f"error: --port must be from 0 to 65535 (0: any free port), " \
                            f"not {port}\n"


def test_weft_serve_on_a_port_in_use_says_so_before_anything_else(
        tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = fake_uvicorn(monkeypatch)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", str(tiny_run), "--port", str(port)])
    assert result.exit_code == 2 and not started and "serving" not in result.output
    assert result.output.startswith(f"error: port {port} is in use on 127.0.0.1")
    assert result.output.count("\n") == 1
    result = CliRunner().invoke(cli, ["serve", str(tiny_run), "--host", "192.0.2.1"])
    assert result.exit_code == 2 and result.output.startswith("error: cannot listen on")


def test_weft_serve_names_a_built_in_model_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    started = fake_uvicorn(monkeypatch)
    result = CliRunner().invoke(cli, ["serve", "builtin:english", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert list(started["app"].state.registry.runs()) == ["builtin:english"]


def test_the_prompt_is_cleaned_like_the_training_text(tiny_run: Path, tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    shutil.copytree(tiny_run, lower)
    config = json.loads((lower / "config.json").read_text())
    config["data"]["lowercase"] = True
    (lower / "config.json").write_text(json.dumps(config))
    with TestClient(create_app(lower)) as served:
        done = served.post("/api/generate", json={"model": "lower", "prompt": "THE",
                                                 "max_new_tokens": 3}).json()
    assert done["prompt"] == "the"


def test_a_trained_tagger_is_served(tmp_path: Path) -> None:
    """With the tagging package (branch tagger), a real tagger run through /api/tag."""
    pytest.importorskip("weft.tagging")
    train = tmp_path / "train.txt"
    train.write_text("\n".join(["The/DET dog/NOUN barks/VERB ./PUNCT",
                                "A/DET cat/NOUN sleeps/VERB ./PUNCT"] * 4) + "\n")
    out = tmp_path / "runs" / "pos"
    result = CliRunner().invoke(cli, [
        "tag", "train", str(train), "--out", str(out), "--max-steps", "10", "--quiet",
        "--word-dim", "8", "--char-dim", "4", "--char-hidden", "4", "--hidden", "8",
        "--layers", "1", "--batch-size", "4", "--eval-every", "5"])
    assert result.exit_code == 0, result.output
    with TestClient(create_app(tmp_path / "runs")) as served:
        assert served.get("/api/models").json()["models"][0]["kind"] == "tagger"
        response = served.post("/api/tag", json={"model": "pos", "text": "The dog barks. A cat"})
        assert response.status_code == 200, response.text
        sentences = response.json()["sentences"]
        assert [s["words"] for s in sentences] == [["The", "dog", "barks", "."], ["A", "cat"]]
        assert all(t in {"DET", "NOUN", "VERB", "PUNCT"} for s in sentences for t in s["tags"])
        metrics = served.get("/api/runs/pos/metrics").json()["records"]
        assert metrics and "step" in metrics[0]


def test_generation_keeps_the_servers_thread_count(served: Path, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    """Generating must not change the threads `weft serve --threads` set (generate() used to
    lower them for small batches, process-wide, from every concurrent worker)."""
    import torch

    from weft.generation.stepper import RecurrentStepper

    threads_seen: list[int] = []
    step = RecurrentStepper.step

    def recording_step(self: Any, *args: Any) -> Any:
        threads_seen.append(torch.get_num_threads())
        return step(self, *args)

    monkeypatch.setattr(RecurrentStepper, "step", recording_step)
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # as `weft serve --threads 3` does
    try:
        with TestClient(create_app(served, loader=loader)) as fresh:
            assert gen(fresh, max_new_tokens=5).status_code == 200
    finally:
        torch.set_num_threads(before)
    assert threads_seen and set(threads_seen) == {3}


def test_a_request_cannot_make_the_server_compile(client: TestClient) -> None:
    """Compiling costs tens of seconds: only the operator turns it on (weft serve --compile)."""
    response = gen(client, compile=True, max_new_tokens=3)
    assert response.status_code == 422 and "compile" in response.json()["detail"]


def test_weft_serve_compile_compiles_each_batch_once(tiny_run: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from weft.generation import compiled

    compiled_functions: list[Any] = []

    def counting_compile(function: Any, **_: Any) -> Any:
        compiled_functions.append(function)
        return function

    monkeypatch.setattr(compiled.torch, "compile", counting_compile)
    started = fake_uvicorn(monkeypatch)
    # In a thread, where the counting stand-in reaches (a batch process compiles its own).
    result = CliRunner().invoke(cli, ["serve", str(tiny_run), "--compile", "--batch-in",
                                      "thread", "--port", "0"])
    assert result.exit_code == 0, result.output
    with TestClient(started["app"], base_url="http://127.0.0.1:8000") as served:
        for _ in range(3):
            response = served.post("/api/generate", json={"model": tiny_run.name,
                                                          "max_new_tokens": 5})
            assert response.status_code == 200
    assert len(compiled_functions) == 1  # the model's batch, once; no request compiles again
    result = CliRunner().invoke(cli, ["serve", str(tiny_run), "--compile", "--device", "cuda"])
    assert result.exit_code == 2 and "on a CPU" in result.output


@pytest.mark.slow
def test_a_compiled_batch_writes_what_the_uncompiled_one_writes(served: Path) -> None:
    from weft.generation.compiled import compiled_step

    body = {"model": "tiny", "prompt": "The", "max_new_tokens": 30, "seed": 5,
            "num_return_sequences": 3, "temperature": 0}
    with TestClient(create_app(served, loader=loader)) as plain:
        expected = gen(plain, **body).json()["texts"]
    with TestClient(create_app(served, loader=loader, compile_step=compiled_step)) as fast:
        assert gen(fast, **body).json()["texts"] == expected
