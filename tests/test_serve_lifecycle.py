"""What ``weft serve`` keeps while it runs: a batch for each loaded model only (a run still
training reloads its weights; the old model's batch ends after its last request), runs that
cannot be loaded logged in one line, and the limits it starts with."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from click.testing import CliRunner
from fastapi.testclient import TestClient

import weft
from weft.cli.main import cli
from weft.config import GenerationConfig
from weft.errors import WeftError
from weft.serving import Limits, create_app
from weft.serving.jobs import Generations

from .serve_fixtures import fake_uvicorn, wait_until


def newer_weights(run: Path) -> None:
    """As a run still training does when it saves better weights."""
    weights = run / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_a_replaced_models_batch_closes_when_its_last_job_ends(tiny_run: Path) -> None:
    old, new = weft.load(tiny_run), weft.load(tiny_run)
    held = {id(old)}
    generations = Generations(Limits(), holds=lambda model: id(model) in held)

    async def scenario() -> None:
        config = GenerationConfig(max_new_tokens=40, seed=1)
        running = await generations.start(old, "The", config)
        held.clear()
        held.add(id(new))  # the weights changed: the registry now holds the new model
        waiting = await generations.start(new, "The", config)
        old_batch, new_batch = generations.batches()
        assert not old_batch.closed  # its request is still generating
        texts = await running.future
        assert texts[0].finish_reason == "length" and texts[0].tokens == 40  # not cut short
        wait_until(lambda: old_batch.closed, 5)
        assert generations.batches() == [new_batch]
        await waiting.future
        assert not new_batch.closed  # idle, but its model is loaded: kept for the next request

    try:
        asyncio.run(scenario())
    finally:
        generations.close()


def test_reloads_and_evictions_leave_one_batch_process_per_loaded_model(
        tiny_run: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        shutil.copytree(tiny_run, runs / name)
    app = create_app(runs, limits=Limits(max_loaded=1), batch_process=True)
    before = set(multiprocessing.active_children())

    def batch_processes() -> int:
        return len(set(multiprocessing.active_children()) - before)

    with TestClient(app) as client:
        # a, a with new weights twice, then b in its place (max_loaded: one model at a time).
        for step, name in enumerate(("a", "a", "a", "b")):
            if step in (1, 2):
                newer_weights(runs / "a")
            done = client.post("/api/generate", json={"model": name, "max_new_tokens": 5})
            assert done.status_code == 200
            # The process of the model no longer loaded ends (in about a second).
            wait_until(lambda: batch_processes() == 1, 20)
    assert batch_processes() == 0


def test_a_run_missing_a_file_is_not_ready_and_never_loaded(tiny_run: Path,
                                                            tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("tiny", "bare"):
        shutil.copytree(tiny_run, runs / name)
    (runs / "bare" / "model.safetensors").unlink()
    (runs / "bare" / "tokenizer.json").unlink()
    loads: list[Path] = []

    def loader(path: Path, device: str) -> Any:
        loads.append(path)
        return weft.load(path, device=device)

    with TestClient(create_app(runs, loader=loader)) as client:
        listed = {m["name"]: m for m in client.get("/api/models").json()["models"]}
        assert listed["bare"]["not_ready"] == \
            "missing tokenizer.json and model.safetensors"
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["tiny"]
        (runs / "tiny" / "tokenizer.json").unlink()  # gone after the server started
        for name in ("tiny", "bare"):
            refused = client.post("/api/generate", json={"model": name})
            assert refused.status_code == 400 and "is not ready (missing tokenizer.json" in \
                refused.json()["detail"]
        assert loads == []


@pytest.mark.parametrize("failure, answer", [
    (FileNotFoundError(2, "No such file or directory", "/srv/secret/tokenizer.json"),
     "run 'tiny' could not be loaded: tokenizer.json: No such file or directory"),
    (WeftError("/srv/tiny/model.safetensors is damaged"),
     "/srv/tiny/model.safetensors is damaged"),
])
def test_a_run_that_fails_to_load_is_logged_in_one_line(
        tiny_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        failure: Exception, answer: str) -> None:
    shutil.copytree(tiny_run, tmp_path / "runs" / "tiny")

    def loader(path: Path, device: str) -> Any:
        raise failure

    with TestClient(create_app(tmp_path / "runs", loader=loader)) as client, \
            caplog.at_level(logging.WARNING, logger="weft.serve"):
        refused = client.post("/api/generate", json={"model": "tiny"})
    assert refused.status_code == 400 and refused.json()["detail"] == answer
    [record] = [r for r in caplog.records if r.name == "weft.serve"]
    assert record.getMessage() == answer and record.exc_info is None  # no traceback


def test_max_sequences_defaults_to_what_the_rows_allow(tiny_run: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    started = fake_uvicorn(monkeypatch)

    def limits(*flags: str) -> Any:
        result = CliRunner().invoke(cli, ["serve", str(tiny_run), "--port", "0", *flags])
        if result.exit_code:
            return result.output
        return started["app"].state.server.limits

    assert limits().max_sequences == 4
    assert (limits("--max-rows", "2").max_sequences, limits("--max-rows", "2").max_rows) == (2, 2)
    assert limits("--max-rows", "2", "--max-sequences", "1").max_sequences == 1
    assert limits("--max-rows", "2", "--max-sequences", "3") == \
        "error: --max-sequences 3 cannot be more than --max-rows 2: a request's sequences " \
        "must fit in the batch together\n"
    assert limits("--max-sequences", "100").startswith(
        "error: --max-sequences 100 cannot be more than --max-rows 64")
    assert "must be > 0" in limits("--max-sequences", "0")
