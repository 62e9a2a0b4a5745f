"""``onnxqa serve``: the app under uvicorn, stopped gracefully by SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import sys
from typing import Any

import uvicorn

from ..runtime import BatchSettings, load
from ._app import DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT, create_app

__all__ = ["run_server"]


def run_server(
    model_dir: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    batching: BatchSettings | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    arena: bool = True,
    log_level: str = "warning",
) -> int:
    """Load ``model_dir`` and serve it until SIGTERM or SIGINT; returns 0 after a graceful stop.

    On the signal the server stops accepting connections, answers the requests in flight (for at
    most ``request_timeout`` seconds more), stops the batching threads and returns. ``arena``:
    onnxruntime's CPU memory arena, as in :func:`onnxqa.load`.

    Raises:
        ModelLoadError, ProviderError, InputError: as :func:`onnxqa.load` (before anything listens).
    """
    qa = load(model_dir, device=device, precision=precision, threads=threads, batching=batching, arena=arena)
    app = create_app(qa, max_body_bytes=max_body_bytes, request_timeout=request_timeout)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(request_timeout) + 5,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in place
    # that is a no-op and the process exits 0 after a graceful stop
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(
        f"onnxqa serve: {qa.model_dir.name} ({qa.precision} on {qa.device}) at http://{host}:{port} "
        "(docs: /docs; stop with SIGTERM or Ctrl-C)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def _stopped(signum: int, frame: Any) -> None:
    pass
