"""tools/train_base_model.py: both stages run and export a usable model (tiny sizes)."""

import json
from pathlib import Path

import pytest
from tools.train_base_model import (
    EWT_TEXT,
    GPU_PRESET,
    GUTENBERG,
    MODERN_MIX,
    SETTINGS,
    main,
    split_held_out,
    stage_settings,
)

import weft
from weft.io import sha256_file

CONLLU = """# newdoc id = one
# newpar
# sent_id = 1
# text = The store was closed on Sunday.
1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
# text = We came back on Monday.
1\tWe\twe\tPRON\tPRP\t_\t2\tnsubj\t_\t_
"""


def books_and_web_text(folder: Path) -> tuple[Path, Path]:
    """A folder of one tiny book and a tiny EWT-like CoNLL-U file, the script's inputs."""
    books = folder / "books"
    books.mkdir()
    (books / "a.txt").write_text("It was a bright cold day in April.\n" * 300, encoding="utf-8")
    web = folder / "web.conllu"
    web.write_text(CONLLU, encoding="utf-8")
    return books, web


def test_gpu_preset_changes_how_it_trains_not_the_shape() -> None:
    stage1, stage2, _ = stage_settings("gpu", "3,1.5", {"seed": 7})
    assert stage1["batch_size"] == GPU_PRESET["stage1"]["batch_size"] != SETTINGS["batch_size"]
    for shape in ("layers", "hidden_size", "embedding_dim", "level"):
        assert stage1[shape] == SETTINGS[shape]
    assert (stage1["time_budget"], stage2["time_budget"]) == ("3m", "1.5m")
    assert stage1["seed"] == stage2["seed"] == 7


def test_bad_minutes_is_a_one_line_error() -> None:
    for bad in ("4", "1,2,3,4", "1,x"):
        with pytest.raises(SystemExit, match="STAGE1,STAGE2"):
            stage_settings("cpu", bad, {})
    assert stage_settings("cpu", "1,2,3", {})[2]["time_budget"] == "3m"


def test_two_stages_export_a_model_that_loads_on_any_device(tmp_path: Path) -> None:
    books, web = books_and_web_text(tmp_path)
    target = tmp_path / "export"
    tiny = ["--set", "hidden_size=16", "--set", "layers=1", "--set", "embedding_dim=8",
            "--set", "batch_size=4", "--set", "seq_len=16", "--set", "max_steps=4",
            "--set", "eval_every=2", "--set", "threads=1"]
    main([str(books), "--web-text", str(web), "--out", str(tmp_path / "run"), "--preset",
          "gpu", "--export-to", str(target), *tiny])

    config = json.loads((target / "config.json").read_text())
    assert config["model"]["hidden_size"] == 16
    assert config["train"]["device"] == config["train"]["precision"] == "auto"
    assert config["train"]["batch_size"] == 4  # --set wins over the preset
    assert config["init_from"]["name"].startswith("stage 1")
    assert config["corpus"] == ["run-web-ewt-train.txt", "books"]  # names, not paths
    licence = (target / "LICENSE.md").read_text(encoding="utf-8")
    assert "Project Gutenberg books" in licence and "English Web Treebank" in licence
    assert "Twitter" not in licence  # only what it read
    manifest = json.loads((target / "MANIFEST.json").read_text())["sha256"]
    assert manifest == {name: sha256_file(target / name) for name in manifest}
    model = weft.load(target)
    [text] = model.generate(prompt="It", max_new_tokens=5, seed=0)
    assert (text.tokens, text.finish_reason) == (5, "length")


def test_held_out_slices_are_cut_at_a_unit_boundary_and_never_trained_on(
        tmp_path: Path) -> None:
    modern = tmp_path / "modern"
    modern.mkdir()
    dialogue = "".join(f"hello {i}\nhow are you {i}\n\n" for i in range(200))
    (modern / "chat.txt").write_text(dialogue, encoding="utf-8")
    split_held_out(modern, tmp_path / "data")
    train = (tmp_path / "data" / "train" / "chat.txt").read_text(encoding="utf-8")
    held_out = (tmp_path / "data" / "held-out" / "chat.txt").read_text(encoding="utf-8")
    assert train + held_out == dialogue
    assert train.endswith("\n\n") and held_out.startswith("hello ")
    assert 0.015 < len(held_out) / len(dialogue) < 0.03


