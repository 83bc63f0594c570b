"""Kill a real training run at random moments, resume it each time, and compare the losses.

Trains once without interruption, then trains the same run again while killing it K times
(``kill -9`` by default; ``--signals`` mixes in SIGINT and SIGTERM) at random moments, each time
resuming with ``weft train --resume``. With a fixed seed on the CPU the resumed run must end with
exactly the metrics of the uninterrupted one: every step, training loss and validation loss.

    python -m benchmarks.kill_resume --cycles 20
    python -m benchmarks.kill_resume --cycles 10 --signals KILL,INT,TERM --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, machine, write_result
from weft.runs import CONFIG, LAST_STATE, METRICS, PREVIOUS_STATE
from weft.training.metrics import read_metrics

TEXT = ("The quick brown fox jumps over the lazy dog.\n" * 60
        + "Pack my box with five dozen liquor jugs.\n" * 40)
FLAGS = ["--hidden-size", "48", "--embedding-dim", "16", "--batch-size", "8", "--seq-len", "16",
         "--eval-every", "5", "--threads", "1", "--seed", "3", "--dropout", "0.1",
         "--layers", "2", "--quiet"]


def weft(*args: str) -> list[str]:
    return [sys.executable, "-m", "weft", *args]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    return env


def metrics(run: Path) -> list[dict[str, Any]]:
    return read_metrics(run / METRICS)


def losses(run: Path) -> list[tuple[int, float, float]]:
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in metrics(run)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20, help="interruptions to survive")
    parser.add_argument("--steps", type=int, default=300, help="--max-steps of the run")
    parser.add_argument("--signals", default="KILL", help="comma list of KILL, INT, TERM")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    args = parser.parse_args()
    info = machine()  # the load average before the work, as it is named
    rng = random.Random(args.seed)
    sigs = [getattr(signal, "SIG" + name.strip().upper()) for name in args.signals.split(",")]
    env = environment()
    flags = [*FLAGS, "--max-steps", str(args.steps)]

    with tempfile.TemporaryDirectory(prefix="weft-kill-") as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(TEXT, encoding="utf-8")
        reference, run = Path(tmp) / "reference", Path(tmp) / "run"
        started = time.perf_counter()
        first = subprocess.Popen(weft("train", str(corpus), "--out", str(reference), *flags),
                                 env=env)
        while not metrics(reference) and first.poll() is None:
            time.sleep(0.01)
        startup = time.perf_counter() - started  # imports, corpus, first evaluation
        if first.wait() != 0:
            raise SystemExit("the uninterrupted run failed")
        uninterrupted = time.perf_counter() - started
        per_cycle = (uninterrupted - startup) / args.cycles

        cycles: list[dict[str, Any]] = []
        command = weft("train", str(corpus), "--out", str(run), *flags)
        while len(cycles) < args.cycles:
            proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            # One kill in five lands during start-up; the others once the process has logged a
            # new evaluation, after a random stretch of training (saves included), so that the
            # kills spread over the whole run whatever the machine's load.
            launched, logged = time.perf_counter(), len(metrics(run))
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.2, startup))
            else:
                while len(metrics(run)) <= logged and proc.poll() is None:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, per_cycle))
            delay = time.perf_counter() - launched
            chosen = rng.choice(sigs)
            sig: signal.Signals | None = chosen
            if proc.poll() is None:
                proc.send_signal(chosen)
            else:
                sig = None  # it had already finished
            _, err = proc.communicate()
            err = err.replace(tmp, "TMP")  # no machine-specific paths in the results
            records = metrics(run)
            cycles.append({"signal": sig.name if sig else None, "after_s": round(delay, 2),
                           "exit": proc.returncode,
                           "last_logged_step": records[-1]["step"] if records else 0,
                           "error": err.strip().splitlines()[-1] if proc.returncode not in
                           (0, -9, 130, 143) and err.strip() else None})
            print(json.dumps(cycles[-1]), flush=True)
            if proc.returncode == 0:
                break  # finished before it could be interrupted: nothing left to resume
            started_ok = (run / CONFIG).exists() and any(
                (run / name).exists() for name in (LAST_STATE, PREVIOUS_STATE))
            command = (weft("train", "--resume", str(run)) if started_ok else
                       weft("train", str(corpus), "--out", str(run), *flags))
            if not started_ok and run.exists():
                # Killed before the first state was saved: start again from nothing.
                for path in sorted(run.iterdir()):
                    path.unlink()
                run.rmdir()
        final = subprocess.run(weft("train", "--resume", str(run)), env=env,
                               capture_output=True, text=True, check=False)
        same = losses(run) == losses(reference)
        result = {
            "machine": info,
            "cycles": len(cycles),
            "interruptions": sum(1 for c in cycles if c["signal"]),
            "signals": sorted({c["signal"] for c in cycles if c["signal"]}),
            "steps": args.steps,
            "uninterrupted_s": round(uninterrupted, 1),
            "startup_s": round(startup, 1),
            "final_exit": final.returncode,
            "evaluations_compared": len(losses(reference)),
            "identical_losses": same,
            "errors": [c for c in cycles if c["error"]],
            "runs": cycles,
        }
        write_result("kill_resume", result)
        if not same or final.returncode != 0:
            raise SystemExit("FAILED: the resumed run does not match the uninterrupted one")
        # A cycle whose run had finished before its signal interrupted nothing.
        interrupted = sum(1 for c in cycles if c["signal"])
        print(f"OK: {interrupted} interruptions of {len(cycles)} cycles, losses identical at "
              f"all {len(losses(reference))} evaluations")


if __name__ == "__main__":
    main()
