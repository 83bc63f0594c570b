"""Data-parallel training on CPU with Gloo: N ranks x batch B take the steps of 1 x (N B)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from torch.distributed import TCPStore

import weft
from weft.cli.main import cli
from weft.training import distributed
from weft.training.checkpoint import load_checkpoint

from . import procs

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "weft"]
# fp32: on a CPU with native bf16, "auto" trains in bf16, whose rounding differs with the
# batch split; the comparisons below are for float32's exactness.
OPTIONS: dict[str, Any] = dict(hidden_size=32, embedding_dim=16, seq_len=16, eval_every=5,
                               threads=1, seed=3, quiet=True, precision="fp32")


def _flags(**options: Any) -> list[str]:
    return [arg for key, value in options.items() if key != "quiet"
            for arg in ("--" + key.replace("_", "-"), str(value))] + ["--quiet"]


# A two-rank run of the tests takes seconds; past this a rank is taken to hang.
DEADLINE = 300.0
# Every rank a client of the launcher's store (torchrun's own arrangement).
AGENT_STORE = {"TORCHELASTIC_USE_AGENT_STORE": "True"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _torchrun_env(rank: int, ranks: int, port: int) -> dict[str, str]:
    """The variables torchrun gives each of its workers."""
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(ranks),
            "LOCAL_WORLD_SIZE": str(ranks), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port)}


def _launch_two(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """Rank 1 as a ``weft`` subprocess, rank 0 as the same command in a thread of this process.

    Both join through a store this test holds, as torchrun's workers join through its agent's:
    a port found free and closed again could be taken (by another process, or by rank 1's own
    connection attempts) before rank 0 listened on it. Each rank gets :data:`DEADLINE` seconds
    (Gloo would wait 60 minutes): then rank 1 is killed, which ends a collective rank 0 waits
    in, and the test fails with where rank 0 was and what rank 1 wrote.
    """
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                     timeout=dt.timedelta(seconds=DEADLINE))
    with tempfile.TemporaryFile("w+") as rank1_log:  # a file: no pipe to leave unread
        worker = subprocess.Popen(procs.weft(*args), env=procs.env() | AGENT_STORE
                                  | _torchrun_env(1, 2, store.port) | {"OMP_NUM_THREADS": "1"},
                                  stdout=rank1_log, stderr=subprocess.STDOUT, text=True)
        results, where = _rank0(monkeypatch, store.port, args, worker)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        rank1_log.seek(0)
        rank1 = rank1_log.read()
    assert not where, f"rank 0 still running after {DEADLINE}s, at:\n{where}\nrank 1:\n{rank1}"
    result = results[0]
    rank0_error = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info \
        else ""
    assert result.exit_code == 0, f"rank 0:\n{result.output}{rank0_error}\nrank 1:\n{rank1}"
    assert worker.returncode == 0, f"rank 1 (exit {worker.returncode}):\n{rank1}"


def _rank0(monkeypatch: pytest.MonkeyPatch, port: int, args: tuple[str, ...],
           worker: subprocess.Popen[str]) -> tuple[list[Result], str]:
    """Rank 0's CLI result, and where it was if it did not end within the deadline (rank 1
    is then killed)."""
    results: list[Result] = []
    with monkeypatch.context() as patch:
        for key, value in (_torchrun_env(0, 2, port) | AGENT_STORE).items():
            patch.setenv(key, value)
        patch.setattr(distributed, "TIMEOUT", dt.timedelta(seconds=DEADLINE))
        rank0 = threading.Thread(target=lambda: results.append(
            CliRunner().invoke(cli, list(args))), name="rank 0", daemon=True)
        rank0.start()
        rank0.join(DEADLINE)
        if not rank0.is_alive() or rank0.ident is None:
            return results, ""
        where = "".join(traceback.format_stack(sys._current_frames()[rank0.ident]))
        worker.kill()
        rank0.join(30)
    return results, where


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_losses(a: Path, b: Path) -> None:
    ra, rb = _records(a), _records(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    assert [r["tokens"] for r in ra] == [r["tokens"] for r in rb]  # global tokens
    for x, y in zip(ra, rb, strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-5)
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-5)


def test_two_ranks_follow_one_process_with_twice_the_batch_and_resume_with_one(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The schedule follows --max-steps, so both runs stop at 10 and are resumed up to 20.
    weft.train(corpus, out=tmp_path / "single", batch_size=8, max_steps=10, **OPTIONS)
    weft.resume(tmp_path / "single", quiet=True, max_steps=20)
    # Two ranks of batch 4 for ten steps, then the same run resumed by one process.
    _launch_two(monkeypatch, "train", str(corpus), "--out", str(tmp_path / "ddp"),
                *_flags(batch_size=4, max_steps=10, **OPTIONS))
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["global_batch_size"] == 8 and config["train"]["batch_size"] == 4
    weft.resume(tmp_path / "ddp", quiet=True, max_steps=20)
    _assert_same_losses(tmp_path / "ddp", tmp_path / "single")


@pytest.mark.slow
def test_torchrun_two_ranks_then_resume_with_two(corpus: Path, tmp_path: Path) -> None:
    """The real launcher, and a single-process run resumed on two ranks."""
    weft.train(corpus, out=tmp_path / "single", batch_size=8, max_steps=20, **OPTIONS)
    torchrun = TORCHRUN
    done = subprocess.run([*torchrun, "train", str(corpus), "--out", str(tmp_path / "ddp"),
                           *_flags(batch_size=4, max_steps=20, **OPTIONS)],
                          env=procs.env(), capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    _assert_same_losses(tmp_path / "ddp", tmp_path / "single")

    weft.train(corpus, out=tmp_path / "half", batch_size=8, max_steps=10, **OPTIONS)
    done = subprocess.run([*torchrun, "train", "--resume", str(tmp_path / "half"),
                           "--max-steps", "20", "--quiet"], env=procs.env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    weft.train(corpus, out=tmp_path / "resumed", batch_size=8, max_steps=10, **OPTIONS)
    weft.resume(tmp_path / "resumed", quiet=True, max_steps=20)
    _assert_same_losses(tmp_path / "half", tmp_path / "resumed")


@pytest.mark.slow
def test_ctrl_c_under_torchrun_stops_every_rank_after_one_saved_step(
    corpus: Path, tmp_path: Path
) -> None:
    """A terminal's Ctrl-C reaches torchrun, which forwards it to its workers (they run in
    their own session): all of them stop after the same step and rank 0 saves."""
    out = tmp_path / "ddp"
    proc = subprocess.Popen([*TORCHRUN, "train", str(corpus), "--out", str(out),
                             *_flags(batch_size=4, max_steps=100_000, **OPTIONS)],
                            env=procs.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert procs.wait_for(lambda: (out / "last.safetensors").exists(), proc, timeout=240)
    os.killpg(proc.pid, signal.SIGINT)  # the whole foreground process group, as Ctrl-C does
    _, err = proc.communicate(timeout=120)
    assert f"weft train --resume {out}" in err and "state saved" in err
    state = load_checkpoint(out)
    assert state["trainer"]["step"] >= 5 and len(state["ranks"]) == 2
    done = subprocess.run([*TORCHRUN, "train", "--resume", str(out), "--max-steps",
                           str(state["trainer"]["step"] + 3), "--quiet"], env=procs.env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr


def test_record_training_under_torchrun_is_refused_before_any_rank_waits(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _torchrun_env(1, 2, _free_port()).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(weft.WeftError, match="does not run under torchrun"):
        weft.train(corpus, out=tmp_path / "r", records="lines", batch_size=4, **OPTIONS)


def test_single_process_needs_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    dist, device = distributed.setup("auto")
    assert not dist.enabled and dist.is_main and device == "auto"
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(weft.WeftError, match="integers"):
        distributed.from_environment()


def test_a_lost_rank_is_one_line_saying_what_is_kept() -> None:
    from weft.training.distributed import lost_a_rank

    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                        "[127.0.0.1]:11136: Connection reset by peer\nException raised from ...")
    error = lost_a_rank(gloo, 40, "weft train --resume runs/d")
    assert error is not None and "\n" not in str(error)
    assert "another rank stopped or lost its connection" in str(error)
    assert "step 40 is kept: continue with weft train --resume runs/d" in str(error)
    assert lost_a_rank(RuntimeError("shape mismatch"), 40, "x") is None
