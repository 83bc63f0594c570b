"""``weft export --web`` without a browser: the folder it writes, and what it refuses (one line
each). The page itself is tested in Chromium by test_web_export_browser.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import weft
from weft.cli.main import cli
from weft.errors import WeftError
from weft.export.web import SITE_FILES


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_the_folder_holds_the_page_the_weights_and_the_manifest(tiny_run: Path,
                                                                tmp_path: Path) -> None:
    code, output = run_cli("export", str(tiny_run), "--web", str(tmp_path / "site"))
    assert code == 0, output
    site = tmp_path / "site"
    names = {p.name for p in site.iterdir()}
    assert names == {*SITE_FILES, "style.css", "model.json", "weights.bin"}
    manifest = json.loads((site / "model.json").read_text(encoding="utf-8"))
    model = weft.load(tiny_run, device="cpu")
    assert manifest["model"]["cell"] == "lstm" and manifest["weights"]["format"] == "float16"
    assert manifest["tokenizer"]["pieces"] == model.tokenizer.pieces
    assert manifest["generation"]["max_new_tokens"] == model.generation_defaults.max_new_tokens
    # Each tensor lies where the manifest says, rounded to float16.
    entry = next(t for t in manifest["weights"]["tensors"] if t["name"] == "rnn.weight_hh_l0")
    blob = (site / "weights.bin").read_bytes()
    count = int(np.prod(entry["shape"]))
    stored = np.frombuffer(blob, "<f2", count, entry["offset"]).reshape(entry["shape"])
    original = model.module.rnn.weight_hh_l0.detach().numpy()
    np.testing.assert_allclose(stored, original, rtol=1e-3, atol=1e-4)
    # The page loads nothing from elsewhere.
    for name in SITE_FILES:
        text = (site / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, name


def test_a_folder_in_use_is_not_overwritten_without_force(tiny_run: Path,
                                                         tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "mine.txt").write_text("keep me")
    code, output = run_cli("export", str(tiny_run), "--web", str(site))
    assert code == 2 and output.strip() == (f"error: {site} is not empty; choose an empty folder "
                                            "or pass --force")
    assert not (site / "index.html").exists()
    code, output = run_cli("export", str(tiny_run), "--web", str(site), "--force")
    assert code == 0 and (site / "index.html").exists() and (site / "mine.txt").exists()


def test_a_tagger_run_is_refused_in_one_line(tmp_path: Path) -> None:
    tagger = tmp_path / "tagger"
    tagger.mkdir()
    (tagger / "config.json").write_text(json.dumps({"kind": "tagger"}))
    code, output = run_cli("export", str(tagger), "--web", str(tmp_path / "site"))
    assert code == 2 and output.count("\n") == 1 and "tagger run" in output
    assert not (tmp_path / "site").exists()


def test_what_the_runtime_cannot_run_is_refused_by_name(tiny_run: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Every level runs today; a level the runtime lacked would be named like this.
    monkeypatch.setattr("weft.export.web.LEVELS_SUPPORTED", ("byte",))
    model = weft.load(tiny_run, device="cpu")
    with pytest.raises(WeftError, match="runs byte level models, not the char level"):
        model.export_web(tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_int8_weights_make_the_smallest_page(tiny_run: Path, tmp_path: Path) -> None:
    model = weft.load(tiny_run, device="cpu")
    sizes = {}
    for fmt in ("float32", "float16", "int8"):
        sizes[fmt] = (model.export_web(tmp_path / fmt, weights=fmt) / "weights.bin").stat().st_size
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    with pytest.raises(WeftError, match="--weights must be one of"):
        model.export_web(tmp_path / "other", weights="int4")


def test_builtin_english_exports_to_a_page_under_6_mb_in_int8(tmp_path: Path) -> None:
    code, output = run_cli("export", "builtin:english", "--web", str(tmp_path / "site"),
                           "--weights", "int8")
    assert code == 0, output
    size = sum(p.stat().st_size for p in (tmp_path / "site").iterdir())
    assert size < 6_000_000
    manifest = json.loads((tmp_path / "site" / "model.json").read_text(encoding="utf-8"))
    assert manifest["tokenizer"]["type"] == "byte" and manifest["model"]["layers"] == 2
