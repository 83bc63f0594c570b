from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import weft
from weft.config import ModelConfig, TrainConfig
from weft.data.stream import split_tokens
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import CharTokenizer
from weft.training.schedule import learning_rate, progress
from weft.training.stream_task import StreamLMTask
from weft.training.trainer import Trainer

from .conftest import PANGRAM, TINY, interrupted_at


def test_one_training_step_lowers_the_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    text = PANGRAM * 20
    tok = CharTokenizer.train([text])
    ids = tok.encode(text)
    model = RNNLanguageModel(ModelConfig(vocab_size=tok.vocab_size, hidden_size=32,
                                         embedding_dim=16))
    config = TrainConfig(batch_size=4, seq_len=16, lr=1e-2, warmup_steps=0)
    task = StreamLMTask(model, tok, ids, ids[:0], config, torch.device("cpu"), None)
    trainer = Trainer(task, config, tmp_path, device=torch.device("cpu"), precision=None,
                      quiet=True)
    task.start_epoch(0)
    before, _ = task.train_loss(0, 0)
    trainer._step(before)
    task.start_epoch(0)
    after, _ = task.train_loss(0, 0)
    assert after.item() < before.item()


def test_overfit_then_generate_back_exactly(tmp_path: Path) -> None:
    corpus = tmp_path / "pangram.txt"
    corpus.write_text(PANGRAM * 30, encoding="utf-8")
    model = weft.train(corpus, out=tmp_path / "run", hidden_size=64, embedding_dim=16,
                       batch_size=4, seq_len=32, lr=1e-2, warmup_steps=5, max_steps=200,
                       val_fraction=0.0, eval_every=50, seed=0, quiet=True)
    metrics = [json.loads(line) for line in
               (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < 0.05
    text = model.generate("The quick", temperature=0, max_new_tokens=len(PANGRAM) * 2)[0]
    assert ("The quick" + text).startswith(PANGRAM + PANGRAM[:-10])


def test_validation_selects_best_and_run_directory_is_complete(tiny_run: Path) -> None:
    files = {p.name for p in tiny_run.iterdir()}
    assert {"config.json", "tokenizer.json", "model.safetensors", "last.safetensors",
            "metrics.jsonl", "generation.json", "loss.png"} <= files
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["train"]["max_steps"] == 30 and config["model"]["vocab_size"] > 10
    records = [json.loads(x) for x in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30]
    assert all(np.isfinite(r["val_loss"]) for r in records)


def test_resume_continues_with_the_same_losses(tmp_path: Path, monkeypatch) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(PANGRAM * 60, encoding="utf-8")
    options = dict(TINY, dropout=0.1, layers=2, seed=3)
    weft.train(corpus, out=tmp_path / "full", max_steps=40, **options)

    # Interrupt the second run after step 25 as Ctrl-C would, then resume it.
    with interrupted_at(25):
        weft.train(corpus, out=tmp_path / "part", max_steps=40, **options)
    assert len((tmp_path / "part" / "metrics.jsonl").read_text().splitlines()) == 2
    weft.resume(tmp_path / "part", quiet=True)

    def losses(run: str) -> list[tuple[int, float, float]]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["train_loss"], r["val_loss"]) for r in map(json.loads, lines)]

    assert losses("part") == losses("full")


def test_schedule_warms_up_then_decays() -> None:
    lrs = [learning_rate(1.0, s, progress(s, 0, 0, max_steps=100, epochs=None,
                                          time_budget=None), 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1, rel=0.1)
    assert max(lrs) == lrs[9]
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))


def test_split_matches_config(tiny_run: Path) -> None:
    config = json.loads((tiny_run / "config.json").read_text())
    total = config["train_tokens"] + config["val_tokens"]
    train, val = split_tokens(np.zeros(total), config["data"]["val_fraction"])
    assert (len(train), len(val)) == (config["train_tokens"], config["val_tokens"])


@pytest.mark.parametrize(("steps_per_epoch", "expected"),
                         [(3, 20), (40, 20), (100, 50), (999, 499), (5000, 500)])
def test_automatic_evaluation_interval_is_half_an_epoch_within_bounds(
        steps_per_epoch: int, expected: int) -> None:
    assert TrainConfig().with_eval_every(steps_per_epoch).eval_every == expected
    assert TrainConfig(eval_every=7).with_eval_every(steps_per_epoch).eval_every == 7


def test_small_corpus_is_evaluated_twice_per_epoch_and_the_interval_recorded(
        tmp_path: Path) -> None:
    # 4 columns x 16 tokens = 64 tokens a step; 5,000 training tokens give 78 steps an epoch.
    corpus = tmp_path / "pangram.txt"
    corpus.write_text((PANGRAM * 120)[:5200], encoding="utf-8")
    weft.train(corpus, out=tmp_path / "run", hidden_size=16, embedding_dim=8, batch_size=4,
               seq_len=16, max_steps=80, val_fraction=0.04, threads=1, quiet=True)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["eval_every"] == 39
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [39, 78, 80]


def test_ctrl_c_while_the_optimizer_is_built_stops_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first AdamW imports torch._dynamo, and PyTorch swallows a KeyboardInterrupt raised
    # inside that import: the Ctrl-C must still stop the run (before its first step).
    import os
    import signal

    real_adamw = torch.optim.AdamW

    def adamw_during_which_ctrl_c_comes(*args: object, **kwargs: object) -> object:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the handler runs here
        except KeyboardInterrupt:
            pass  # what PyTorch's import does with it
        return real_adamw(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", adamw_during_which_ctrl_c_comes)
    text = PANGRAM * 20
    tok = CharTokenizer.train([text])
    ids = tok.encode(text)
    model = RNNLanguageModel(ModelConfig(vocab_size=tok.vocab_size, hidden_size=16,
                                         embedding_dim=8))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=1000)
    task = StreamLMTask(model, tok, ids, ids[:0], config, torch.device("cpu"), None)
    trainer = Trainer(task, config, tmp_path, device=torch.device("cpu"), precision=None,
                      quiet=True)
    result = trainer.fit()
    assert result.steps == 0 and result.stopped_because == "interrupted by SIGINT"
