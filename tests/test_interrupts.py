"""Ctrl-C and SIGTERM only record a request (weft/interrupts.py); start-up stops at its phase
boundaries and the loop after its step.

Every test here is deterministic: a request is injected at a chosen boundary (as the signal
handler would record it), or a process sends a signal to itself, which its main thread handles
before its next line. Whether a signal sent at an arbitrary moment is handled (the timing that
depends on the machine's load) is measured by ``benchmarks/ctrl_c_stress.py``, not here.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from weft import interrupts
from weft.cli import trains
from weft.cli.main import cli
from weft.runs import LOCK
from weft.training.checkpoint import load_checkpoint
from weft.training.faults import StopRequests

from . import procs

FLAGS = ["--hidden-size", "32", "--embedding-dim", "16", "--batch-size", "4", "--seq-len", "16",
         "--eval-every", "5", "--max-steps", "10", "--threads", "1", "--quiet"]


@pytest.fixture(autouse=True)
def _fresh_requests() -> Iterator[None]:
    handlers = {sig: signal.getsignal(sig) for sig in interrupts.SIGNALS}
    interrupts.reset()
    yield
    interrupts.reset()
    if interrupts.listening():
        interrupts.stop_listening()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def _train(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["train", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=procs.env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def _request_after(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, reason: str) -> None:
    """``owner.name`` records a stop request once it has run: a signal at that boundary."""
    original = getattr(owner, name)

    def then_request(*args: Any, **kwargs: Any) -> Any:
        value = original(*args, **kwargs)
        interrupts.request(reason)
        return value

    monkeypatch.setattr(owner, name, then_request)


# ------------------------------------------------------------------ the request itself
def test_a_signal_is_only_recorded_and_a_phase_boundary_raises_it() -> None:
    interrupts.listen()
    signal.raise_signal(signal.SIGTERM)  # handled before the next line: nothing raised
    assert interrupts.requested() == "SIGTERM"
    with pytest.raises(interrupts.Interrupted) as caught:
        interrupts.check("reading the corpus")
    assert str(caught.value) == "interrupted by SIGTERM while reading the corpus"
    assert caught.value.exit_code == 143
    assert not isinstance(caught.value, Exception)  # no `except Exception` swallows it


def test_commands_that_do_not_train_get_pythons_ctrl_c_back() -> None:
    assert trains(["train", "c.txt"]) and trains(["tag", "train", "t.txt"])
    assert not any(trains(args) for args in (["generate", "run"], ["tag", "eval"], [],
                                             ["--help"], ["serve", "train"]))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupts.listen()
    interrupts.stop_listening()
    assert not interrupts.listening()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    # A job that its shell started in the background has SIGINT ignored: it stays so.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    interrupts.listen()
    interrupts.stop_listening()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_signal_while_pytorch_imports_is_kept_not_raised() -> None:
    # A KeyboardInterrupt raised inside PyTorch's imports was lost or broke them; a request
    # recorded meanwhile survives them intact.
    done = _python("""
        import signal
        from weft import interrupts
        interrupts.listen()
        signal.raise_signal(signal.SIGINT)
        import numpy, torch, torch._dynamo
        print(interrupts.requested(), torch.ones(2).sum().item())
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SIGINT", "2.0"]


def test_a_second_signal_quits_at_once_with_its_line() -> None:
    done = _python("""
        import signal, time
        from weft import interrupts
        interrupts.listen()
        interrupts.set_second_signal_line(lambda: "interrupted: continue with RUN")
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
        time.sleep(30)
        print("not reached")
    """)
    assert done.returncode == 130
    assert done.stderr == "interrupted: continue with RUN\n" and done.stdout == ""


def test_while_nothing_is_done_a_signal_ends_weft_at_once() -> None:
    # Loading weft (PyTorch with it) takes seconds on a busy machine and has no boundary in it.
    done = _python("""
        import signal, time
        from weft import interrupts
        interrupts.listen(quit_while="loading weft")
        signal.raise_signal(signal.SIGTERM)
        time.sleep(30)
        print("not reached")
    """)
    assert done.returncode == 143
    assert done.stderr == "weft: interrupted by SIGTERM while loading weft; nothing was done\n"
    assert done.stdout == ""


def test_ctrl_c_while_the_entry_point_loads_ends_quietly(corpus: Path, tmp_path: Path) -> None:
    # A request recorded before the entry point runs is taken at its first boundary.
    out = tmp_path / "run"
    done = _python(f"""
        import signal, sys
        from weft import interrupts
        interrupts.listen()
        signal.raise_signal(signal.SIGINT)
        sys.argv = ["weft", "train", {str(corpus)!r}, "--out", {str(out)!r}]
        import weft.cli
        weft.cli.main()
    """)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "weft: interrupted by SIGINT while loading weft; nothing was done\n"
    assert not out.exists()


def test_the_training_loop_uses_the_entry_points_requests(
        capfd: pytest.CaptureFixture[str]) -> None:
    interrupts.listen()
    stops = StopRequests(announce=True)
    with stops.listening(lambda: "second"):
        signal.raise_signal(signal.SIGINT)  # recorded: no KeyboardInterrupt here
        assert stops.reason == "SIGINT"
    assert interrupts.listening()  # still the entry point's handlers
    assert capfd.readouterr().err == ("warning: SIGINT: stopping after this step and saving "
                                      "the state (press Ctrl-C again to quit at once, without "
                                      "saving)\n")


