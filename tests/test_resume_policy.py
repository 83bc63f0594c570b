"""One resume policy for every kind of run (runs.py): a language model and a tagger refuse the
same changes with the same words, accept the same ones, and check their data the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import weft
from weft import api
from weft.errors import WeftError
from weft.runs import FINGERPRINT, TAGGER, read_run_config, run_kind

from .conftest import PANGRAM, TINY
from .test_tagging_cli import TINY_FLAGS, TRAIN, _invoke

TAGGER_TINY = dict(word_dim=16, char_dim=8, char_hidden=8, hidden=24, layers=1, batch_size=4,
                   eval_every=10, seed=3, quiet=True)


@pytest.fixture(params=["language-model", "tagger"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path, Path]:
    """(kind, run directory, its training file) of a run trained for 10 steps."""
    out = tmp_path / "run"
    if request.param == "tagger":
        data = tmp_path / "train.txt"
        data.write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
        api.train_tagger(data, out, max_steps=10, **TAGGER_TINY)
    else:
        data = tmp_path / "corpus.txt"
        data.write_text(PANGRAM * 40, encoding="utf-8")
        weft.train(data, out=out, max_steps=10, **TINY)
    return request.param, out, data


def _resume(kind: str, out: Path, **options: object) -> None:
    if kind == TAGGER:
        api.resume_tagger(out, quiet=True, **options)
    else:
        weft.resume(out, quiet=True, **options)


def test_both_kinds_save_the_same_fingerprint_entry(run: tuple[str, Path, Path]) -> None:
    kind, out, _ = run
    saved = read_run_config(out)
    assert run_kind(saved) == kind and isinstance(saved[FINGERPRINT], str)


@pytest.mark.parametrize("option", ["lr", "seed", "batch_size", "precision"])
def test_a_bound_training_setting_is_refused_alike(run: tuple[str, Path, Path],
                                                   option: str) -> None:
    kind, out, _ = run
    value = {"lr": 0.5, "seed": 1, "batch_size": 2, "precision": "fp32"}[option]
    flag = "--" + option.replace("_", "-")
    with pytest.raises(WeftError, match=f"--resume keeps the run's settings; these cannot "
                                        f"change: {flag}$"):
        _resume(kind, out, **{option: value})


def test_the_allowed_changes_are_taken_alike(run: tuple[str, Path, Path]) -> None:
    kind, out, _ = run
    _resume(kind, out, max_steps=20, checkpoint_every="1m", patience=3)
    saved = read_run_config(out)["train"]
    # config.json records the limits and saves the resumed run trained under.
    assert (saved["max_steps"], saved["checkpoint_every"], saved["patience"]) == (20, 60.0, 3)
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 20


def test_changed_data_is_refused_alike(run: tuple[str, Path, Path]) -> None:
    kind, out, data = run
    data.write_text(data.read_text(encoding="utf-8")[: -len(TRAIN[-1]) - 1], encoding="utf-8")
    with pytest.raises(WeftError, match="has changed since this run started"):
        _resume(kind, out, max_steps=20)


def test_a_tagger_model_flag_on_resume_is_refused_not_ignored(tmp_path: Path) -> None:
    data = tmp_path / "train.txt"
    data.write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    code, output = _invoke("tag", "train", str(data), "--out", str(out), "--max-steps", "10",
                           *TINY_FLAGS)
    assert code == 0, output
    code, output = _invoke("tag", "train", str(data), "--out", str(out), "--resume",
                           "--hidden", "64", "--crf", "--max-steps", "20", "--quiet")
    assert code == 2 and "these cannot change: --crf, --hidden" in output


def test_a_tagger_run_with_the_first_fingerprint_entry_is_still_checked(tmp_path: Path) -> None:
    data = tmp_path / "train.txt"
    data.write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    api.train_tagger(data, out, max_steps=10, **TAGGER_TINY)
    saved = read_run_config(out)
    saved["data_fingerprint"] = saved.pop(FINGERPRINT)  # as tagger runs saved it at first
    (out / "config.json").write_text(json.dumps(saved), encoding="utf-8")
    data.write_text("\n".join(TRAIN[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(WeftError, match="has changed since this run started"):
        api.resume_tagger(out, max_steps=20, quiet=True)


def test_a_run_started_with_a_relative_corpus_resumes_from_any_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    (start / "c.txt").write_text(PANGRAM * 40, encoding="utf-8")
    monkeypatch.chdir(start)
    weft.train("c.txt", out=tmp_path / "run", max_steps=10, **TINY)
    assert read_run_config(tmp_path / "run")["corpus"] == [str(start / "c.txt")]
    monkeypatch.chdir(elsewhere)
    assert weft.resume(tmp_path / "run", max_steps=20) is not None
    # A run from before paths were kept whole says where to resume from.
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["corpus"] = ["c.txt"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeftError, match="relative to the folder it was started in"):
        weft.resume(tmp_path / "run", max_steps=30)
    monkeypatch.chdir(start)
    assert weft.resume(tmp_path / "run", max_steps=30) is not None
