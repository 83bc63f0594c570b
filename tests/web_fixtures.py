"""Shared by the web-export tests: small trained runs of each kind the page runs, a static
file server, and Debian's chromium driven by Playwright (as tests/test_serve_live.py does)."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import weft

SLOW_MACHINE_MS = 120_000  # how long the page may take for any one step (they take < 1 s idle)
TEXT = ("The quick brown fox jumps over the lazy dog.\n" * 30
        + "Größe, café, naïve — 日本語のテキスト.\n" * 20)


def train_tiny(root: Path, name: str, corpus: Path | None = None, **options: Any) -> Path:
    """A small model trained for a few steps: enough to write varied, repeatable text (on
    :data:`TEXT` unless a ``corpus`` is given)."""
    root.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        corpus = root / "corpus.txt"
        if not corpus.exists():
            corpus.write_text(TEXT, encoding="utf-8")
    settings: dict[str, Any] = dict(hidden_size=32, embedding_dim=16, batch_size=4, seq_len=16,
                                    eval_every=20, max_steps=20, quiet=True)
    weft.train(corpus, out=root / name, **{**settings, **options})
    return root / name


class StaticServer:
    """Serves a folder over HTTP on a free loopback port, in a thread."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no request lines in test output
        pass


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    """The exported page at ``url``, loaded and ready, and the list its errors go to."""
    page = browser.new_page()
    page.set_default_timeout(SLOW_MACHINE_MS)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(url)
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    return page, problems


def set_value(page: Any, name: str, value: object) -> None:
    """Set a control as a user would (sliders, number fields, text areas)."""
    page.eval_on_selector(f"#{name}", """(el, value) => {
        el.value = String(value);
        el.dispatchEvent(new Event('input', {bubbles: true}));
    }""", value)


def page_generate(page: Any, prompt: str, **options: Any) -> str:
    """Generate in the page with ``options`` (control ids) and return the text it wrote."""
    page.fill("#prompt", prompt)
    settings = {"temperature": 0, "top_k": 0, "top_p": 1, "repetition_penalty": 1,
                "seed": "", "stops": "", **options}
    for name, value in settings.items():
        set_value(page, name, value)
    page.click("#run")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')")
    return str(page.text_content("#out-text"))
