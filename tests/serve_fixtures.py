"""Shared by the serving tests: a folder of runs to serve, a stand-in tagger, a live server."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import weft


class FakeSentence:
    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.tags = ["NOUN" if w[:1].isupper() else "X" for w in words]


class FakeTagger:
    """Stands in for a trained tagger: one sentence per line, capitalized words NOUN, others
    X."""

    def tag_text(self, text: str) -> list[FakeSentence]:
        return [FakeSentence(line.split()) for line in text.splitlines() or [""]]


def make_served(root: Path, tiny_run: Path) -> Path:
    """A served folder: two copies of the tiny run (one nested), a tagger, an untrained run, a
    trained run that lost its tokenizer.json, a run with a damaged config.json, a symlink
    leading out, and a plain file."""
    served = root / "served"
    shutil.copytree(tiny_run, served / "tiny")
    shutil.copytree(tiny_run, served / "exp" / "tiny2")
    shutil.copytree(tiny_run, served / "notokenizer")
    (served / "notokenizer" / "tokenizer.json").unlink()
    (served / "tagger").mkdir()
    (served / "tagger" / "config.json").write_text(json.dumps({"kind": "tagger"}))
    (served / "tagger" / "vocab.json").write_text("{}")
    (served / "tagger" / "model.safetensors").write_bytes(b"")
    (served / "untrained").mkdir()
    for name in ("config.json", "tokenizer.json"):  # as before its first evaluation
        shutil.copy(tiny_run / name, served / "untrained" / name)
    outside = root / "outside"
    shutil.copytree(tiny_run, outside)
    (served / "escape").symlink_to(outside, target_is_directory=True)
    (served / "notes.txt").write_text("not a run")
    (served / "broken").mkdir()
    (served / "broken" / "config.json").write_text("{not json")
    return served


def loader(path: Path, device: str) -> Any:
    if path.name == "tagger":
        return FakeTagger()
    return weft.load(path, device=device)


def fake_uvicorn(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``weft serve`` hands uvicorn (its app, the address it listens on), served no
    further."""
    import uvicorn

    started: dict[str, Any] = {}

    def run(server: Any, sockets: list[socket.socket]) -> None:
        started.update(app=server.config.app, address=sockets[0].getsockname())
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    return started


class LiveServer:
    """A real uvicorn server on a free loopback port, run in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 10)
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


def wait_until(condition: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)
