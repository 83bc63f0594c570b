"""A minimal HTTP/1.1 keep-alive client for load tests: one connection, one request at a time.

The load clients share the 2 cores with the server they measure. httpx spends about 1 ms of
CPU per request in the client; this client, which only writes a POST and reads a
``Content-Length`` or chunked response off an asyncio stream, spends a fraction of that, so
more of the machine is left to the server (see docs/benchmarks.md, "Serving").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


class RawConnection:
    """One keep-alive connection to ``url`` (``http://host:port``); reopened when closed."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any],
                   on_chunk: Callable[[bytes], None] | None = None) -> tuple[int, bytes]:
        """POST ``body`` as JSON; the status and the whole response body. ``on_chunk`` sees
        each piece of a chunked (streamed) response as it arrives."""
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        data = json.dumps(body).encode()
        self._writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                           f"Content-Type: application/json\r\nContent-Length: {len(data)}"
                           "\r\n\r\n".encode() + data)
        reader = self._reader
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if headers.get("transfer-encoding") == "chunked":
            content = bytearray()
            while size := int((await reader.readline()).split(b";")[0], 16):
                chunk = await reader.readexactly(size)
                await reader.readexactly(2)  # the CRLF after each chunk
                content += chunk
                if on_chunk is not None:
                    on_chunk(chunk)
            await reader.readline()  # the CRLF after the last (empty) chunk
        else:
            content = bytearray(await reader.readexactly(int(headers.get("content-length",
                                                                          "0"))))
        if headers.get("connection") == "close":
            await self.close()
        return status, bytes(content)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        self._reader = self._writer = None
