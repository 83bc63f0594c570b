"""Ctrl-C at many moments of weft's start-up, on a busy machine: is it ever lost?

For each command (``weft train``, ``weft tag train``, ``weft train --nproc-per-node 2`` and, on
request, the same 2 ranks under plain ``torchrun``), sends SIGINT to its process group (as a
terminal's Ctrl-C does) at N delays spread evenly over the first ``--window`` seconds, each
repeated R times, while one busy process per core keeps the machine loaded. A trial passes
when the command ends within ``--deadline`` seconds of the signal, with exit status 130,
"interrupted" on stderr and no traceback. The delays count from the moment weft's entry point
has begun loading its libraries (NumPy or PyTorch in the process's memory map; with 2 ranks, in
every rank's): before that the interpreter itself is starting, which no program can make quiet.
Timing-dependent, so it is a benchmark, not a test.

    python -m benchmarks.ctrl_c_stress                      # 20 delays x 5, the first three
    python -m benchmarks.ctrl_c_stress --delays 4 --repeats 1 --targets train --no-load \\
        --name ctrl_c_stress_small

Plain torchrun (``--targets torchrun``) answers Ctrl-C with a traceback of its own
(``SignalException``) and exit 1 after its ranks have stopped: ``ranks_ok`` counts the trials
whose ranks all ended as weft's should (every rank "interrupted", no traceback other than
torchrun's, within the deadline); ``ok`` stays the strict criterion, which
``--nproc-per-node`` (torchrun's launcher run inside weft) is held to.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, machine, write_result

TEXT = ("The quick brown fox jumps over the lazy dog.\n" * 60
        + "Pack my box with five dozen liquor jugs.\n" * 40)
TAGGED = ("The/DET dog/NOUN barks/VERB ./PUNCT\nA/DET cat/NOUN sleeps/VERB ./PUNCT\n"
          "I/PRON see/VERB the/DET big/ADJ dog/NOUN ./PUNCT\n") * 20
LM_FLAGS = ["--hidden-size", "48", "--embedding-dim", "16", "--batch-size", "4", "--seq-len",
            "16", "--eval-every", "5", "--threads", "1", "--max-steps", "100000", "--patience",
            "0", "--quiet"]
TAG_FLAGS = ["--hidden", "16", "--word-dim", "8", "--char-dim", "4", "--char-hidden", "4",
             "--threads", "1", "--max-steps", "100000", "--patience", "0", "--quiet"]
TARGETS = ("train", "tag", "nproc", "torchrun")
DEFAULT_TARGETS = TARGETS[:3]  # plain torchrun's traceback is known: measured on request
TORCHRUN_SIGNATURE = "torch.distributed.run"


def command(target: str, data: Path, out: Path) -> list[str]:
    python = [sys.executable]
    if target == "train":
        return [*python, "-m", "weft", "train", str(data / "c.txt"), "--out", str(out),
                *LM_FLAGS]
    if target == "tag":
        return [*python, "-m", "weft", "tag", "train", str(data / "t.txt"), "--out", str(out),
                *TAG_FLAGS]
    if target == "nproc":
        return [*python, "-m", "weft", "train", str(data / "c.txt"), "--out", str(out),
                *LM_FLAGS, "--nproc-per-node", "2"]
    return [*python, "-m", TORCHRUN_SIGNATURE, "--standalone", "--nproc-per-node", "2",
            "-m", "weft", "train", str(data / "c.txt"), "--out", str(out), *LM_FLAGS]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), the ranks included (torchrun's launcher
    starts them in sessions of their own, so a process-group kill misses them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _loads_libraries(pid: int) -> bool:
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return "/numpy/" in maps or "/torch/" in maps


def _is_rank(pid: int) -> bool:  # a process below the launcher that runs weft
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"weft" in argv and TORCHRUN_SIGNATURE.encode() not in argv


def entry_point_running(proc: subprocess.Popen[bytes], target: str) -> bool:
    """Whether weft's entry point has begun loading its libraries (every rank's, 2 ranks)."""
    if target not in ("nproc", "torchrun"):
        return _loads_libraries(proc.pid)
    ranks = [pid for pid in descendants(proc.pid) if _is_rank(pid)]
    return len(ranks) == 2 and all(_loads_libraries(pid) for pid in ranks)


def trial(target: str, data: Path, delay: float, deadline: float, env: dict[str, str]
          ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="weft-ctrlc-") as tmp, \
            tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(command(target, data, Path(tmp) / "run"), env=env,
                                stdout=subprocess.DEVNULL, stderr=err_file,
                                start_new_session=True)
        started = time.monotonic()
        while not entry_point_running(proc, target) and proc.poll() is None:
            if time.monotonic() - started > 120:
                break
            time.sleep(0.002)
        entry_after = time.monotonic() - started
        time.sleep(delay)
        if proc.poll() is not None:
            err_file.seek(0)
            return {"target": target, "delay": delay, "entry_after_s": round(entry_after, 3),
                    "ok": False, "ranks_ok": False, "outcome": "ended before the signal",
                    "exit": proc.returncode, "stderr_tail": err_file.read()[-400:].decode()}
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the foreground group
        sent = time.monotonic()
        try:
            proc.wait(timeout=deadline)
            outcome = "ended"
        except subprocess.TimeoutExpired:
            outcome = "still running at the deadline"
            for pid in [proc.pid, *descendants(proc.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
        seconds = time.monotonic() - sent
        err_file.seek(0)
        # The run's temporary folder is this machine's: results name it RUN.
        err = err_file.read().decode(errors="replace").replace(str(Path(tmp) / "run"), "RUN")
    within = outcome == "ended" and seconds <= deadline
    traceback = "Traceback" in err
    # torchrun's own traceback on Ctrl-C ends with its SignalException.
    torchrun_own = all("SignalException" in part for part in err.split("Traceback")[1:])
    ranks_ok = (within and err.count("interrupted") >= 1
                and (not traceback or (target == "torchrun" and torchrun_own)))
    ok = within and proc.returncode == 130 and "interrupted" in err and not traceback
    return {"target": target, "delay": round(delay, 3), "entry_after_s": round(entry_after, 3),
            "ok": ok, "ranks_ok": ranks_ok, "outcome": outcome, "exit": proc.returncode,
            "seconds_to_exit": round(seconds, 3), "traceback": traceback,
            # where the signal found it ("... while loading weft", "... at step 0; state saved")
            "last_line": (err.strip().splitlines() or [""])[-1][:200],
            **({} if ok else {"stderr_tail": err[-400:]})}


def summarize(trials: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for target in dict.fromkeys(t["target"] for t in trials):
        mine = [t for t in trials if t["target"] == target]
        summary[target] = {
            "trials": len(mine),
            "ok": sum(t["ok"] for t in mine),
            "ranks_ok": sum(t["ranks_ok"] for t in mine),
            "exit_codes": dict(Counter(str(t["exit"]) for t in mine)),
            "tracebacks": sum(bool(t.get("traceback")) for t in mine),
            "past_deadline": sum(t["outcome"] != "ended" for t in mine),
            "slowest_exit_s": max((t.get("seconds_to_exit", 0.0) for t in mine), default=0.0),
            "failed_delays": [t["delay"] for t in mine if not t["ok"]],
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help=f"comma list of {', '.join(TARGETS)} (nproc: weft train "
                        "--nproc-per-node 2; torchrun: the same ranks under plain torchrun)")
    parser.add_argument("--delays", type=int, default=20, help="moments per command")
    parser.add_argument("--repeats", type=int, default=5, help="trials per moment")
    parser.add_argument("--window", type=float, default=5.0,
                        help="seconds after the entry point starts over which the delays spread")
    parser.add_argument("--deadline", type=float, default=10.0,
                        help="seconds from the signal within which the command must end")
    parser.add_argument("--no-load", action="store_true",
                        help="no busy processes (a machine whose cores are needed elsewhere)")
    parser.add_argument("--src", type=Path, default=REPO / "src",
                        help="the weft sources to run (e.g. an older commit's, for comparison)")
    parser.add_argument("--name", default="ctrl_c_stress", help="results file name")
    parser.add_argument("--label", default="", help="stored as is (e.g. before/after)")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := sorted(set(targets) - set(TARGETS)):
        raise SystemExit(f"unknown --targets {', '.join(unknown)}; choose from "
                         f"{', '.join(TARGETS)}")
    if args.delays < 1 or args.repeats < 1:
        raise SystemExit("--delays and --repeats must be at least 1")
    info = machine()  # the load average before the work, as it is named
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(args.src.resolve()), os.environ.get("PYTHONPATH")])))
    busy = [] if args.no_load else [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)]
    delays = [args.window * i / args.delays for i in range(args.delays)]
    trials: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="weft-ctrlc-data-") as tmp:
            data = Path(tmp)
            (data / "c.txt").write_text(TEXT, encoding="utf-8")
            (data / "t.txt").write_text(TAGGED, encoding="utf-8")
            for target in targets:
                for repeat in range(args.repeats):
                    for delay in delays:
                        result = trial(target, data, delay, args.deadline, env)
                        trials.append(result | {"repeat": repeat})
                        print(f"{target} delay {delay:.2f}s: "
                              f"{'ok' if result['ok'] else 'FAILED'} (exit {result['exit']}, "
                              f"{result.get('seconds_to_exit', '-')} s)", flush=True)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    write_result(args.name, {
        "benchmark": "ctrl_c_stress", "label": args.label, "machine": info,
        "settings": {"targets": targets, "delays": args.delays, "repeats": args.repeats,
                     "window_s": args.window, "deadline_s": args.deadline,
                     "busy_processes": len(busy), "delays_from": "weft's entry point loading "
                     "its libraries"},
        "summary": summarize(trials), "trials": trials}, quiet=True)
    print(summarize(trials))


if __name__ == "__main__":
    main()
