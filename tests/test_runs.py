from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import weft
from weft.errors import WeftError


def test_save_then_load_gives_identical_logits(tiny_run: Path, tmp_path: Path) -> None:
    first = weft.load(tiny_run, device="cpu")
    moved = tmp_path / "moved"
    shutil.copytree(tiny_run, moved)  # a run directory is portable
    second = weft.load(moved, device="cpu")
    ids = torch.as_tensor(first.tokenizer.encode("The quick brown fox"), dtype=torch.long)
    torch.testing.assert_close(first.module(ids[None]).logits, second.module(ids[None]).logits,
                               rtol=0, atol=0)


def test_evaluate_reports_bits_per_char(tiny_run: Path, tmp_path: Path) -> None:
    model = weft.load(tiny_run, device="cpu")
    held_out = tmp_path / "held.txt"
    held_out.write_text("The lazy dog jumps over the quick brown fox.\n" * 5)
    result = model.evaluate(held_out)
    assert result.tokens == result.characters
    assert result.bits_per_char == pytest.approx(result.loss / 0.6931471805599453, rel=1e-6)
    assert result.perplexity > 1


def test_loading_bad_directories_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeftError, match="not a run directory"):
        weft.load(tmp_path / "missing")
    with pytest.raises(WeftError, match=r"config\.json"):
        weft.load(tmp_path)


def test_damaged_weights_are_reported(tiny_run: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(WeftError, match="damaged"):
        weft.load(broken)
