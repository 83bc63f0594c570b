"""The JSON body of an error, in the shape of the API its path belongs to: OpenAI's
``{"error": {message, type, param, code}}`` under ``/v1``, weft's ``{"detail": message}``
everywhere else.

Plain Python (no FastAPI), so that the ASGI middleware of :mod:`~weft.serving.limits` answers
in the same shapes as the routes.
"""

from __future__ import annotations

from typing import Any


def is_openai(path: str) -> bool:
    """Whether ``path`` is in the OpenAI-compatible API."""
    return path == "/v1" or path.startswith("/v1/")


def error_body(message: str, param: str | None = None, code: str | None = None,
               kind: str = "invalid_request_error") -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_content(path: str, status: int, message: str, param: str | None = None,
                  code: str | None = None) -> dict[str, Any]:
    """The body of an error with ``status`` for a request to ``path``."""
    if not is_openai(path):
        return {"detail": message}
    kind = ("authentication_error" if status == 401
            else "invalid_request_error" if status < 500 else "server_error")
    return error_body(message, param, code, kind)
