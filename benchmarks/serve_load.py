"""Load on ``weft serve``: N concurrent clients on loopback, against offline generation.

The server runs as its own process (``python -m weft serve``, default limits unless given) on
127.0.0.1; the clients run here, each sending one generation request after another for a
bounded time, for each client count in turn. Reported per count: requests/s, generated
tokens/s, latency p50/p99, time to first token p50/p99 (when streaming) and errors, which must
be zero (the script exits 1 otherwise). Then, side by side, offline generation of the same
model with ``num_return_sequences`` = the client count (what one batch of that many streams
writes with no server in between). ``--baseline-src`` also loads a server run from another
source tree (an older commit, or this one with other ``--baseline-args``), for the client
counts of ``--baseline-clients``, run by ``--baseline-python`` (another virtual environment).

    python -m benchmarks.serve_load                          # trains a small model first
    python -m benchmarks.serve_load --clients 1,8,32,64 --duration 8 --stream
    python -m benchmarks.serve_load --baseline-src OLD/src --baseline-path /v1/generate
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

import weft
from benchmarks.common import REPO, machine, write_result
from benchmarks.raw_http import RawConnection
from weft.generation import generate

PROMPT = "The "


def small_run(out: Path) -> Path:
    """A 1 x 256 character LSTM trained for 60 steps on Python's docs: speed, not quality."""
    weft.train("builtin:pydoc-topics", out=out / "bench", hidden_size=256, embedding_dim=64,
               max_steps=60, eval_every=30, batch_size=16, seq_len=64, quiet=True)
    return out / "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 4)


