"""``weft serve`` with several roots: folders of runs, run directories and built-in models
served together, each run under one name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from click.testing import CliRunner
from fastapi.testclient import TestClient

from weft.cli.main import cli
from weft.errors import WeftError
from weft.serving.registry import RunRegistry

from .serve_fixtures import fake_uvicorn


@pytest.fixture(scope="module")
def folder(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two runs, one nested."""
    root = tmp_path_factory.mktemp("roots") / "runs"
    shutil.copytree(tiny_run, root / "a")
    shutil.copytree(tiny_run, root / "exp" / "b")
    return root


def test_a_folder_a_run_and_a_built_in_model_are_served_together(
    folder: Path, tiny_run: Path
) -> None:
    registry = RunRegistry([folder, "builtin:english", tiny_run])
    assert list(registry.runs()) == sorted(["a", "exp/b", "builtin:english", tiny_run.name])
    assert registry.path("exp/b") == (folder / "exp" / "b").resolve()
    assert registry.path(tiny_run.name) == tiny_run.resolve()


def test_two_runs_under_one_name_are_refused_and_one_run_twice_is_one(
    folder: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(folder / "a", other / "a")
    with pytest.raises(WeftError, match=r"two runs would be served as 'a' .*rename one"):
        RunRegistry([folder, other])
    assert list(RunRegistry([folder, folder / "a"]).runs()) == ["a", "exp/b"]


def test_weft_serve_takes_several_roots(folder: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    started = fake_uvicorn(monkeypatch)
    result = CliRunner().invoke(cli, ["serve", str(folder), "builtin:english", "--port", "0",
                                      "--batch-in", "thread", "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
    assert f"serving 3 runs from {folder}, builtin:english at" in result.output
    with TestClient(started["app"], base_url="http://127.0.0.1:8123") as served:
        listed = [m["id"] for m in served.get("/v1/models").json()["data"]]
        assert listed == ["a", "builtin:english", "exp/b"]
        for model in ("builtin:english", "exp/b"):
            done = served.post("/api/generate", json={"model": model, "prompt": "The"})
            assert done.status_code == 200, done.text
            assert len(done.json()["texts"][0]) > 0

    missing = tmp_path / "missing"
    result = CliRunner().invoke(cli, ["serve", str(folder), str(missing)])
    assert result.exit_code == 2
    assert f"error: {missing} is not a folder" in result.output