# ------------------------------------------------------------------ each phase of start-up
@pytest.mark.parametrize(("phase", "owner", "name", "reason"), [
    ("loading PyTorch", None, "", "SIGINT"),
    ("reading the corpus", "weft.training.fit_language_model", "prepare_corpus", "SIGTERM"),
    ("building the model", "weft.training.fit_language_model", "RNNLanguageModel", "SIGINT"),
])
def test_a_request_during_start_up_stops_at_the_next_boundary(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    phase: str, owner: str | None, name: str, reason: str,
) -> None:
    if owner is None:
        interrupts.request(reason)
    else:
        _request_after(monkeypatch, sys.modules[owner], name, reason)
    out = tmp_path / "run"
    code, output = _train(str(corpus), "--out", str(out), *FLAGS)
    assert code == interrupts.EXIT_CODES[reason], output
    assert (f"weft: interrupted by {reason} while {phase}; nothing was trained: run the same "
            "command again") in output
    # Nothing written (the lock file does not count): the same command can start again.
    names = [p.name for p in out.iterdir()] if out.exists() else []
    assert names == [LOCK] or (not names and phase == "loading PyTorch")
    monkeypatch.undo()
    interrupts.reset()
    assert _train(str(corpus), "--out", str(out), *FLAGS)[0] == 0


def test_a_request_while_a_resumed_run_starts_keeps_its_state(corpus: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train(str(corpus), "--out", str(out), *FLAGS)[0] == 0
    before = (out / "last.safetensors").read_bytes()
    interrupts.request("SIGINT")
    code, output = _train("--resume", str(out), "--max-steps", "20")
    assert code == 130
    assert ("interrupted by SIGINT while loading PyTorch; the saved state is unchanged. "
            f"Continue with: weft train --resume {out}") in output
    assert (out / "last.safetensors").read_bytes() == before


@pytest.mark.parametrize(("after", "step"), [("optimizer", 0), ("first step", 1)])
def test_a_request_from_the_optimizer_on_stops_after_the_step_and_saves(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: str, step: int,
) -> None:
    import torch

    from weft.training.trainer import Trainer

    if after == "optimizer":
        _request_after(monkeypatch, torch.optim, "AdamW", "SIGINT")
    else:
        _request_after(monkeypatch, Trainer, "_step", "SIGINT")
    out = tmp_path / "run"
    code, output = _train(str(corpus), "--out", str(out), *FLAGS)
    assert code == 130, output
    assert (f"weft: interrupted by SIGINT at step {step}; state saved. Continue with: "
            f"weft train --resume {out}") in output
    assert load_checkpoint(out)["trainer"]["step"] == step
    monkeypatch.undo()
    interrupts.reset()
    assert _train("--resume", str(out))[0] == 0
    assert load_checkpoint(out)["trainer"]["step"] == 10


@pytest.mark.parametrize(("after", "says"), [
    ("load_data", "interrupted by SIGTERM while reading the sentences"),
    ("encode", "interrupted by SIGTERM while building the model"),
    ("TaggingTask", "interrupted by SIGTERM at step 0; state saved. Continue with: "
                    "weft tag train --resume"),
])
def test_tag_train_stops_at_its_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           after: str, says: str) -> None:
    from weft.tagging import train as tagger_training

    data = tmp_path / "train.txt"
    data.write_text("The/DET dog/NOUN barks/VERB ./PUNCT\nA/DET cat/NOUN sleeps/VERB ./PUNCT\n"
                    * 6, encoding="utf-8")
    _request_after(monkeypatch, tagger_training, after, "SIGTERM")
    out = tmp_path / "tagger"
    result = CliRunner().invoke(cli, ["tag", "train", str(data), "--out", str(out),
                                      "--hidden", "16", "--word-dim", "8", "--char-dim", "4",
                                      "--char-hidden", "4", "--max-steps", "20", "--quiet"])
    assert result.exit_code == 143, result.output
    assert f"weft: {says}" in result.output
    if after == "TaggingTask":  # past the last boundary: the loop stops before step one
        assert load_checkpoint(out)["trainer"]["step"] == 0
    else:
        assert [p.name for p in out.iterdir()] == [LOCK]


def test_under_torchrun_every_rank_stops_at_the_boundary_where_one_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The ranks add up their requests at each boundary (one collective), so a rank whose
    # signal has not come yet stops with the others instead of waiting for them.
    from weft.training import distributed, fit_language_model

    sums: list[list[float]] = []
    other_rank_asked = [1.0]
    monkeypatch.setattr(distributed, "all_sum",
                        lambda values: sums.append(values) or [values[0] + other_rank_asked[0]])
    rank1 = distributed.Distributed(rank=1, world_size=2, local_rank=1)
    with pytest.raises(interrupts.Interrupted) as caught:
        fit_language_model._stop_if_requested(rank1, "reading the corpus")
    assert str(caught.value) == "interrupted by a signal on another rank while reading the corpus"
    assert caught.value.exit_code == 130 and sums == [[0.0]]
    other_rank_asked[0] = 0.0
    fit_language_model._stop_if_requested(rank1, "building the model")  # nobody asked: goes on
    interrupts.request("SIGTERM")
    with pytest.raises(interrupts.Interrupted, match="by SIGTERM while building the model"):
        fit_language_model._stop_if_requested(rank1, "building the model")
    assert sums[-1] == [1.0]
