"""Tagger training keeps the language model's safeguards: output directory, lock, disk space,
the same data on resume, one resume policy, and its loss through the trainer's model."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch

from weft.errors import WeftError
from weft.runs import resumed_train_config
from weft.tagging.api import load_tagger
from weft.tagging.batching import encode
from weft.tagging.model import BiLSTMTagger, TaggerModelConfig
from weft.tagging.task import TaggingTask
from weft.tagging.vocab import TaggerVocab
from weft.training import safeguards

from .test_tagging_cli import TINY_FLAGS, TRAIN, _invoke


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.txt"
    path.write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    return path


def _train(train_file: Path, out: Path, *extra: str) -> tuple[int, str]:
    return _invoke("tag", "train", str(train_file), "--out", str(out), "--max-steps", "10",
                   *TINY_FLAGS, *extra)


def test_a_non_empty_directory_is_refused(train_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, output = _train(train_file, out)
    assert code == 2 and "exists and is not empty" in output
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


def test_a_held_run_directory_is_refused(train_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with safeguards.exclusive(out):  # as another training process holds it
        code, output = _train(train_file, out)
    assert code == 2 and "another weft process" in output


def test_too_little_disk_space_is_refused(train_file: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(safeguards.shutil, "disk_usage",
                        lambda path: usage._replace(free=1 << 20))
    code, output = _train(train_file, tmp_path / "run")
    assert code == 2 and "1 MB free but this run needs" in output


def test_resume_needs_the_same_sentences(train_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train(train_file, out)[0] == 0
    train_file.write_text("\n".join(TRAIN[:-1]) + "\n", encoding="utf-8")
    code, output = _invoke("tag", "train", str(train_file), "--out", str(out), "--resume",
                           "--max-steps", "20", "--quiet")
    assert code == 2 and "has changed since this run started" in output


def test_resume_policy_is_the_language_models(train_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train(train_file, out)[0] == 0
    config = resumed_train_config(out, {"checkpoint_every": 60.0, "max_steps": 20})
    assert config.checkpoint_every == 60.0 and config.max_steps == 20
    with pytest.raises(WeftError, match="cannot change: --lr"):
        resumed_train_config(out, {"lr": 0.1})


def test_torchrun_is_refused_before_any_work(train_file: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    code, output = _train(train_file, tmp_path / "run")
    assert code == 2 and "without torchrun" in output
    assert not (tmp_path / "run").exists()


def test_the_loss_goes_through_the_trainers_model() -> None:
    sentences = [line.split() for line in TRAIN]
    words = [[pair.rsplit("/", 1)[0] for pair in s] for s in sentences]
    tags = [[pair.rsplit("/", 1)[1] for pair in s] for s in sentences]
    vocab = TaggerVocab.build(zip(words, tags, strict=True), True)
    config = TaggerModelConfig(word_dim=8, char_dim=4, char_hidden=4, hidden=8, layers=1,
                               num_words=len(vocab.words), num_chars=len(vocab.chars),
                               num_tags=len(vocab.tags))
    tagger = BiLSTMTagger(config)
    data = encode(vocab, words, tags)
    task = TaggingTask(tagger, vocab, data, data, 4, 0, torch.device("cpu"))
    calls: list[object] = []

    class Wrapper(torch.nn.Module):  # stands for DistributedDataParallel
        def __init__(self) -> None:
            super().__init__()
            self.inner = tagger

        def forward(self, batch: object) -> torch.Tensor:
            calls.append(batch)
            return self.inner(batch)

    task.model = Wrapper()
    loss, tokens = task.train_loss(0, 0)
    assert calls and tokens > 0 and torch.isfinite(loss)


def test_a_wrong_type_in_config_json_is_a_one_line_error(train_file: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train(train_file, out)[0] == 0
    config = json.loads((out / "config.json").read_text())
    config["model"]["hidden"] = "24"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeftError, match=r"config\.json is damaged.*hidden must be an integer"):
        load_tagger(out)
    code, output = _invoke("tag", "train", str(train_file), "--out", str(out), "--resume",
                           "--max-steps", "20", "--quiet")
    assert code == 2 and "hidden must be an integer" in output


def test_a_failed_write_names_the_taggers_resume_command(
    train_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from weft.training import trainer

    original = trainer.save_checkpoint
    saves: list[int] = []

    def disk_fills(run_dir: Path, state: dict[str, object]) -> None:
        saves.append(1)
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(run_dir, state)

    monkeypatch.setattr(trainer, "save_checkpoint", disk_fills)
    out = tmp_path / "run"
    code, output = _train(train_file, out, "--max-steps", "30")
    assert code == 2 and f"resume with `weft tag train --resume {out}`" in output
