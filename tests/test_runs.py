from __future__ import annotations

import json
import re
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


@pytest.mark.parametrize(
    ("file", "section", "key", "value", "message"),
    [
        ("config.json", "model", "hidden_size", "32", "hidden_size must be an integer, not '32'"),
        ("config.json", "model", "tie_weights", "yes", "tie_weights must be true or false"),
        ("config.json", "train", "precision", 16, "precision must be a string"),
        ("config.json", "model", None, [1, 2], "a settings object was expected"),
        ("generation.json", None, "temperature", "hot", "temperature must be a number"),
    ],
)
def test_wrong_types_in_saved_settings_are_one_line_errors(
    tiny_run: Path, tmp_path: Path, file: str, section: str | None, key: str | None,
    value: object, message: str,
) -> None:
    run = tmp_path / "edited"
    shutil.copytree(tiny_run, run)
    settings = json.loads((run / file).read_text())
    if key is None:
        settings[section] = value
    else:
        (settings[section] if section else settings)[key] = value
    (run / file).write_text(json.dumps(settings))
    with pytest.raises(WeftError, match=f"{file} is damaged.*{re.escape(message)}") as caught:
        weft.load(run, device="cpu")
    assert "\n" not in str(caught.value)
