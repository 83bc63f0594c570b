"""``weft train --nproc-per-node N``: torchrun's launcher in weft's process, with weft's Ctrl-C.

The fast tests replace torchrun's ``main`` (what the launcher is given, and how its endings are
translated); the slow one signals a real 2-rank run once it has trained and saved.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from torch.distributed import run as torch_run
from torch.distributed.elastic.multiprocessing import ProcessFailure, SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from weft.cli import launch
from weft.cli.main import cli
from weft.errors import WeftError
from weft.training.checkpoint import load_checkpoint

from . import procs

TINY = ["--hidden-size", "32", "--embedding-dim", "16", "--batch-size", "4", "--seq-len", "16",
        "--eval-every", "5", "--threads", "1", "--seed", "3", "--precision", "fp32",
        "--patience", "0", "--quiet"]


@pytest.fixture
def torchrun_main(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """torchrun's ``main`` replaced: it records its arguments and returns."""
    calls: list[list[str]] = []
    monkeypatch.setattr(torch_run, "main", lambda args: calls.append(list(args)))
    return calls


def _raising(error: BaseException) -> Callable[[list[str]], None]:
    def main(args: list[str]) -> None:
        raise error
    return main


def test_the_ranks_get_the_command_line_as_typed(monkeypatch: pytest.MonkeyPatch,
                                                  torchrun_main: list[list[str]]) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)

    def launched(nproc_per_node: int, weft_args: list[str]) -> None:  # without os._exit
        raise SystemExit(launch.run_ranks(nproc_per_node, weft_args))

    monkeypatch.setattr(launch, "launch", launched)
    args = ["train", "c.txt", "--out", "runs/x", "--nproc-per-node", "2", "--batch-size", "4"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert torchrun_main == [["--standalone", "--nproc-per-node", "2", "-m", "weft", *args]]


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                             (signal.SIGHUP, 129)])
def test_a_signal_that_stopped_the_ranks_is_one_line_and_the_shells_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sig: signal.Signals,
    status: int
) -> None:
    monkeypatch.setattr(torch_run, "main", _raising(SignalException("got it", sig)))
    assert launch.run_ranks(2, ["train"]) == status
    err = capsys.readouterr().err
    assert err == f"weft: interrupted by {sig.name}: the 2 ranks have stopped\n"


def test_a_failed_rank_gives_its_status(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    failure = ProcessFailure(local_rank=1, pid=1, exitcode=2, error_file="<N/A>")
    monkeypatch.setattr(torch_run, "main", _raising(ChildFailedError("weft", {1: failure})))
    assert launch.run_ranks(2, ["train"]) == 2
    assert "rank 1 failed with exit status 2" in capsys.readouterr().err
    assert launch.failed_rank_code(-9) == 137  # a rank that SIGKILL ended


def test_only_a_process_outside_torchrun_launches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert not launch.is_launcher(1)
    assert launch.is_launcher(2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # one of the ranks it started
    assert not launch.is_launcher(2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # plain torchrun with another count
    with pytest.raises(WeftError, match="leave it out under torchrun"):
        launch.is_launcher(2)


def _wait_for_saved_step(out: Path, proc: subprocess.Popen[str], timeout: float) -> None:
    """Until rank 0 has trained and saved a state: the run is in its loop, whenever the machine
    delivers the signal."""
    deadline = time.monotonic() + timeout
    while not (out / "last.safetensors").exists():
        assert proc.poll() is None, f"ended first (exit {proc.returncode})"
        assert time.monotonic() < deadline, "no saved step in time"
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_stops_both_ranks_with_one_clean_ending(corpus: Path, tmp_path: Path,
                                                        sig: signal.Signals,
                                                        status: int) -> None:
    """The signal goes to the launcher's process group, as a terminal sends Ctrl-C: the launch
    ends within the deadline with the shell's status, "interrupted", the command to continue
    and no traceback (plain torchrun prints its SignalException's); that command works."""
    out = tmp_path / "ddp"
    command = procs.weft("train", str(corpus), "--out", str(out), *TINY,
                         "--max-steps", "100000", "--nproc-per-node", "2")
    with open(tmp_path / "stderr", "w+", encoding="utf-8") as err_file:
        proc = subprocess.Popen(command, env=procs.env(), stdout=subprocess.DEVNULL,
                                stderr=err_file, text=True, start_new_session=True)
        try:
            _wait_for_saved_step(out, proc, timeout=240)
            os.killpg(proc.pid, sig)
            proc.wait(timeout=30)  # the step, the save, the ranks' ends: seconds
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err_file.seek(0)
        err = err_file.read()
    assert proc.returncode == status, err
    assert "interrupted" in err and "Traceback" not in err, err
    resume = f"weft train --nproc-per-node 2 --resume {out}"
    assert f"state saved. Continue with: {resume}" in err, err
    step = load_checkpoint(out)["trainer"]["step"]
    if sig == signal.SIGINT:  # the printed command continues the run (once is enough)
        done = subprocess.run(procs.weft(*resume.split()[1:], "--max-steps", str(step + 2)),
                              env=procs.env(), capture_output=True, text=True, timeout=240,
                              check=False)
        assert done.returncode == 0, done.stderr
        assert load_checkpoint(out)["trainer"]["step"] == step + 2
