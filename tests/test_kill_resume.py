"""Real training processes interrupted by signals and by kill -9, then resumed.

Each resumed run must end with exactly the losses of an uninterrupted run (CPU, fixed seed,
one thread): same data position, optimizer, schedule and random state.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import weft
from weft.cli.main import cli
from weft.training.checkpoint import load_checkpoint

from . import procs

# A constant learning rate after warm-up (min_lr_ratio 1): the schedule then does not depend on
# --max-steps, so a run that is to be interrupted can have no end of its own (UNENDING) and still
# take exactly the reference's steps. Whenever the signal comes, however late on a loaded
# machine, it finds the run training: no outcome depends on when it is delivered.
OPTIONS = dict(hidden_size=48, embedding_dim=16, batch_size=8, seq_len=16, eval_every=5,
               max_steps=30, threads=1, seed=3, dropout=0.1, layers=2, min_lr_ratio=1.0,
               patience=0)
UNENDING = dict(max_steps=100_000)


def flags(**changes: object) -> list[str]:
    return [arg for key, value in (OPTIONS | changes).items()
            for arg in ("--" + key.replace("_", "-"), str(value))] + ["--quiet"]


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    weft.train(corpus, out=out, quiet=True, **OPTIONS)  # type: ignore[arg-type]
    return out


def _interrupt(out: Path, sig: signal.Signals, after_records: int,
               *args: str) -> tuple[int, str]:
    """Start training, send ``sig`` once ``after_records`` evaluations are logged."""
    proc = procs.start(*args)
    reached = procs.wait_for(lambda: len(procs.metrics(out)) >= after_records, proc)
    assert reached and proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("signals", [
    (signal.SIGINT, signal.SIGKILL),
    pytest.param((signal.SIGINT, signal.SIGTERM, signal.SIGKILL), marks=pytest.mark.slow),
])
def test_signals_and_kill_9_then_resume_give_the_same_losses(
    corpus: Path, reference: Path, tmp_path: Path, signals: tuple[signal.Signals, ...]
) -> None:
    out = tmp_path / "run"
    command = ["train", str(corpus), "--out", str(out), *flags(**UNENDING)]
    for sig in signals:
        code, err = _interrupt(out, sig, len(procs.metrics(out)) + 1, *command)
        command = ["train", "--resume", str(out)]
        if sig == signal.SIGKILL:
            # kill -9 gives no chance to save: the resume starts from the last evaluation.
            assert code == -signal.SIGKILL
            continue
        assert code == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], err
        assert f"weft train --resume {out}" in err and sig.name in err
        assert "saved" in err and "Traceback" not in err
    # The last resume runs in this process (saves a Python start-up), to the reference's end.
    # (A run that a loaded machine let go past it before a signal came has the same losses.)
    done = CliRunner().invoke(cli, [*command, "--max-steps", "30"])
    assert done.exit_code == 0, done.output
    assert [loss for loss in procs.losses(out) if loss[0] <= 30] == procs.losses(reference)


def test_second_ctrl_c_quits_at_once(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = procs.start("train", str(corpus), "--out", str(out), *flags(**UNENDING))
    assert procs.wait_for(lambda: (out / "last.safetensors").exists(), proc)
    # Stopped, the process gets both signals at once when it continues: the second cannot
    # come after the first has already ended the run (this process may be slow to send it).
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGTERM)  # e.g. a scheduler, then an impatient Ctrl-C
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert time.monotonic() - started < 10
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    # Whatever was saved last is intact (even if the second signal came in the middle of a
    # save) and resumable.
    assert load_checkpoint(out)["trainer"]["step"] >= 5


# Ctrl-C during start-up: tests/test_interrupts.py injects the request at each phase boundary;
# signals sent at arbitrary moments, on a busy machine, are benchmarks/ctrl_c_stress.py's.
