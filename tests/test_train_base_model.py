"""tools/train_base_model.py: both stages run and export a usable model (tiny sizes)."""

import json
from pathlib import Path

import pytest
from tools.train_base_model import GPU_PRESET, SETTINGS, main, stage_settings

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


def test_gpu_preset_changes_how_it_trains_not_the_shape() -> None:
    stage1, stage2 = stage_settings("gpu", "3,1.5", {"seed": 7})
    assert stage1["batch_size"] == GPU_PRESET["stage1"]["batch_size"] != SETTINGS["batch_size"]
    for shape in ("layers", "hidden_size", "embedding_dim", "level"):
        assert stage1[shape] == SETTINGS[shape]
    assert (stage1["time_budget"], stage2["time_budget"]) == ("3m", "1.5m")
    assert stage1["seed"] == stage2["seed"] == 7


def test_bad_minutes_is_a_one_line_error() -> None:
    with pytest.raises(SystemExit, match="STAGE1,STAGE2"):
        stage_settings("cpu", "4", {})


def test_two_stages_export_a_model_that_loads_on_any_device(tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text("It was a bright cold day in April.\n" * 300, encoding="utf-8")
    web = tmp_path / "web.conllu"
    web.write_text(CONLLU, encoding="utf-8")
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
    manifest = json.loads((target / "MANIFEST.json").read_text())["sha256"]
    assert manifest == {name: sha256_file(target / name) for name in manifest}
    model = weft.load(target)
    [text] = model.generate(prompt="It", max_new_tokens=5, seed=0)
    assert (text.tokens, text.finish_reason) == (5, "length")