def test_stage_three_trains_the_weighted_mix_from_a_base_and_exports_it(
        tmp_path: Path) -> None:
    books, web = books_and_web_text(tmp_path)
    modern = tmp_path / "modern"
    modern.mkdir()
    for name in MODERN_MIX:
        if name not in (GUTENBERG, EWT_TEXT):
            (modern / name).write_text(f"lol {name} is great\nyeah\n\n" * 100,
                                       encoding="utf-8")
    base = tmp_path / "base"
    tiny = dict(hidden_size=16, layers=1, embedding_dim=8, batch_size=4, seq_len=16,
                max_steps=2, level="byte", quiet=True)
    weft.train(str(books), out=base, **tiny)
    target = tmp_path / "export"
    main([str(books), "--web-text", str(web), "--modern", str(modern), "--stage2", str(base),
          "--out", str(tmp_path / "run"), "--export-to", str(target), "--set", "max_steps=3",
          "--set", "batch_size=4", "--set", "seq_len=16", "--set", "eval_every=2",
          "--set", "val_fraction=0.01"])
    config = json.loads((target / "config.json").read_text())
    assert config["init_from"]["name"].startswith("stage 2")
    assert "chitchat.txt:1" in config["corpus"] and "broad-twitter-corpus.txt:5" in config[
        "corpus"]
    assert (tmp_path / "run-modern-data" / "held-out" / "chitchat.txt").stat().st_size > 0
    licence = (target / "LICENSE.md").read_text(encoding="utf-8")
    for credit in ("Project Gutenberg books", "English Web Treebank", "Schema-Guided Dialogue",
                   "Taskmaster", "Broad Twitter Corpus", "Atis and ESLSpok", "chitchat-dataset",
                   "MASC", "WordNet 3.0 Copyright 2006 by Princeton University", "Jargon File",
                   "fortunes", "1900-1955", "CC BY-SA 4.0"):
        assert credit in licence
    weft.load(target).generate(prompt="lol", max_new_tokens=3, seed=0)


def test_a_source_without_a_known_credit_is_refused_before_shipping() -> None:
    from tools.base_model_licence import licence_text

    with pytest.raises(SystemExit, match=r"no credit is known for the corpus 'scraped\.txt:2'"):
        licence_text(["gutenberg:0.3", "scraped.txt:2"])


def test_backward_trains_the_mix_reversed_and_exports_a_run_marked_reversed(
        tmp_path: Path) -> None:
    from weft.errors import WeftError
    from weft.tagging.lm_features import open_lm

    books, web = books_and_web_text(tmp_path)
    (books / "a.txt").write_text("*** START OF THE PROJECT GUTENBERG EBOOK A ***\n"
                                 + "It was a bright cold day in April.\n" * 300
                                 + "*** END OF THE PROJECT GUTENBERG EBOOK A ***\nlicence\n",
                                 encoding="utf-8")
    modern = tmp_path / "modern"
    modern.mkdir()
    for name in MODERN_MIX:
        if name not in (GUTENBERG, EWT_TEXT):
            (modern / name).write_text(f"lol {name} is great ünd\n\n" * 100, encoding="utf-8")
    target = tmp_path / "export"
    main([str(books), "--web-text", str(web), "--modern", str(modern), "--backward",
          "--out", str(tmp_path / "run"), "--export-to", str(target), "--set", "max_steps=2",
          "--set", "hidden_size=16", "--set", "layers=1", "--set", "embedding_dim=8",
          "--set", "batch_size=4", "--set", "seq_len=16", "--set", "eval_every=2",
          "--set", "val_fraction=0.01"])
    data = tmp_path / "run-modern-data"
    chat = (data / "train" / "chitchat.txt").read_text(encoding="utf-8")
    assert (data / "train-reversed" / "chitchat.txt").read_text(encoding="utf-8") == chat[::-1]
    book = (data / "train-reversed" / "books" / "a.txt").read_text(encoding="utf-8")
    assert book.lstrip("\n").startswith(".lirpA") and "GUTENBERG" not in book  # cut, reversed
    config = json.loads((target / "config.json").read_text())
    assert config["reversed"] is True and config["model"]["hidden_size"] == 16
    assert "chitchat.txt:1" in config["corpus"] and "books:0.3" in config["corpus"]
    assert (target / "LICENSE.md").read_text(encoding="utf-8").startswith(
        "# builtin:export: where")
    assert open_lm(str(target), "--char-lm-backward", backward=True).sha256
    with pytest.raises(WeftError, match="reversed text: give it as --char-lm-backward"):
        open_lm(str(target), "--char-lm", backward=False)
