"""Web export speed: single-stream tokens/s of the exported page in headless Chromium, side by
side with weft's own generation on the same model, and each page's weight (MB).

Models: ``builtin:english`` (a 2 x 512 byte LSTM) and the default character model (weft's
defaults for ``--level char``; trained one step: speed does not depend on what the weights
have learned). The page is measured through its own Generate button (the worker reports its
tokens and seconds, priming included); weft through ``LanguageModel.samples`` (the path
``weft generate`` takes, --quantize auto). Each figure is the best of ``--rounds`` runs after
one warm-up run. Needs Debian's chromium and Playwright.

    python -m benchmarks.web_export_speed [--tokens 300] [--rounds 2]
"""

from __future__ import annotations

import argparse
import functools
import re
import shutil
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.common import machine, write_result
from weft.api import load_language_model

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]
CORPUS = "The quick brown fox jumps over the lazy dog.\n" * 200


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def page_speed(browser: Any, url: str, tokens: int, rounds: int) -> float:
    """Best tokens/s of ``rounds`` generations in the page (after one warm-up)."""
    page = browser.new_page()
    page.set_default_timeout(300_000)
    page.goto(url)
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    page.fill("#max_new_tokens", str(tokens))
    page.fill("#seed", "1")
    best = 0.0
    for _ in range(rounds + 1):
        page.click("#run")
        page.wait_for_function("document.querySelector('#status').textContent"
                               ".startsWith('done')")
        match = re.search(r"done: (\d+) tokens, (\d+) tokens/s", page.text_content("#status"))
        assert match is not None
        best = max(best, float(match.group(2)))
    page.close()
    return best


def weft_speed(run: str | Path, tokens: int, rounds: int) -> float:
    model = load_language_model(run, device="cpu")
    best = 0.0
    for _ in range(rounds + 1):
        start = time.perf_counter()
        sample = model.samples("", max_new_tokens=tokens, seed=1, copy_meter=False)[0]
        best = max(best, sample.text.tokens / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    import weft

    info = machine()  # load average taken at the start
    root = Path(tempfile.mkdtemp(prefix="web-export-speed-"))
    (root / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    weft.train(root / "corpus.txt", out=root / "char", max_steps=1, quiet=True)
    models: dict[str, str | Path] = {"builtin:english": "builtin:english",
                                     "default char model": root / "char"}
    sites = root / "sites"
    results: dict[str, Any] = {}
    handler = functools.partial(_Quiet, directory=str(sites))
    for name, run in models.items():
        model = load_language_model(run, device="cpu")
        for fmt in ("float16", "int8"):
            site = model.export_web(sites / f"{len(results)}-{fmt}", weights=fmt)
            results.setdefault(name, {})[f"page_mb_{fmt}"] = round(
                sum(p.stat().st_size for p in site.iterdir()) / 1e6, 2)
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            for k, name in enumerate(models):
                figures = results[name]
                figures["page_tokens_per_s"] = page_speed(
                    browser, f"{url}/{k}-float16/", args.tokens, args.rounds)
                figures["weft_tokens_per_s"] = round(weft_speed(models[name], args.tokens,
                                                                args.rounds))
                figures["page_share_of_weft"] = round(
                    figures["page_tokens_per_s"] / figures["weft_tokens_per_s"], 2)
            browser.close()
        httpd.shutdown()
    shutil.rmtree(root)
    write_result("web_export_speed", {"machine": info, "tokens": args.tokens,
                                      "rounds": args.rounds, "models": results})


if __name__ == "__main__":
    main()
