"""``weft serve``: an HTTP API and a web playground for the runs under one folder.

    from weft.serving import create_app
    app = create_app("runs")          # an ASGI app; `weft serve runs` runs it on uvicorn

Modules: ``app`` assembles the app (errors, API keys, middleware, ``/metrics``, the page);
``routes`` is weft's own API under ``/api`` and ``openai_api`` the OpenAI-compatible one under
``/v1``; ``server`` what the routes share; ``jobs`` takes requests to the shared generation
batch (:mod:`weft.generation.batch`) and streams their text; ``metrics`` the Prometheus
counters; ``registry`` finds and loads runs (and keeps requests inside the served folder);
``limits`` holds the protections (sizes, rows, the Host header); ``errors`` the JSON error
shapes of both APIs; ``schemas`` weft's request and response shapes; ``static/`` is the
playground page (plain HTML, CSS and JS). FastAPI, uvicorn and prometheus-client come with the
``serve`` extra; ``limits``, ``errors`` and ``registry`` need none.
"""

from __future__ import annotations

from typing import Any

from weft.serving.limits import Limits

__all__ = ["Limits", "create_app"]


def __getattr__(name: str) -> Any:
    # Imported on use, so that `weft --help` and the limits work without the serve extra.
    if name == "create_app":
        from weft.serving.app import create_app

        return create_app
    raise AttributeError(name)
