"""The HTTP app: a thin adapter from JSON requests to the runtime's async API.

Every answering route goes through the runtime's scheduler (fair between requests, cancellable,
bounded by windows); the outermost layer (:class:`~onnxqa.serve._guard.Guard`) bounds bodies and
cancels the work of a client that disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from .._errors import InputError, OnnxQAError, OverloadedError, RequestTimeoutError, RequestTooLargeError
from ..runtime import BatchSettings, Document, QuestionAnswerer, load
from . import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DOCUMENTS, DEFAULT_REQUEST_TIMEOUT
from ._auth import KeyCheck, Unauthorized
from ._guard import Guard
from ._metrics import Metrics
from ._page import render_page
from ._schemas import (
    AnswerRequest,
    AnswerResponse,
    BatchRequest,
    BatchResponse,
    DocumentsRequest,
    DocumentsResponse,
    ErrorResponse,
)

__all__ = ["build_app", "create_app"]

log = logging.getLogger("onnxqa.serve")

_ENDPOINTS = ("/", "/v1/answer", "/v1/answer/batch", "/v1/answer/documents", "/health", "/ready", "/metrics")
_bearer = HTTPBearer(auto_error=False, description="an API key of the server (`--api-key`)")
_CREDENTIALS = Depends(_bearer)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


class _Service:
    """What the routes share: the answerer, the metrics, readiness, the keys."""

    def __init__(
        self,
        qa: QuestionAnswerer,
        model_name: str,
        request_timeout: float,
        keys: KeyCheck,
        max_documents: int,
        owns_answerer: bool,
    ) -> None:
        self.qa, self.request_timeout, self.keys, self.max_documents = qa, request_timeout, keys, max_documents
        self.owns_answerer = owns_answerer
        self.facts = {"model": model_name, "precision": qa.precision, "device": qa.device}
        self.metrics = Metrics()
        self.metrics.model.labels(**self.facts).set(1)
        qa.add_batch_listener(self._observe_call)
        self.ready = threading.Event()
        self._warming: threading.Thread | None = None
        self._lock = threading.Lock()

    def _observe_call(self, requests: int, windows: int, seconds: float) -> None:
        self.metrics.observe_batch(requests, windows, seconds)
        self.metrics.set_queue(self.qa.queue_depth, self.qa.windows_waiting)

    def start_warm_up(self) -> None:
        """Warm the model up once, on a thread of its own (from the lifespan or the first request)."""
        with self._lock:
            if self._warming is None:
                self._warming = threading.Thread(target=self._warm_up, name="onnxqa-warm-up", daemon=True)
                self._warming.start()

    def _warm_up(self) -> None:
        try:
            self.qa.warm_up()
            self.ready.set()
        except Exception:  # readiness stays false; /ready says so
            log.exception("warm-up failed")

    def close(self) -> None:
        """Wait for the warm-up; then stop the answerer's async threads for good if the app loaded it."""
        with self._lock:
            warming = self._warming
        if warming is not None:
            warming.join(self.request_timeout)
        if self.owns_answerer:
            self.qa.close()

    def error(self, kind: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        self.metrics.errors.labels(kind).inc()
        return JSONResponse({"error": kind, "message": message}, status_code=status, headers=headers)

    def timeout(self, asked: float | int | None) -> float:
        return self.request_timeout if asked is None else min(float(asked), self.request_timeout)

    async def answer(self, call: Any) -> Any:
        """Await ``call`` (the runtime's async API); its typed errors become 4xx / 503 / 504 responses."""
        self.start_warm_up()
        self.metrics.set_queue(self.qa.queue_depth, self.qa.windows_waiting)
        try:
            return await call
        except RequestTooLargeError as exc:
            return self.error("too_many_windows", 413, str(exc))
        except InputError as exc:
            return self.error("invalid_request", 422, str(exc))
        except OverloadedError as exc:
            return self.error("overloaded", 503, str(exc), {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
        except RequestTimeoutError as exc:
            return self.error("timeout", 504, str(exc))
        except asyncio.CancelledError:
            self.metrics.errors.labels("client_closed").inc()
            raise


def _answers(answers: list[Any]) -> list[dict[str, Any]]:
    return [{"text": a.text, "score": a.score, "start": a.start, "end": a.end} for a in answers]


def _document_answers(answers: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "text": a.text,
            "score": a.score,
            "start": a.start,
            "end": a.end,
            "document": a.document,
            "id": a.id,
            "page_number": a.page_number,
            "is_impossible": a.is_impossible,
        }
        for a in answers
    ]


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        if e.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')})")
            continue
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        if e.get("type") in ("string_too_short", "string_pattern_mismatch") and where:
            parts.append(f"{where} is empty or whitespace only; pass some text")
            continue
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


def create_app(
    model: QuestionAnswerer | str | os.PathLike[str],
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
) -> FastAPI:
    """The HTTP app (ASGI) answering questions with ``model``: a loaded :class:`QuestionAnswerer`
    (yours: the app never closes it) or a model directory, loaded now with ``device``,
    ``precision``, ``threads``, ``batching`` and ``arena`` (the app's: closed at its shutdown).

    Routes: ``GET /`` (a page to try the model), ``POST /v1/answer``, ``POST /v1/answer/batch``,
    ``POST /v1/answer/documents``, ``GET /health``, ``GET /ready``, ``GET /metrics`` and the OpenAPI
    docs (``/docs``, ``/openapi.json``). With ``api_keys`` every ``/v1/`` route (and ``/metrics``
    with ``protect_metrics``) needs ``Authorization: Bearer KEY``. Mount it in an app of your own
    with ``app.mount("/qa", create_app(...))``; the model is warmed up at the app's startup, or on
    the first request where a mounted app's startup is not run.

    Raises:
        ModelLoadError, ProviderError, InputError: as :func:`onnxqa.load`, or a bad limit.
    """
    owns = not isinstance(model, QuestionAnswerer)
    if isinstance(model, QuestionAnswerer):
        qa = model
    else:
        _check_limits(max_body_bytes, request_timeout, max_documents)
        qa = load(model, device=device, precision=precision, threads=threads, batching=batching, arena=arena)
    return build_app(
        qa,
        owns_answerer=owns,
        max_body_bytes=max_body_bytes,
        request_timeout=request_timeout,
        model_name=model_name,
        api_keys=api_keys,
        protect_metrics=protect_metrics,
        max_documents=max_documents,
    )


def _check_limits(max_body_bytes: object, request_timeout: object, max_documents: object) -> None:
    for name, value in (("max_body_bytes", max_body_bytes), ("max_documents", max_documents)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(request_timeout, bool) or not isinstance(request_timeout, (int, float)) or not request_timeout > 0:
        raise InputError(f"request_timeout must be a number of seconds > 0, got {request_timeout!r}")


def build_app(
    qa: QuestionAnswerer,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    model_name: str | None = None,
    api_keys: Sequence[str] = (),
    protect_metrics: bool = False,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
    owns_answerer: bool = False,
) -> FastAPI:
    """:func:`create_app` for a loaded ``qa`` (the Ray Serve replicas build theirs with it);
    ``owns_answerer``: close ``qa`` at the app's shutdown."""
    _check_limits(max_body_bytes, request_timeout, max_documents)
    keys = KeyCheck(api_keys)
    service = _Service(qa, model_name or qa.model_dir.name, float(request_timeout), keys, max_documents, owns_answerer)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.metrics.worker_started()
        service.start_warm_up()
        yield
        await asyncio.get_running_loop().run_in_executor(None, service.close)
        service.metrics.worker_stopped()

    app = FastAPI(
        title="onnxqa",
        summary="Extractive question answering with ONNX Runtime",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.onnxqa = service
    _handlers(app, service)
    _answer_routes(app, service)
    _probe_routes(app, service, protect_metrics)
    app.add_middleware(
        Guard,
        metrics=service.metrics,
        on_error=lambda kind: service.metrics.errors.labels(kind).inc(),
        max_body_bytes=max_body_bytes,
        endpoints=_ENDPOINTS,
        keys=keys,
        guarded=lambda path: path.startswith("/v1/") or (protect_metrics and path == "/metrics"),
    )
    return app


def _authorize(service: _Service) -> Any:
    """The dependency that checks the API key (the Guard refuses first, before the body is read;
    this one puts the scheme in the OpenAPI description and guards a route however it is reached)."""

    async def authorized(credentials: HTTPAuthorizationCredentials | None = _CREDENTIALS) -> None:
        if credentials is None:
            service.keys.check(None)
        else:
            service.keys.check(f"{credentials.scheme} {credentials.credentials}")

    return authorized


def _handlers(app: FastAPI, service: _Service) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return service.error("invalid_request", 422, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body FastAPI cannot even decode: as invalid JSON
            return service.error("invalid_request", 422, f"the body is not valid JSON ({exc.detail})")
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return service.error(kind, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return service.error(
            "unauthorized",
            401,
            "this server needs an API key: send the header `Authorization: Bearer KEY`",
            {"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(OnnxQAError)
    async def failed(_: Request, exc: OnnxQAError) -> JSONResponse:
        log.error("request failed: %s", exc)
        return service.error("internal", 500, f"{type(exc).__name__}: {exc}")

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return service.error("internal", 500, "internal error; see the server log")


def _answer_routes(app: FastAPI, service: _Service) -> None:
    qa = service.qa
    guarded = [Depends(_authorize(service))] if service.keys.enabled else []
    codes = (401, 413, 422, 503, 504) if service.keys.enabled else (413, 422, 503, 504)

    @app.post("/v1/answer", response_model=AnswerResponse, responses=_errors(*codes), dependencies=guarded)
    async def answer(body: AnswerRequest) -> Any:
        """The best answers to one question in one context, best first."""
        timeout = service.timeout(body.timeout)
        out = await service.answer(qa.batch_async([(body.question, body.context)], timeout=timeout, **body.options()))
        if isinstance(out, Response):
            return out
        return JSONResponse({"answers": _answers(out[0]), **service.facts})

    @app.post("/v1/answer/batch", response_model=BatchResponse, responses=_errors(*codes), dependencies=guarded)
    async def answer_batch(body: BatchRequest) -> Any:
        """Answers for many question/context pairs, in order (windows of all pairs share inference calls)."""
        pairs = [(p.question, p.context) for p in body.pairs]
        out = await service.answer(qa.batch_async(pairs, timeout=service.timeout(body.timeout), **body.options()))
        if isinstance(out, Response):
            return out
        return JSONResponse({"results": [_answers(a) for a in out], **service.facts})

    @app.post("/v1/answer/documents", response_model=DocumentsResponse, responses=_errors(*codes), dependencies=guarded)
    async def answer_documents(body: DocumentsRequest) -> Any:
        """The best answers to one question across documents (e.g. the passages a search found), best
        first, scored comparably across documents as Haystack's extractive reader scores them; with
        ``no_answer``, one entry with ``is_impossible: true`` says how likely none of them holds it."""
        if len(body.documents) > service.max_documents:
            return service.error(
                "too_many_documents",
                413,
                f"{len(body.documents)} documents, over this server's limit of {service.max_documents} per request",
            )
        docs = [
            Document(d) if isinstance(d, str) else Document(d.content, id=d.id, meta=d.meta or {})
            for d in body.documents
        ]
        call = qa.answer_documents_async(body.question, docs, timeout=service.timeout(body.timeout), **body.options())
        out = await service.answer(call)
        if isinstance(out, Response):
            return out
        return JSONResponse({"answers": _document_answers(out), **service.facts})


def _probe_routes(app: FastAPI, service: _Service, protect_metrics: bool) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        """A page for people: ask the model a question about a text or several documents."""
        service.start_warm_up()
        config = {**service.facts, "auth": service.keys.enabled, "max_documents": service.max_documents}
        return HTMLResponse(render_page(config))

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The server is alive."""
        return {"status": "ok"}

    @app.get("/ready", responses=_errors(503))
    async def ready() -> Any:
        """The model is loaded and warmed up: requests will be answered at full speed."""
        service.start_warm_up()
        if not service.ready.is_set():
            return service.error("not_ready", 503, "the model is warming up", {"Retry-After": "1"})
        return {"status": "ready", **service.facts}

    guarded = [Depends(_authorize(service))] if protect_metrics and service.keys.enabled else []
    metrics_responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}, "description": "Metrics"}
    }
    if guarded:
        metrics_responses.update(_errors(401))

    @app.get("/metrics", response_class=Response, responses=metrics_responses, dependencies=guarded)
    async def metrics() -> Response:
        """Prometheus metrics (the text exposition format)."""
        service.metrics.set_queue(service.qa.queue_depth, service.qa.windows_waiting)
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _version() -> str:
    from .. import __version__

    return __version__
