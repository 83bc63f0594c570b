"""Take docs/playground.png and docs/playground-training.png: the playground in headless chromium.

    python tools/playground_screenshot.py                 # trains a small model for 5 min first
    python tools/playground_screenshot.py --runs runs/    # or serves your runs (first one shown)

Needs Debian's chromium (apt-get install chromium) and the dev extra (Playwright).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

import weft
from weft.serving import create_app

DOCS = Path(__file__).resolve().parent.parent / "docs"
SETTINGS = {"temperature": 0.6, "top_k": 20, "max_new_tokens": 400}
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path)
    parser.add_argument("--prompt", default="The object ")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs
        if runs is None:
            runs = Path(tmp)
            weft.train("builtin:pydoc-topics", out=runs / "pydoc-lstm", hidden_size=256,
                       batch_size=32, time_budget=300, eval_every=50, patience=0, quiet=True)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(runs), log_level="warning"))
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                                 args=ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 720}, bypass_csp=True)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#model option", state="attached")
            page.fill("#prompt", args.prompt)
            page.fill("#seed", str(args.seed))
            for name, value in SETTINGS.items():
                page.eval_on_selector(f"#{name}", "(el, v) => { el.value = String(v); "
                                      "el.dispatchEvent(new Event('input', {bubbles: true})); }",
                                      value)
            page.click("#run")
            page.wait_for_function(
                "document.querySelector('#status').textContent.startsWith('done')")
            page.screenshot(path=str(DOCS / "playground.png"))
            page.click("#tab-training")
            page.wait_for_selector("#chart svg path.train", state="attached")
            page.screenshot(path=str(DOCS / "playground-training.png"))
            browser.close()
        server.should_exit = True
    print(f"wrote {DOCS / 'playground.png'} and {DOCS / 'playground-training.png'}")


if __name__ == "__main__":
    main()
