"""Training from memory-mapped token ids (--memmap) follows the in-memory run exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import weft
from weft.cli.main import cli
from weft.errors import WeftError

from .conftest import PANGRAM, TINY


def _losses(run: Path) -> list[tuple[int, float, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in map(json.loads, lines)]


def test_memmap_run_matches_the_in_memory_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(PANGRAM * 50 + "Pack my box with five dozen liquor jugs.\n" * 20)
    options = dict(TINY, max_steps=20, seed=4)
    weft.train(corpus, out=tmp_path / "memory", **options)
    model = weft.train(corpus, out=tmp_path / "mapped", memmap=True, **options)
    ids = np.load(tmp_path / "mapped" / "tokens.npy", mmap_mode="r")
    assert ids.dtype == np.uint8 and len(ids) == len(corpus.read_text())
    assert model.tokenizer.decode(ids) == corpus.read_text()
    assert _losses(tmp_path / "mapped") == _losses(tmp_path / "memory")
    weft.resume(tmp_path / "mapped", max_steps=30, quiet=True)
    assert _losses(tmp_path / "mapped")[-1][0] == 30


def test_memmap_flag_and_its_limits(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(PANGRAM * 40)
    result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(tmp_path / "r"),
                                      "--memmap", "--level", "word"])
    assert result.exit_code == 2 and "--memmap" in result.output
    with pytest.raises(WeftError, match="built-in"):
        weft.train("builtin:pydoc-topics", out=tmp_path / "b", memmap=True, quiet=True)
