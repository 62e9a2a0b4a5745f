"""The outermost ASGI layer of the app: API keys, body limit, readable refusals, client disconnects,
request metrics.

- With API keys, a request to a guarded route without a valid ``Authorization: Bearer KEY`` is
  refused with 401 before its body is read or parsed.
- A body over the limit is refused with 413 before it is parsed.
- A refusal is sent at once, then the rest of the body is read and thrown away (at most
  ``LINGER_FACTOR`` times the limit, for at most ``LINGER_SECONDS``) before the connection closes,
  as nginx's lingering close does: a client that sends its whole body before reading (Python's
  ``urllib``) reads the status instead of a connection reset. A client that asked
  ``Expect: 100-continue`` and was not sent ``100 Continue`` is not asked for its body.
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
        keys: Any = None,
        guarded: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.app, self.metrics, self.on_error = app, metrics, on_error
        self.max_body_bytes, self.endpoints = max_body_bytes, endpoints
        self.keys, self.guarded = keys, guarded

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
            if self.keys is not None and self.keys.enabled and self.guarded(path) and not self._authorized(scope):
                message = "this server needs an API key: send the header `Authorization: Bearer KEY`"
                await self._refuse(scope, receive, send_measured, 401, "unauthorized", message, 0)
                return
            body = await self._read(scope, receive)
            if body is None:  # the client left while sending its body
                status = CLIENT_CLOSED
            elif isinstance(body, int):
                message = f"the request body is over the limit of {self.max_body_bytes} bytes"
                await self._refuse(scope, receive, send_measured, 413, "payload_too_large", message, body)
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

    def _authorized(self, scope: Scope) -> bool:
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        try:
            self.keys.check(header.decode("latin-1") or None)
        except Exception:  # Unauthorized
            return False
        return True

    async def _read(self, scope: Scope, receive: Receive) -> bytes | int | None:
        """The whole body; how many bytes were read once it passes the limit (by its Content-Length,
        before reading, or as it comes); None when the client disconnected first."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                with contextlib.suppress(ValueError):
                    if int(value) > self.max_body_bytes:
                        return 0
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return size
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, kind: str, message: str, read: int
    ) -> None:
        """Answer ``status`` at once, then read and drop the rest of the body before closing."""
        self.on_error(kind)
        payload = json.dumps({"error": kind, "message": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": True})
        expects = dict(scope.get("headers", ())).get(b"expect", b"").lower() == b"100-continue"
        if not (expects and read == 0):  # not asked for the body yet: do not ask for it now
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