@contextmanager
def running_server(src: Path, run: Path, server_args: str, python: str = sys.executable
                   ) -> Iterator[str]:
    """``weft serve`` from the source tree ``src`` run by ``python``, in its own process;
    yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [python, "-m", "weft", "serve", str(run), "--host", "127.0.0.1",
               "--port", str(port), *server_args.split()]
    server = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(src)})
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


async def client(http: httpx.AsyncClient, path: str, body: dict[str, Any], stream: bool,
                 deadline: float, samples: list[dict[str, Any]]) -> None:
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        sample: dict[str, Any] = {"ok": False}
        try:
            if stream:
                first = None
                async with http.stream("POST", path, json={**body, "stream": True}
                                       ) as response:
                    event = ""
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            event = line[7:]
                            if event == "token" and first is None:
                                first = time.perf_counter() - start
                        elif line.startswith("data: ") and event == "done":
                            done = json.loads(line[6:])
                            sample = {"ok": response.status_code == 200,
                                      "tokens": done["usage"]["completion_tokens"],
                                      "first": first}
                    if response.status_code != 200:
                        sample["error"] = f"HTTP {response.status_code}"
            else:
                response = await http.post(path, json=body)
                sample = {"ok": response.status_code == 200,
                          "tokens": response.json().get("usage", {}).get("completion_tokens", 0)}
                if not sample["ok"]:
                    sample["error"] = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            sample = {"ok": False, "error": repr(exc)}
        sample["latency"] = time.perf_counter() - start
        samples.append(sample)


async def raw_client(url: str, path: str, body: dict[str, Any], stream: bool,
                     deadline: float, samples: list[dict[str, Any]]) -> None:
    """:func:`client` on a :class:`RawConnection` (less CPU per request than httpx)."""
    connection = RawConnection(url)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            first: list[float] = []

            def on_chunk(chunk: bytes, start: float = start, first: list[float] = first
                         ) -> None:
                if not first and b"event: token" in chunk:
                    first.append(time.perf_counter() - start)

            sample: dict[str, Any]
            try:
                status, content = await connection.post(
                    path, {**body, "stream": True} if stream else body,
                    on_chunk if stream else None)
                if stream:
                    done = content.rsplit(b"event: done\ndata: ", 1)[-1].split(b"\n", 1)[0]
                    usage = json.loads(done)["usage"] if status == 200 else {}
                else:
                    usage = json.loads(content).get("usage", {})
                sample = {"ok": status == 200, "tokens": usage.get("completion_tokens", 0),
                          "first": first[0] if first else None}
                if status != 200:
                    sample["error"] = f"HTTP {status}: {content[:200]!r}"
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                sample = {"ok": False, "error": repr(exc)}
                await connection.close()
            sample["latency"] = time.perf_counter() - start
            samples.append(sample)
    finally:
        await connection.close()


async def load(url: str, path: str, clients: int, duration: float, body: dict[str, Any],
               stream: bool, raw: bool = True) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await http.post(path, json=body)  # one whole request first: it loads the model
        start = time.perf_counter()
        cpu_start = time.process_time()
        if raw:
            await asyncio.gather(*(raw_client(url, path, body, stream, start + duration,
                                              samples) for _ in range(clients)))
        else:
            await asyncio.gather(*(client(http, path, body, stream, start + duration, samples)
                                   for _ in range(clients)))
        elapsed = time.perf_counter() - start
        client_cpu = time.process_time() - cpu_start
    ok = [s for s in samples if s["ok"]]
    errors = [s for s in samples if not s["ok"]]
    firsts = [s["first"] for s in ok if s.get("first") is not None]
    return {
        "clients": clients,
        "duration_s": round(elapsed, 1),
        "requests": len(samples),
        "requests_per_s": round(len(ok) / elapsed, 2),
        "tokens_per_s": round(sum(s["tokens"] for s in ok) / elapsed, 1),
        "latency_p50_s": percentile([s["latency"] for s in ok], 0.5),
        "latency_p99_s": percentile([s["latency"] for s in ok], 0.99),
        "first_token_p50_s": percentile(firsts, 0.5),
        "first_token_p99_s": percentile(firsts, 0.99),
        "client_cpu_s_per_s": round(client_cpu / elapsed, 3),
        "errors": len(errors),
        "error_examples": sorted({s.get("error", "") for s in errors})[:3],
    }


def offline(run: Path, streams: int, max_new_tokens: int, seconds: float,
            threads: int | None) -> dict[str, Any]:
    """``num_return_sequences`` = ``streams`` in this process, repeated for about ``seconds``."""
    model = weft.load(run, device="cpu")
    config = model.generation_config(max_new_tokens=max_new_tokens, temperature=0.8,
                                     num_return_sequences=streams)

    def once() -> int:
        texts = generate(model.module, model.tokenizer, PROMPT, config, threads=threads)
        return sum(t.tokens for t in texts)

    once()  # warm up
    tokens, calls, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls == 0:
        tokens += once()
        calls += 1
    elapsed = time.perf_counter() - start
    return {"streams": streams, "calls": calls, "tokens_per_s": round(tokens / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run directory [default: train a small one]")
    parser.add_argument("--clients", default="8", help="client counts, e.g. 1,8,32,64")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load each")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--stream", action="store_true", help="stream (server-sent events)")
    parser.add_argument("--server-args", default="",
                        help="extra weft serve flags, e.g. '--max-rows 32'")
    parser.add_argument("--request", default="{}",
                        help='more request fields as JSON, e.g. \'{"quantize": "int8"}\'')
    parser.add_argument("--path", default="/api/generate", help="the generation endpoint")
    parser.add_argument("--baseline-src", type=Path,
                        help="the src folder of another weft to load as well (an older commit)")
    parser.add_argument("--baseline-path", default="/api/generate")
    parser.add_argument("--baseline-args", default="",
                        help="extra weft serve flags of the baseline server")
    parser.add_argument("--baseline-python", default=sys.executable,
                        help="the baseline server's interpreter (its own virtual environment)")
    parser.add_argument("--baseline-clients", default="8")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline figures")
    parser.add_argument("--threads", type=int,
                        help="PyTorch threads of every server and of the offline runs")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="the load clients' HTTP library (raw: benchmarks/raw_http.py)")
    parser.add_argument("--name", default="serve_load")
    args = parser.parse_args()
    started = machine()  # the load average before the work, as it is named
    counts = [int(c) for c in args.clients.split(",")]
    start_load = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or small_run(Path(tmp))
        body = {"model": run.name, "prompt": PROMPT, "max_new_tokens": args.max_new_tokens,
                "temperature": 0.8, **json.loads(args.request)}
        served = []
        threads = f" --threads {args.threads}" if args.threads else ""
        with running_server(REPO / "src", run, args.server_args + threads) as url:
            for count in counts:
                served.append(asyncio.run(load(url, args.path, count, args.duration, body,
                                               args.stream, args.client == "raw")))
                print(json.dumps(served[-1]), flush=True)
        baseline = []
        if args.baseline_src:
            with running_server(args.baseline_src, run, args.baseline_args + threads,
                                args.baseline_python) as url:
                for count in (int(c) for c in args.baseline_clients.split(",")):
                    baseline.append(asyncio.run(load(url, args.baseline_path, count,
                                                     args.duration, body, args.stream,
                                                     args.client == "raw")))
                    print("baseline", json.dumps(baseline[-1]), flush=True)
        offline_runs = [] if args.no_offline else [
            offline(run, count, args.max_new_tokens, min(args.duration, 5.0), args.threads)
            for count in counts]

    # The results name no path of this machine: the run is RUN, the other tree OLD.
    paths = {str(args.run): "RUN", str(args.baseline_src): "OLD/src",
             args.baseline_python: "OLD/python"} if args.run or args.baseline_src else {}
    command = " ".join(_without_paths(arg, paths) for arg in sys.argv[1:])
    result = {
        "benchmark": "serve_load",
        "command": "python -m benchmarks.serve_load " + command,
        "max_new_tokens": args.max_new_tokens,
        "stream": args.stream,
        "client": args.client,
        "server_args": args.server_args,
        "threads": args.threads,
        "request": json.loads(args.request),
        "served": served,
        "baseline_src": "OLD/src" if args.baseline_src else None,
        "baseline_args": args.baseline_args,
        "baseline": baseline,
        "offline": offline_runs,
        "load_average_1m_at_end": os.getloadavg()[0],
        "load_average_1m_at_start": start_load,
        "machine": started,
    }
    write_result(args.name, result)
    if any(s["errors"] for s in served + baseline):
        sys.exit(1)



def _without_paths(arg: str, paths: dict[str, str]) -> str:
    """A command-line word with this machine's paths named (``--run=PATH``, ``PATH/`` too)."""
    flag, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    value = paths.get(value.rstrip("/"), value) if value.rstrip("/") in paths else value
    return f"{flag}{sep}{value}"

if __name__ == "__main__":
    main()
