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


def test_memmap_checks_each_file_and_joins_them_as_the_in_memory_path(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text(PANGRAM * 60, encoding="utf-8")
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / "utf16.txt").write_bytes(("some text " * 40).encode("utf-16-le"))
    for other, message in [("missing.txt", "corpus file not found"),
                           ("empty.txt", "is empty"), ("utf16.txt", "looks like binary")]:
        with pytest.raises(WeftError, match=message):
            weft.train([good, tmp_path / other], out=tmp_path / f"run-{other}", memmap=True,
                       max_steps=2, **TINY)
    # Files without a final newline are joined with one, as without --memmap: same corpus.
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text(PANGRAM * 30 + "no newline at the end", encoding="utf-8")
    second.write_text("second file\n" + PANGRAM * 30, encoding="utf-8")
    options = dict(TINY, max_steps=2)
    weft.train([first, second], out=tmp_path / "mm", memmap=True, **options)
    weft.train([first, second], out=tmp_path / "mem", **options)
    fingerprints = [json.loads((tmp_path / run / "config.json").read_text())["corpus_fingerprint"]
                    for run in ("mm", "mem")]
    assert fingerprints[0] == fingerprints[1]


def test_a_memmap_corpus_over_its_index_limit_gets_no_copy_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weft.training import fit_language_model

    # Building an index holds 5 bytes per byte of text: --memmap must keep memory flat.
    monkeypatch.setattr(fit_language_model, "MEMMAP_INDEX_BYTES", 1000)
    corpus = tmp_path / "c.txt"
    corpus.write_text(PANGRAM * 60, encoding="utf-8")
    mapped = weft.train(corpus, out=tmp_path / "mm", memmap=True, max_steps=2, **TINY)
    assert mapped is not None and mapped.copy_index is None
    whole = weft.train(corpus, out=tmp_path / "mem", max_steps=2, **TINY)
    assert whole is not None and whole.copy_index is not None
