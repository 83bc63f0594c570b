"""Injected faults: non-finite losses and gradients, out of memory, full disks, damaged files."""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import weft
from weft.errors import WeftError
from weft.runs import LAST_STATE, PREVIOUS_STATE
from weft.training import checkpoint, safeguards
from weft.training.checkpoint import load_state_file
from weft.training.metrics import append_metrics, read_metrics
from weft.training.stream_task import StreamLMTask
from weft.training.trainer import Trainer

from .conftest import PANGRAM, TINY, interrupted_at

OPTIONS: dict[str, Any] = dict(TINY, max_steps=30, seed=5)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "c.txt"
    path.write_text(PANGRAM * 60, encoding="utf-8")
    return path


def _losses(run: Path) -> list[tuple[int, float, float]]:
    records = read_metrics(run / "metrics.jsonl")
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in records]


def _fault_at(monkeypatch: pytest.MonkeyPatch, steps: set[int], kind: str) -> list[int]:
    """Make the training loss (or one gradient) non-finite at the given training calls."""
    original = StreamLMTask.train_loss
    calls: list[int] = []

    def train_loss(self: StreamLMTask, epoch: int, index: int) -> tuple[torch.Tensor, int]:
        loss, tokens = original(self, epoch, index)
        calls.append(len(calls))
        if calls[-1] in steps:
            if kind == "loss":
                loss = loss * math.nan
            else:
                weight = next(self.model.parameters())
                handles = []

                def poison(grad: torch.Tensor) -> torch.Tensor:
                    handles.pop().remove()  # this backward pass only
                    return torch.full_like(grad, math.inf)

                handles.append(weight.register_hook(poison))
        return loss, tokens

    monkeypatch.setattr(StreamLMTask, "train_loss", train_loss)
    return calls


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_a_few_non_finite_steps_are_skipped_and_counted(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    _fault_at(monkeypatch, {12, 13, 20}, kind)
    weft.train(corpus, out=tmp_path / "run", **OPTIONS)
    state = load_state_file(tmp_path / "run" / LAST_STATE)
    assert state["trainer"]["skipped_steps"] == 3 and state["trainer"]["step"] == 30
    assert all(math.isfinite(v) for r in _losses(tmp_path / "run") for v in r)
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_repeated_faults_stop_with_the_last_good_state_kept(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fault_at(monkeypatch, set(range(15, 100)), "loss")
    # Skipped steps leave the weights untouched, so the state saved at step 20 is still good.
    with pytest.raises(WeftError, match=r"10 steps in a row .* last good state \(step 20\)"):
        weft.train(corpus, out=tmp_path / "run", **OPTIONS)
    state = load_state_file(tmp_path / "run" / LAST_STATE)
    assert state["trainer"]["step"] == 20 and state["trainer"]["skipped_steps"] == 5
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_a_save_between_checks_never_stores_non_finite_weights(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on one GPU, where steps are not checked one by one: a timed save after every step.
    original_init = Trainer.__init__

    def unchecked(self: Trainer, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._checks_each_step = False

    monkeypatch.setattr(Trainer, "__init__", unchecked)
    _fault_at(monkeypatch, {12}, "gradient")  # step 13 applies an infinite gradient
    with pytest.raises(WeftError, match=r"became non-finite\. .*last good state \(step 12\)"):
        weft.train(corpus, out=tmp_path / "run", **OPTIONS, checkpoint_every="1ms")
    state = load_state_file(tmp_path / "run" / LAST_STATE)
    assert state["trainer"]["step"] == 12
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_out_of_memory_says_what_to_lower(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def oom(self: StreamLMTask, epoch: int, index: int) -> tuple[torch.Tensor, int]:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(StreamLMTask, "train_loss", oom)
    with pytest.raises(WeftError, match=r"out of memory.*--batch-size.*--hidden-size"):
        weft.train(corpus, out=tmp_path / "run", **OPTIONS)


def test_disk_full_while_saving_keeps_the_previous_state(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weft.train(corpus, out=tmp_path / "full", **OPTIONS)
    original = checkpoint.save_state_file
    saves: list[int] = []

    def full_disk(path: Path, state: dict[str, Any]) -> None:
        saves.append(state["trainer"]["step"])
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, state)

    monkeypatch.setattr(checkpoint, "save_state_file", full_disk)
    with pytest.raises(WeftError, match=r"No space left .* state \(step 10\) is kept.*--resume"):
        weft.train(corpus, out=tmp_path / "run", **OPTIONS)
    monkeypatch.setattr(checkpoint, "save_state_file", original)
    assert not (tmp_path / "run" / LAST_STATE).exists()
    assert load_state_file(tmp_path / "run" / PREVIOUS_STATE)["trainer"]["step"] == 10
    weft.resume(tmp_path / "run", quiet=True)
    assert _losses(tmp_path / "run") == _losses(tmp_path / "full")


def test_unwritable_output_is_refused_before_training(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(WeftError, match="cannot create"):
        weft.train(corpus, out=blocker / "run", **OPTIONS)

    original = Path.write_bytes

    def denied(self: Path, data: Any) -> int:
        if self.name == ".write-test":
            raise PermissionError(errno.EACCES, "Permission denied")
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", denied)
    with pytest.raises(WeftError, match=r"cannot write to .*Permission denied"):
        weft.train(corpus, out=tmp_path / "run", **OPTIONS)


def test_too_little_disk_space_is_refused_before_training(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(safeguards.shutil, "disk_usage",
                        lambda path: usage._replace(free=1 << 20))  # 1 MB left
    with pytest.raises(WeftError, match=r"1 MB free but this run needs about \d+ MB"):
        weft.train(corpus, out=tmp_path / "run", **OPTIONS)
    assert not (tmp_path / "run" / LAST_STATE).exists()


def test_read_only_directory(corpus: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write to read-only directories")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(WeftError, match="cannot write"):
            weft.train(corpus, out=out, **OPTIONS)
    finally:
        out.chmod(0o700)


@pytest.fixture
def weft_log() -> Iterator[list[str]]:
    """Messages of the "weft" logger (the CLI tests turn off its propagation to the root)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("weft")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_damaged_newest_state_falls_back_to_the_previous(corpus: Path, tmp_path: Path,
                                                         weft_log: list[str]) -> None:
    run = tmp_path / "run"
    weft.train(corpus, out=run, **OPTIONS)
    shutil.copytree(run, tmp_path / "copy")
    # Flip one byte in the middle of the tensor data: only the checksum can tell.
    data = bytearray((run / LAST_STATE).read_bytes())
    data[len(data) // 2] ^= 0x40
    (run / LAST_STATE).write_bytes(bytes(data))
    weft.resume(run, quiet=True, max_steps=40)
    assert any("does not match the checksum" in m for m in weft_log)
    assert (run / (LAST_STATE + ".damaged")).exists()
    assert [r[0] for r in _losses(run)] == [10, 20, 30, 40]
    # Resuming the intact copy gives the same steps 30..40 (the fallback replayed them).
    weft.resume(tmp_path / "copy", quiet=True, max_steps=40)
    assert _losses(run) == _losses(tmp_path / "copy")


def test_all_states_damaged_is_a_clear_error(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    weft.train(corpus, out=run, **OPTIONS)
    for name in (LAST_STATE, PREVIOUS_STATE):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 3])  # truncated
    with pytest.raises(WeftError, match=r"no intact training state.*truncated"):
        weft.resume(run, quiet=True, max_steps=40)


@pytest.mark.parametrize("extra", [dict(records="lines"), dict(level="word")])
def test_interrupted_runs_of_every_kind_resume_with_the_same_losses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]
) -> None:
    """Record training (shuffled per epoch) and word-level streams resume exactly too."""
    corpus = tmp_path / "lines.txt"
    corpus.write_text("".join(f"line {i} says {'ab' * (i % 7)} to the fox\n" for i in range(80)),
                      encoding="utf-8")
    options = dict(OPTIONS, max_steps=40, dropout=0.1, **extra)
    weft.train(corpus, out=tmp_path / "full", **options)
    with interrupted_at(17):
        weft.train(corpus, out=tmp_path / "part", **options)
    assert load_state_file(tmp_path / "part" / LAST_STATE)["trainer"]["step"] == 17
    weft.resume(tmp_path / "part", quiet=True)
    assert _losses(tmp_path / "part") == _losses(tmp_path / "full")


def test_a_crash_between_evaluations_loses_only_the_steps_since_the_last_timed_save(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = dict(OPTIONS, checkpoint_every=1e-9, eval_every=20)  # a save after every step
    weft.train(corpus, out=tmp_path / "full", **options)
    original = StreamLMTask.train_loss
    calls: list[int] = []

    def crash_at_14(self: StreamLMTask, epoch: int, index: int) -> tuple[torch.Tensor, int]:
        calls.append(index)
        if len(calls) == 14:
            raise RuntimeError("simulated crash")  # nothing is saved on the way out
        return original(self, epoch, index)

    monkeypatch.setattr(StreamLMTask, "train_loss", crash_at_14)
    with pytest.raises(RuntimeError, match="simulated"):
        weft.train(corpus, out=tmp_path / "run", **options)
    monkeypatch.setattr(StreamLMTask, "train_loss", original)
    assert load_state_file(tmp_path / "run" / LAST_STATE)["trainer"]["step"] == 13
    weft.resume(tmp_path / "run", quiet=True)
    assert _losses(tmp_path / "run") == _losses(tmp_path / "full")


def test_two_processes_cannot_train_in_one_run_directory(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    weft.train(corpus, out=run, **OPTIONS)
    busy = rf"another weft process \(pid {os.getpid()}\)"
    with safeguards.exclusive(run), pytest.raises(WeftError, match=busy):  # as a trainer holds it
        weft.resume(run, quiet=True, max_steps=40)
    weft.resume(run, quiet=True, max_steps=40)  # released: a killed holder releases it too


def test_a_torn_metrics_line_loses_nothing_after_it(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    append_metrics(path, {"step": 1})
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"step": 2, "val_lo')  # a crash in the middle of an append
    append_metrics(path, {"step": 3})
    assert read_metrics(path) == [{"step": 1}, {"step": 3}]
