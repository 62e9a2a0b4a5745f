"""Replicated online inference with Ray Serve: the HTTP contract of ``onnxqa serve`` (the same
FastAPI app, routes and errors) in every replica, with ``@serve.batch`` coalescing concurrent
requests into one ``qa.batch`` call."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray import serve

from .._errors import InputError, OnnxQAError, RequestTimeoutError
from ..runtime import Answer, QuestionAnswerer, load
from ..serve._app import DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT, build_app

__all__ = ["QADeployment", "deployment", "run", "serve_until_stopped"]

_Item = tuple[list[tuple[str, str]], dict[str, Any]]  # one request: its pairs and options
_Outcome = tuple[list[list[Answer]] | None, Exception | None]


def _answer_items(qa: QuestionAnswerer, items: Sequence[_Item]) -> list[_Outcome]:
    """Requests with the same options answered by one ``qa.batch`` call (each request alone for a
    variant that is not batch-invariant); a request that fails gets its own error."""
    outcomes: list[_Outcome] = [(None, None)] * len(items)
    groups: dict[Any, list[int]] = {}
    for i, (_, options) in enumerate(items):
        key = tuple(sorted(options.items())) if qa.batch_invariant else i
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        options = items[members[0]][1]
        pairs = [pair for i in members for pair in items[i][0]]
        try:
            results = qa.batch(pairs, **options)
        except OnnxQAError as exc:
            if len(members) == 1:
                outcomes[members[0]] = (None, exc)
                continue
            for i in members:  # find the request at fault; the others are answered
                try:
                    outcomes[i] = (qa.batch(items[i][0], **options), None)
                except OnnxQAError as own:
                    outcomes[i] = (None, own)
            continue
        first = 0
        for i in members:
            outcomes[i] = (results[first : first + len(items[i][0])], None)
            first += len(items[i][0])
    return outcomes


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
        max_batch_size: int = 16,
        batch_wait_timeout_s: float = 0.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        model_name: str | None = None,
    ) -> None:
        self.qa = load(model_dir, device=device, precision=precision, threads=threads)
        self._max_body_bytes, self._request_timeout = max_body_bytes, request_timeout
        self._model_name = model_name
        batched: Any = self._answer_batch  # @serve.batch's wrapper, with its setters
        batched.set_max_batch_size(max_batch_size)
        batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def __serve_build_asgi_app__(self) -> Any:
        return build_app(
            self.qa,
            answer_fn=self._answer,
            model_name=self._model_name,
            max_body_bytes=self._max_body_bytes,
            request_timeout=self._request_timeout,
        )

    async def _answer(self, pairs: list[tuple[str, str]], options: dict[str, Any], timeout: float) -> Any:
        try:
            answers, error = await asyncio.wait_for(self._answer_batch((pairs, options)), timeout)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(f"no answer within the timeout of {timeout:g} s") from None
        if error is not None:
            raise error
        return answers

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def _answer_batch(self, items: list[_Item]) -> list[_Outcome]:
        return await asyncio.to_thread(_answer_items, self.qa, items)


def deployment(
    model_dir: str | os.PathLike[str],
    *,
    replicas: int = 1,
    num_cpus: float = 1,
    num_gpus: float = 0,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    max_batch_size: int = 16,
    batch_wait_timeout_s: float = 0.0,
    max_ongoing_requests: int = 64,
    max_queued_requests: int = 256,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    name: str = "onnxqa",
) -> Any:
    """The Ray Serve application of ``model_dir`` (pass it to ``serve.run``): ``replicas`` replicas
    of ``num_cpus`` CPUs and ``num_gpus`` GPUs, each with onnxruntime ``threads`` (default: its
    CPUs). ``max_batch_size`` requests coalesce into one call, the first waiting at most
    ``batch_wait_timeout_s`` for company; beyond ``max_ongoing_requests`` per replica requests
    queue, and beyond ``max_queued_requests`` Serve answers 503. ``model_dir`` must be readable
    at the same path on every node.
    """
    for label, value in (("replicas", replicas), ("max_batch_size", max_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{label} must be an integer >= 1, got {value!r}")
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
        max_batch_size=max_batch_size,
        batch_wait_timeout_s=batch_wait_timeout_s,
        max_body_bytes=max_body_bytes,
        request_timeout=request_timeout,
        model_name=Path(model_dir).resolve().name,
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
    return serve.run(deployment(model_dir, **options), name=name, route_prefix=route_prefix)


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
            f"at http://{host}:{port} (docs: /docs; stop with SIGTERM or Ctrl-C)",
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
