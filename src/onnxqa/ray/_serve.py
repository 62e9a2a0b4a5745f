"""Replicated online inference with Ray Serve: the HTTP contract of ``onnxqa serve`` (the same
FastAPI app, routes, keys and errors) in every replica.

Each replica answers through the runtime's async API: the windows of the requests it holds share
inference calls in round robin (:class:`~onnxqa.BatchSettings`), a large request never stalls the
replica's other requests, and a request that times out or whose client disconnects (Serve cancels
its task) stops: none of its remaining windows run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray import serve

from .._errors import InputError
from ..runtime import BatchSettings, load
from ..serve import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_DOCUMENTS,
    DEFAULT_REQUEST_TIMEOUT,
    build_app,
    resolve_api_keys,
)

__all__ = ["QADeployment", "deployment", "run", "serve_until_stopped"]


@serve.deployment
@serve.ingress()
class QADeployment:
    """One replica: the model loaded once, the ``onnxqa serve`` app as its HTTP ingress."""

    def __init__(
        self,
        model_dir: str,
        *,
        device: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        batching: BatchSettings | None = None,
        arena: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        model_name: str | None = None,
        api_keys: Sequence[str] = (),
        protect_metrics: bool = False,
        max_documents: int = DEFAULT_MAX_DOCUMENTS,
    ) -> None:
        self.qa = load(model_dir, device=device, precision=precision, threads=threads, batching=batching, arena=arena)
        self._app_options = {
            "max_body_bytes": max_body_bytes,
            "request_timeout": request_timeout,
            "model_name": model_name,
            "api_keys": list(api_keys),
            "protect_metrics": protect_metrics,
            "max_documents": max_documents,
        }

    def __serve_build_asgi_app__(self) -> Any:
        return build_app(self.qa, owns_answerer=True, **self._app_options)


def deployment(
    model_dir: str | os.PathLike[str],
    *,
    replicas: int = 1,
    num_cpus: float = 1,
    num_gpus: float = 0,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    batching: BatchSettings | None = None,
    arena: bool = True,
    max_ongoing_requests: int = 64,
    max_queued_requests: int = 256,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    api_keys: Sequence[str] = (),
    api_key_file: str | None = None,
    protect_metrics: bool = False,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
    name: str = "onnxqa",
) -> Any:
    """The Ray Serve application of ``model_dir`` (pass it to ``serve.run``): ``replicas`` replicas
    of ``num_cpus`` CPUs and ``num_gpus`` GPUs, each with onnxruntime ``threads`` (default: its
    CPUs) and a scheduler with ``batching``'s limits (:class:`~onnxqa.BatchSettings`). Beyond
    ``max_ongoing_requests`` per replica requests queue in Serve, and beyond
    ``max_queued_requests`` Serve answers 503. ``api_keys`` (with ``api_key_file`` and
    ``$ONNXQA_API_KEY`` read here, on the driver): as ``onnxqa serve``. ``model_dir`` must be
    readable at the same path on every node.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise InputError(f"replicas must be an integer >= 1, got {replicas!r}")
    if batching is not None and not isinstance(batching, BatchSettings):
        raise InputError(f"batching must be a BatchSettings or None, got {type(batching).__name__}")
    if not Path(model_dir).is_dir():
        raise InputError(f"{model_dir} is not a model directory")
    if threads is None and num_cpus >= 1:
        threads = int(num_cpus)
    bound: Any = QADeployment  # a serve.Deployment once decorated
    return bound.options(
        name=name,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
        max_ongoing_requests=max_ongoing_requests,
        max_queued_requests=max_queued_requests,
    ).bind(
        str(Path(model_dir).resolve()),
        device=device,
        precision=precision,
        threads=threads,
        batching=batching,
        arena=arena,
        max_body_bytes=max_body_bytes,
        request_timeout=request_timeout,
        model_name=Path(model_dir).resolve().name,
        api_keys=resolve_api_keys(api_keys, api_key_file),
        protect_metrics=protect_metrics,
        max_documents=max_documents,
    )


def run(
    model_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    name: str = "onnxqa",
    route_prefix: str = "/",
    **options: Any,
) -> Any:
    """Start Serve on ``host:port`` (connecting to Ray at ``address``, or starting a local Ray
    unless one is running in this process) and deploy :func:`deployment` (``options``) as the
    application ``name``; returns its handle once the replicas are up."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False)
    serve.start(http_options={"host": host, "port": port})
    return serve.run(deployment(model_dir, name=name, **options), name=name, route_prefix=route_prefix)


def serve_until_stopped(
    model_dir: str, *, address: str | None = None, host: str = "127.0.0.1", port: int = 8000, **options: Any
) -> int:
    """``onnxqa serve --ray``: deploy, then block until SIGTERM or SIGINT and take it down (the
    whole local Ray when this process started it; only the application on a cluster it joined)."""
    import ray

    stop = threading.Event()
    own_cluster = address is None and not os.environ.get("RAY_ADDRESS")
    previous: dict[int, Any] = {}
    try:
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, configure_logging=False)
        # after ray.init, whose core worker installs a SIGTERM handler of its own that aborts; a
        # signal while the replicas start stops the server as soon as they are up
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        run(model_dir, host=host, port=port, address=address, **options)
        print(
            f"onnxqa serve: {Path(model_dir).name} on Ray Serve ({options.get('replicas', 1)} replica(s)) "
            f"at http://{host}:{port} (a page at /, docs at /docs; stop with SIGTERM or Ctrl-C)",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        try:
            if ray.is_initialized():
                if own_cluster:
                    serve.shutdown()
                else:
                    serve.delete(options.get("name", "onnxqa"))
        finally:
            ray.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0
