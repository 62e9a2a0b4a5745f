"""The outermost ASGI layer of the app: body limit, readable 413s, client disconnects, request metrics.

- A body over the limit is refused with 413 before it is parsed. The response is sent at once,
  then the rest of the body is read and thrown away (at most ``LINGER_FACTOR`` times the limit, for
  at most ``LINGER_SECONDS``) before the connection closes, as nginx's lingering close does: a
  client that sends its whole body before reading (Python's ``urllib``) reads the 413 instead of a
  connection reset. A client that asked ``Expect: 100-continue`` is not asked for its body.
- Once the body is read, the connection is watched: when the client disconnects (ASGI
  ``http.disconnect``), the request's task is cancelled, so its work in the runtime stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Guard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LINGER_FACTOR = 4  # read and discard up to this many times the body limit after a 413
LINGER_SECONDS = 5.0  # ... for at most this long
CLIENT_CLOSED = 499  # the status counted for a request whose client went away (nginx's)


class Guard:
    """Wraps the app; ``endpoints`` are the paths counted by name in the metrics (others: ``other``)."""

    def __init__(
        self,
        app: Any,
        *,
        metrics: Any,
        on_error: Callable[[str], None],
        max_body_bytes: int,
        endpoints: tuple[str, ...],
    ) -> None:
        self.app, self.metrics, self.on_error = app, metrics, on_error
        self.max_body_bytes, self.endpoints = max_body_bytes, endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        endpoint = path if path in self.endpoints else "other"
        status = 500
        t0 = time.perf_counter()

        async def send_measured(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            body = await self._read(scope, receive)
            if isinstance(body, int):
                await self._refuse_too_large(scope, receive, send_measured, body)
            elif not await self._run_watched(scope, body, receive, send_measured):
                status = CLIENT_CLOSED
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            if endpoint.startswith("/v1/"):
                self.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)

    async def _run_watched(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> bool:
        """Run the app on ``body`` while watching for a disconnect; False if the client went away first."""
        disconnected = asyncio.Event()
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        task = asyncio.ensure_future(self.app(scope, replay, send))
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # the app's own exceptions propagate
                return True
            task.cancel()  # the client went away: whatever it asked for stops
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        finally:
            watcher.cancel()
            if not task.done():
                task.cancel()

    async def _read(self, scope: Scope, receive: Receive) -> bytes | int:
        """The whole body, or how many bytes were read once it passes the limit (by its
        Content-Length, before reading, or as it comes)."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                with contextlib.suppress(ValueError):
                    if int(value) > self.max_body_bytes:
                        return 0
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return size
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _refuse_too_large(self, scope: Scope, receive: Receive, send: Send, read: int) -> None:
        message = f"the request body is over the limit of {self.max_body_bytes} bytes"
        self.on_error("payload_too_large")
        payload = json.dumps({"error": "payload_too_large", "message": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": True})
        expects = dict(scope.get("headers", ())).get(b"expect", b"").lower() == b"100-continue"
        if not expects:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._discard(receive, read), LINGER_SECONDS)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _discard(self, receive: Receive, read: int) -> None:
        """Read and drop the rest of the body, up to LINGER_FACTOR times the limit in all."""
        bound = LINGER_FACTOR * self.max_body_bytes
        while read <= bound:
            message = await receive()
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
