"""The base model shipped in the package: it loads, matches its checksums, writes English, and
fine-tunes on a CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import weft
from weft import builtin
from weft.cli.main import cli
from weft.errors import WeftError
from weft.io import sha256_file

ENGLISH = Path(builtin.__file__).parent / "english"


def test_the_shipped_files_match_their_manifest() -> None:
    manifest = json.loads((ENGLISH / "MANIFEST.json").read_text())["sha256"]
    assert set(manifest) == {"config.json", "tokenizer.json", "generation.json",
                             "model.safetensors"}
    for name, digest in manifest.items():
        assert sha256_file(ENGLISH / name) == digest
    assert (ENGLISH / "model.safetensors").stat().st_size <= 20 * 2**20
    assert builtin.builtin_names() == ["builtin:english"]


def test_it_loads_and_writes_english() -> None:
    model = weft.load("builtin:english", device="cpu")
    assert model.tokenizer.type_name == "byte"
    text = model.generate("The old house", max_new_tokens=200, temperature=0.5, seed=0)[0]
    words = text.split()
    assert len(words) > 20
    common = {"the", "and", "of", "to", "a", "in", "was", "he", "she", "it", "that", "his", "her"}
    assert sum(w.lower().strip(".,;:!?\"'") in common for w in words) >= 5, text
    # far better than chance (8 bits per character) on ordinary English
    sentence = "It was a fine morning, and the children ran down to the river to play.\n"
    assert model.evaluate(sentence * 3).bits_per_char < 3.0


def test_the_cli_takes_builtin_names(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["info", "builtin:english"])
    assert result.exit_code == 0 and "byte tokenizer" in result.output, result.output
    # No copy index ships with it, and no resume would build one: say why it is missing.
    assert "ships without its training text" in result.output
    assert "resuming" not in result.output
    result = runner.invoke(cli, ["generate", "builtin:english", "--prompt", "Once upon a time",
                                 "--max-new-tokens", "30", "--seed", "1"])
    assert result.exit_code == 0 and result.output.startswith("Once upon a time")
    result = runner.invoke(cli, ["generate", "builtin:nope"])
    assert result.exit_code == 2 and "available: builtin:english" in result.output


def test_its_licence_and_sources_travel_with_it() -> None:
    licence = (ENGLISH / "LICENSE.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in licence and "Universal Dependencies English Web Treebank" in licence
    runner = CliRunner()
    result = runner.invoke(cli, ["info", "builtin:english"])
    assert "sources and licence (LICENSE.md):" in result.output
    assert "CC BY-SA 4.0" in result.output
    shown = json.loads(runner.invoke(cli, ["info", "builtin:english", "--json"]).output)
    assert shown["license"] == licence


def test_fine_tuning_from_it_runs_on_a_cpu(tmp_path: Path) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text("text\n" + "\n".join(f"Note {i}: buy milk and ☕ beans" for i in range(40))
                     + "\n", encoding="utf-8")
    model = weft.train(notes, out=tmp_path / "ft", init_from="builtin:english",
                       csv_column="text", max_steps=3, batch_size=4, eval_every=3,
                       quiet=True)
    assert model is not None
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["init_from"]["name"] == "builtin:english"
    assert config["init_from"]["sha256"] == sha256_file(ENGLISH / "model.safetensors")
    assert config["init_from"]["added_tokens"] == 3  # <bos>, <eos>, <pad>: bytes cover ☕
    assert model.generate("Note", max_new_tokens=20, seed=0)[0] is not None


def test_a_damaged_builtin_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "english"
    shutil.copytree(ENGLISH, fake)
    monkeypatch.setattr(builtin, "_HERE", tmp_path)
    assert builtin.builtin_dir("builtin:english") == fake
    with (fake / "tokenizer.json").open("a") as handle:
        handle.write(" ")
    with pytest.raises(WeftError, match=r"damaged.*reinstall"):
        builtin.builtin_dir("builtin:english")
    with pytest.raises(WeftError, match="unknown built-in model"):
        builtin.builtin_dir("builtin:../english")
