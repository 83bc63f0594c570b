"""Shared fixtures: small corpora made on the fly, and tiny trained runs."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import weft

PANGRAM = "The quick brown fox jumps over the lazy dog.\n"


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    # Tests share two cores with whatever else runs; one thread keeps them predictable.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Measured generation paths go to a folder of the test session, not the user's cache
    # (subprocesses inherit the variable).
    import os

    os.environ["WEFT_CACHE_DIR"] = str(tmp_path_factory.mktemp("weft-cache"))


@pytest.fixture
def pangram_file(tmp_path: Path) -> Path:
    path = tmp_path / "pangram.txt"
    path.write_text(PANGRAM * 40, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sentences repeated: enough text for the subprocess training tests."""
    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    path.write_text(PANGRAM * 60 + "Pack my box with five dozen liquor jugs.\n" * 40,
                    encoding="utf-8")
    return path


TINY = dict(hidden_size=32, embedding_dim=16, batch_size=4, seq_len=16, eval_every=10,
            quiet=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small character model trained for a few steps (shared by read-only tests)."""
    root = tmp_path_factory.mktemp("runs")
    corpus = root / "corpus.txt"
    corpus.write_text(PANGRAM * 40 + "Pack my box with five dozen liquor jugs.\n" * 20,
                      encoding="utf-8")
    out = root / "tiny"
    weft.train(corpus, out=out, max_steps=30, **TINY)
    return out


@pytest.fixture(scope="session")
def copier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model that has learned its one sentence by heart: it copies long spans."""
    root = tmp_path_factory.mktemp("copier")
    (root / "c.txt").write_text(PANGRAM * 40, encoding="utf-8")
    weft.train(root / "c.txt", out=root / "run", hidden_size=64, embedding_dim=16,
               batch_size=8, seq_len=32, max_steps=150, eval_every=150, lr=1e-2, threads=1,
               quiet=True)
    return root / "run"


@contextlib.contextmanager
def interrupted_at(step: int) -> Iterator[None]:
    """Within it, a training run is stopped after ``step`` as Ctrl-C would stop it."""
    from weft.training.trainer import Trainer

    original = Trainer._limit_reached

    def interrupt(self: Trainer, steps_per_epoch: int) -> str:
        if self.state.step == step:
            self.stops.reason = "SIGINT"
        return original(self, steps_per_epoch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "_limit_reached", interrupt)
        yield


CHROMIUM = shutil.which("chromium")  # Debian's package
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright (the playground's and the exported page's
    tests); skipped where either is missing."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # Debian's chromium; Playwright never downloads a browser of its own here.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
