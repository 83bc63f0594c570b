"""Load on ``weft serve``: N concurrent clients on loopback for a bounded time.

The server runs as its own process (``python -m weft serve``, default limits unless given) on
127.0.0.1; the clients run here, each sending one generation request after another. Reported:
requests/s, latency p50/p99 (and time to first token when streaming), generated tokens/s, and
errors, which must be zero (the script exits 1 otherwise).

    python -m benchmarks.serve_load                                  # trains a small model first
    python -m benchmarks.serve_load --run runs/demo --clients 8 --duration 30 --stream
    python -m benchmarks.serve_load --request '{"quantize": "int8", "compile": true}'
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
from pathlib import Path
from typing import Any

import httpx

import weft
from benchmarks.common import REPO, machine, write_result

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


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def client(http: httpx.AsyncClient, body: dict[str, Any], stream: bool, deadline: float,
                 samples: list[dict[str, Any]]) -> None:
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        sample: dict[str, Any] = {"ok": False}
        try:
            if stream:
                first = None
                async with http.stream("POST", "/v1/generate", json={**body, "stream": True}
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
            else:
                response = await http.post("/v1/generate", json=body)
                sample = {"ok": response.status_code == 200,
                          "tokens": response.json().get("usage", {}).get("completion_tokens", 0)}
                if not sample["ok"]:
                    sample["error"] = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            sample = {"ok": False, "error": repr(exc)}
        sample["latency"] = time.perf_counter() - start
        samples.append(sample)


async def load(url: str, clients: int, duration: float, body: dict[str, Any],
               stream: bool) -> tuple[list[dict[str, Any]], float]:
    samples: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        # One whole request first: it loads the model and, with "compile", compiles.
        await http.post("/v1/generate", json=body)
        start = time.perf_counter()
        await asyncio.gather(*(client(http, body, stream, start + duration, samples)
                               for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return samples, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run directory [default: train a small one]")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--stream", action="store_true", help="stream (server-sent events)")
    parser.add_argument("--server-args", default="",
                        help="extra weft serve flags, e.g. '--max-concurrent 4'")
    parser.add_argument("--request", default="{}",
                        help='more request fields as JSON, e.g. \'{"quantize": "int8"}\'')
    parser.add_argument("--name", default="serve_load")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or small_run(Path(tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "weft", "serve", str(run), "--host", "127.0.0.1",
                   "--port", str(port), *args.server_args.split()]
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        server = subprocess.Popen(command, env=env)
        try:
            for _ in range(200):
                try:
                    httpx.get(f"{url}/v1/health", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            body = {"model": run.name, "prompt": PROMPT, "max_new_tokens": args.max_new_tokens,
                    "temperature": 0.8, **json.loads(args.request)}
            samples, elapsed = asyncio.run(load(url, args.clients, args.duration, body,
                                                args.stream))
            server_health = httpx.get(f"{url}/v1/health").json()
        finally:
            server.terminate()
            server.wait(10)

    ok = [s for s in samples if s["ok"]]
    errors = [s for s in samples if not s["ok"]]
    latencies = [s["latency"] for s in ok]
    firsts = [s["first"] for s in ok if s.get("first") is not None]
    tokens = sum(s["tokens"] for s in ok)
    result = {
        "benchmark": "serve_load",
        "command": "python -m benchmarks.serve_load " + " ".join(sys.argv[1:]),
        "clients": args.clients,
        "duration_s": round(elapsed, 1),
        "max_new_tokens": args.max_new_tokens,
        "stream": args.stream,
        "server_args": args.server_args,
        "request": json.loads(args.request),
        "requests": len(samples),
        "requests_per_s": round(len(ok) / elapsed, 2),
        "latency_p50_s": round(percentile(latencies, 0.5), 4),
        "latency_p99_s": round(percentile(latencies, 0.99), 4),
        "first_token_p50_s": round(percentile(firsts, 0.5), 4) if firsts else None,
        "tokens_per_s": round(tokens / elapsed, 1),
        "errors": len(errors),
        "error_examples": sorted({s.get("error", "") for s in errors})[:3],
        "server_health": server_health,
        "machine": machine(),
    }
    write_result(args.name, result)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
