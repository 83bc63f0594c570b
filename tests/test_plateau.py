"""Going back to the best weights at a lower learning rate when validation stalls."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import weft
from weft.cli.main import cli
from weft.training.checkpoint import load_checkpoint
from weft.training.progress import ProgressDisplay
from weft.training.trainer import Trainer

from .conftest import PANGRAM, TINY, interrupted_at


def overfitting_corpus(folder: Path) -> tuple[Path, dict[str, Any]]:
    """Pangrams to train on and random letters to validate on: the validation loss improves
    for a few steps, then gets worse as the model learns the pangram by heart."""
    rng = random.Random(0)
    noise = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz .") for _ in range(400))
    corpus = folder / "c.txt"
    corpus.write_text(PANGRAM * 60 + noise, encoding="utf-8")
    options = dict(TINY, lr=1e-2, warmup_steps=0, seed=3, threads=1,
                   val_fraction=len(noise) / (len(PANGRAM) * 60 + len(noise)))
    return corpus, options


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_stalled_run_goes_back_to_its_best_weights_at_a_lower_rate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus, options = overfitting_corpus(tmp_path)
    restored: list[int] = []
    original = Trainer._on_plateau

    def checked(self: Trainer, display: ProgressDisplay) -> None:
        scale = self.state.lr_scale
        original(self, display)
        if self.state.lr_scale != scale:
            best = load_file(str(self.run_dir / "model.safetensors"))
            now = self.module.state_dict()
            assert all(torch.equal(now[k], v) for k, v in best.items())
            restored.append(self.state.step)

    monkeypatch.setattr(Trainer, "_on_plateau", checked)
    run = tmp_path / "run"
    weft.train(corpus, out=run, max_steps=60, **options)
    records = metrics(run)
    losses = [r["val_loss"] for r in records]
    # Evaluations every 10 steps; two in a row without a new best cut the rate.
    assert losses[1] > losses[0] and losses[2] > losses[0]
    assert restored and restored[0] == 30
    state = load_checkpoint(run)["trainer"]
    assert state["lr_scale"] == pytest.approx(0.25 ** len(restored))
    # The rate after the first cut is a quarter of the schedule's.
    assert records[3]["lr"] < records[2]["lr"] * 0.3


def test_no_cuts_when_disabled(tmp_path: Path) -> None:
    corpus, options = overfitting_corpus(tmp_path)
    run = tmp_path / "run"
    weft.train(corpus, out=run, max_steps=60, plateau_patience=0, **options)
    assert load_checkpoint(run)["trainer"]["lr_scale"] == 1.0
    assert json.loads((run / "config.json").read_text())["train"]["plateau_patience"] == 0


def test_resume_after_a_cut_continues_exactly(tmp_path: Path) -> None:
    corpus, options = overfitting_corpus(tmp_path)
    weft.train(corpus, out=tmp_path / "full", max_steps=70, **options)
    with interrupted_at(35):
        weft.train(corpus, out=tmp_path / "part", max_steps=70, **options)
    assert load_checkpoint(tmp_path / "part")["trainer"]["lr_scale"] == 0.25
    weft.resume(tmp_path / "part", quiet=True)

    def seen(run: str) -> list[tuple[int, float, float, float]]:
        return [(r["step"], r["train_loss"], r["val_loss"], r["lr"])
                for r in metrics(tmp_path / run)]

    assert seen("part") == seen("full")


@pytest.mark.parametrize(("flag", "message"), [
    (["--plateau-factor", "1.5"], "--plateau-factor must be between 0 and 1"),
    (["--plateau-patience", "-1"], "--plateau-patience must be >= 0"),
])
def test_bad_plateau_settings_are_refused(tmp_path: Path, flag: list[str],
                                          message: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(PANGRAM * 10, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(tmp_path / "r"),
                                      "--max-steps", "1", *flag])
    assert result.exit_code == 2
    assert message in result.output


def test_two_ranks_cut_together_and_follow_one_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Rank 0 loads the best weights and every rank takes them: the losses stay those of one
    # process with the whole batch.
    from .test_distributed import _flags, _launch_two

    corpus, options = overfitting_corpus(tmp_path)
    options = {k: v for k, v in options.items() if k not in ("batch_size", "quiet")}
    exact = dict(options, precision="fp32", max_steps=50)
    weft.train(corpus, out=tmp_path / "single", batch_size=8, quiet=True, **exact)
    _launch_two(monkeypatch, "train", str(corpus), "--out", str(tmp_path / "ddp"),
                *_flags(batch_size=4, **exact))
    assert load_checkpoint(tmp_path / "ddp")["trainer"]["lr_scale"] < 1.0
    single, ddp = metrics(tmp_path / "single"), metrics(tmp_path / "ddp")
    assert [r["step"] for r in ddp] == [r["step"] for r in single]
    for a, b in zip(ddp, single, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-6)
