"""``weft serve`` on a real uvicorn server: clients that go away, a full server, and the
playground page in a real headless browser (skipped when Debian's chromium is absent)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import httpx

from weft.serving import Limits, create_app

from .serve_fixtures import LiveServer, loader, make_served, wait_until

ENDLESS = 1_000_000  # tokens: a generation that only ends when it is stopped
SLOW_MACHINE_MS = 120_000  # how long the page may take for any one step (they take < 1 s idle)


@pytest.fixture(scope="module")
def server(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    served = make_served(tmp_path_factory.mktemp("live"), tiny_run)
    # One slot, a short wait: a second generation is turned away while one runs.
    limits = Limits(max_new_tokens=ENDLESS, max_rows=1, max_sequences=1, max_waiting=1,
                    queue_timeout=0.3)
    app = create_app(served, limits=limits, loader=loader, batch_process=True,
                     allowed_hosts=["127.0.0.1", "localhost"])
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
        # Every test leaves the server idle, its one slot free.
        wait_until(lambda: client.get("/api/health").json()["active"] == 0, 10)


def health(http: Any) -> dict[str, Any]:
    data: dict[str, Any] = http.get("/api/health").json()
    return data


def test_a_streaming_client_that_leaves_stops_its_generation(http: Any) -> None:
    before = health(http)["cancelled"]
    body = {"model": "tiny", "prompt": "The", "max_new_tokens": ENDLESS, "stream": True}
    with http.stream("POST", "/api/generate", json=body) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == "event: token"
        assert json.loads(next(lines).removeprefix("data: "))["index"] == 0
        # The only slot is taken: another request waits 0.3 s, then is turned away.
        busy = http.post("/api/generate", json={"model": "tiny", "max_new_tokens": 1})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "busy" in busy.json()["detail"]
    # Closing the response closes the connection: the generation stops between tokens.
    wait_until(lambda: health(http)["active"] == 0, 5)
    assert health(http)["cancelled"] == before + 1
    assert health(http)["rejected"] >= 1


def test_a_plain_client_that_leaves_stops_its_generation(server: LiveServer, http: Any) -> None:
    before = health(http)["cancelled"]
    body = json.dumps({"model": "tiny", "max_new_tokens": ENDLESS}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        wait_until(lambda: health(http)["active"] == 1, 5)
    wait_until(lambda: health(http)["active"] == 0, 5)
    assert health(http)["cancelled"] == before + 1


def test_other_host_names_are_refused(http: Any) -> None:
    # Bound to loopback, only loopback names: a rebinding DNS name cannot reach the API.
    assert http.get("/api/models", headers={"host": "attacker.example"}).status_code == 400


def test_the_playground_generates_stops_and_shows_errors(browser: Any, server: LiveServer,
                                                        http: Any) -> None:
    # bypass_csp lets the test evaluate its own scripts; the page itself runs under the CSP.
    page = browser.new_page(viewport={"width": 390, "height": 844}, bypass_csp=True)
    # Playwright waits 30 s by default; at load 10 on two cores a step once took longer.
    page.set_default_timeout(SLOW_MACHINE_MS)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{server.url}/?model=tiny")
    page.wait_for_selector("#model option[value='exp/tiny2']", state="attached")
    assert page.input_value("#model") == "tiny"

    # Generate with a fixed seed: the page shows exactly what the API gives.
    page.fill("#prompt", "The")
    page.fill("#seed", "5")
    set_slider(page, "max_new_tokens", 40)
    set_slider(page, "temperature", 0.9)
    page.click("#run")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')")
    expected = http.post("/api/generate", json={"model": "tiny", "prompt": "The", "seed": 5,
                                               "max_new_tokens": 40, "temperature": 0.9,
                                               "top_k": 0, "top_p": 1,
                                               "repetition_penalty": 1}).json()["texts"][0]
    assert page.text_content("#out-text") == expected
    assert page.text_content("#out-prompt") == "The"

    # A copy limit: a token that would copy 2 characters of the training corpus is drawn
    # again, so the text goes on to its length without one...
    page.fill("#max_copy", "2")
    page.click("#run")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')")
    status = page.text_content("#status") or ""
    assert "done: 40 tokens" in status and "cut at the length limit" in status
    assert re.search(r"longest copy from the corpus 1 character:|nothing copied", status)
    # ... unless every draw would copy: at 1 character every character of the corpus does.
    page.fill("#max_copy", "1")
    page.click("#run")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')")
    status = page.text_content("#status") or ""
    assert "cut before a copy of 1 character;" in status and "nothing copied" in status
    page.fill("#max_copy", "")

    # Stop a generation that would never end by itself.
    before = health(http)["cancelled"]
    page.fill("#seed", "")
    set_slider(page, "max_new_tokens", ENDLESS)
    page.click("#run")
    page.wait_for_function("document.querySelector('#out-text').textContent.length > 20")
    page.click("#stop")
    page.wait_for_function("document.querySelector('#status').textContent === 'stopped'")
    wait_until(lambda: health(http)["active"] == 0, SLOW_MACHINE_MS / 1000)
    assert health(http)["cancelled"] == before + 1
    assert page.is_enabled("#run") and not page.is_enabled("#stop")

    # A server error is shown to the user.
    page.select_option("#model", "untrained")
    page.click("#run")
    page.wait_for_selector("#error", state="visible")
    assert "train it first" in page.text_content("#error")

    # A tagger run tags instead: words with their tags.
    page.select_option("#model", "tagger")
    assert page.text_content("#run") == "Tag" and not page.is_visible("#controls")
    page.fill("#prompt", "Ada met Bob")
    page.click("#run")
    page.wait_for_selector("#tags .tag")
    assert page.locator("#tags .tag").all_text_contents() == ["AdaNOUN", "metX", "BobNOUN"]

    # The training tab draws the loss curves of the selected run.
    page.select_option("#model", "tiny")
    page.click("#tab-training")
    page.wait_for_selector("#chart svg path.train", state="attached")
    assert page.locator("#chart svg circle.val-dot").count() >= 1
    assert "cell" in page.text_content("#config")
    page.click("#x-time")
    page.wait_for_selector("#chart svg path.train", state="attached")
    assert problems == []
    page.close()


def set_slider(page: Any, name: str, value: float) -> None:
    page.eval_on_selector(f"#{name}", """(el, value) => {
        el.value = String(value);
        el.dispatchEvent(new Event('input', {bubbles: true}));
    }""", value)

