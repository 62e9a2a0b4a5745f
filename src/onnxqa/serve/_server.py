"""``onnxqa serve``: the app under uvicorn, stopped gracefully by SIGTERM or SIGINT.

With ``workers > 1`` uvicorn starts that many processes sharing the port, each loading its own
model through :func:`worker_app` from the settings this process leaves in the environment, with
Prometheus' multiprocess mode summing their metrics; SIGTERM to this process stops them all.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import uvicorn

from .._errors import InputError
from ..runtime import BatchSettings, load
from . import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DOCUMENTS, DEFAULT_REQUEST_TIMEOUT
from ._app import create_app
from ._auth import resolve_api_keys

__all__ = ["run_server", "worker_app"]

_SETTINGS = "ONNXQA_SERVE_SETTINGS"  # the workers' settings, as JSON (the keys travel in it, never logged)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    api_keys: Sequence[str] = (),
    api_key_file: str | None = None,
    protect_metrics: bool = False,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
    workers: int = 1,
) -> int:
    """Load ``model_dir`` and serve it until SIGTERM or SIGINT; returns 0 after a graceful stop.

    On the signal the server stops accepting connections, answers the requests in flight (for at
    most ``request_timeout`` seconds more), stops the model's threads and returns. ``arena``:
    onnxruntime's CPU memory arena, as in :func:`onnxqa.load`. ``api_keys``, ``api_key_file`` and
    ``$ONNXQA_API_KEY``: the keys every ``/v1/`` route asks for (none: open; binding a host other
    than loopback without keys warns). ``workers``: processes sharing the port, each with its own
    model and ``threads``.

    Raises:
        ModelLoadError, ProviderError, InputError: as :func:`onnxqa.load` (before anything listens).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    keys = resolve_api_keys(api_keys, api_key_file)
    if not keys and not _loopback(host):
        warnings.warn(
            f"serving on {host} without API keys: anyone who reaches this address can use the model "
            "(set --api-key, --api-key-file or ONNXQA_API_KEY)",
            UserWarning,
            stacklevel=2,
        )
    settings = {
        "model_dir": str(model_dir),
        "device": device,
        "precision": precision,
        "threads": threads,
        "batching": asdict(batching or BatchSettings()),
        "arena": arena,
        "max_body_bytes": max_body_bytes,
        "request_timeout": request_timeout,
        "api_keys": keys,
        "protect_metrics": protect_metrics,
        "max_documents": max_documents,
    }
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": int(request_timeout) + 5,
    }
    if workers == 1:
        app = _app_from(settings)
        return _serve(uvicorn.Config(app, **common), f"{model_dir} ({app.state.onnxqa.facts['precision']})", host, port)
    _app_from({**settings, "check_only": True})  # fail here, before anything listens, on a bad directory
    return _serve_workers(settings, common, workers)


def _app_from(settings: dict[str, Any]) -> Any:
    loading = {
        "device": settings["device"],
        "precision": settings["precision"],
        "threads": settings["threads"],
        "batching": BatchSettings(**settings["batching"]),
        "arena": settings["arena"],
    }
    if settings.get("check_only"):
        load(settings["model_dir"], **loading).close()
        return None
    return create_app(
        settings["model_dir"],
        **loading,
        max_body_bytes=settings["max_body_bytes"],
        request_timeout=settings["request_timeout"],
        api_keys=settings["api_keys"],
        protect_metrics=settings["protect_metrics"],
        max_documents=settings["max_documents"],
    )


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory), from the settings :func:`run_server` left."""
    return _app_from(json.loads(os.environ[_SETTINGS]))


def _serve_workers(settings: dict[str, Any], common: dict[str, Any], workers: int) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="onnxqa-metrics-")
    saved = {name: os.environ.get(name) for name in (_SETTINGS, "PROMETHEUS_MULTIPROC_DIR")}
    os.environ[_SETTINGS] = json.dumps(settings)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        config = uvicorn.Config("onnxqa.serve._server:worker_app", factory=True, workers=workers, **common)
        return _serve(config, f"{settings['model_dir']} ({workers} workers)", common["host"], common["port"])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(config: uvicorn.Config, what: str, host: str, port: int) -> int:
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in place
    # that is a no-op and the process exits 0 after a graceful stop
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(
        f"onnxqa serve: {what} at http://{host}:{port} (a page at /, docs at /docs; stop with SIGTERM or Ctrl-C)",
        file=sys.stderr,
        flush=True,
    )
    try:
        if config.workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[config.bind_socket()]).run()  # SIGTERM: each worker stops gracefully
            return 0
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def _stopped(signum: int, frame: Any) -> None:
    pass
