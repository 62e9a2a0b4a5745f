"""The HTTP app: a thin adapter from JSON requests to :meth:`QuestionAnswerer.batch_async`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from .._errors import InputError, OnnxQAError, OverloadedError, RequestTimeoutError
from ..runtime import BatchSettings, QuestionAnswerer, load
from ._metrics import Metrics

if TYPE_CHECKING:
    from ..runtime import Answer

# answers pairs with options within a timeout: the app's way to the model (default: the async API)
AnswerFn = Callable[[list[tuple[str, str]], dict[str, Any], float], Awaitable[list[list["Answer"]]]]

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_REQUEST_TIMEOUT", "build_app", "create_app"]

DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 30.0
MAX_PAIRS = 1024  # pairs per batch request

log = logging.getLogger("onnxqa.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: StrictInt | None = Field(None, description="number of answers (default 1)")
    handle_impossible_answer: StrictBool | None = Field(None, description="let the empty answer compete")
    max_answer_len: StrictInt | None = Field(None, description="longest answer, in tokens (default 15)")
    max_seq_len: StrictInt | None = Field(None, description="tokens per window")
    doc_stride: StrictInt | None = Field(None, description="tokens of overlap between windows")
    max_question_len: StrictInt | None = Field(None, description="longer questions are cut to this many tokens")
    align_to_words: StrictBool | None = Field(None, description="grow spans to whole words (default true)")
    timeout: float | None = Field(None, gt=0, description="seconds; at most the server's own timeout")

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"question", "context", "pairs", "timeout"})


class AnswerRequest(_Options):
    """One question about one context."""

    question: StrictStr
    context: StrictStr


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: StrictStr
    context: StrictStr


class BatchRequest(_Options):
    """Many question/context pairs, answered with the same options."""

    pairs: list[Pair] = Field(..., min_length=1, max_length=MAX_PAIRS)


class AnswerOut(BaseModel):
    text: str
    score: float
    start: int
    end: int


class AnswerResponse(BaseModel):
    answers: list[AnswerOut]
    model: str
    precision: str
    device: str


class BatchResponse(BaseModel):
    results: list[list[AnswerOut]]
    model: str
    precision: str
    device: str


class ErrorResponse(BaseModel):
    error: str
    message: str


_ERRORS = {code: {"model": ErrorResponse} for code in (413, 422, 503, 504)}


class _Service:
    """What the routes share: the answerer, the metrics, readiness."""

    def __init__(
        self, qa: QuestionAnswerer, model_name: str, request_timeout: float, answer_fn: AnswerFn | None = None
    ) -> None:
        self.qa, self.request_timeout = qa, request_timeout
        self.answer_fn: AnswerFn = answer_fn or self._answer_async
        self.facts = {"model": model_name, "precision": qa.precision, "device": qa.device}
        self.metrics = Metrics()
        self.metrics.model.labels(**self.facts).set(1)
        self.metrics.queue_depth.set_function(lambda: qa.queue_depth)
        qa.add_batch_listener(self.metrics.observe_batch)
        self.ready = threading.Event()
        self._warming: threading.Thread | None = None
        self._lock = threading.Lock()

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

    def error(self, kind: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        self.metrics.errors.labels(kind).inc()
        return JSONResponse({"error": kind, "message": message}, status_code=status, headers=headers)

    async def _answer_async(
        self, pairs: list[tuple[str, str]], options: dict[str, Any], timeout: float
    ) -> list[list[Answer]]:
        return await self.qa.batch_async(pairs, timeout=timeout, **options)

    async def answer(self, pairs: list[tuple[str, str]], body: _Options) -> Any:
        timeout = self.request_timeout if body.timeout is None else min(body.timeout, self.request_timeout)
        try:
            return await self.answer_fn(pairs, body.options(), timeout)
        except InputError as exc:
            return self.error("invalid_request", 422, str(exc))
        except OverloadedError as exc:
            return self.error("overloaded", 503, str(exc), {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
        except RequestTimeoutError as exc:
            return self.error("timeout", 504, str(exc))


def _answers(answers: list[Any]) -> list[dict[str, Any]]:
    return [{"text": a.text, "score": a.score, "start": a.start, "end": a.end} for a in answers]


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        if e.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')})")
            continue
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


class _Guard:
    """Outermost ASGI layer: refuses bodies over the limit (413) and measures every request."""

    _ENDPOINTS = ("/v1/answer", "/v1/answer/batch", "/health", "/ready", "/metrics")

    def __init__(self, app: Any, *, service: _Service, max_body_bytes: int) -> None:
        self.app, self.service, self.max_body_bytes = app, service, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in self._ENDPOINTS else "other"
        status = 500
        t0 = time.perf_counter()

        async def send_measured(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            body = await self._read(scope, receive)
            if body is None:
                response = self.service.error(
                    "payload_too_large", 413, f"the request body is over the limit of {self.max_body_bytes} bytes"
                )
                await response(scope, receive, send_measured)
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_measured)
        finally:
            m = self.service.metrics
            m.requests.labels(endpoint, str(status)).inc()
            if endpoint.startswith("/v1/"):
                m.latency.labels(endpoint).observe(time.perf_counter() - t0)

    async def _read(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the limit (by its Content-Length or as it comes)."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                with contextlib.suppress(ValueError):
                    if int(value) > self.max_body_bytes:
                        return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def create_app(
    model: QuestionAnswerer | str | os.PathLike[str],
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    batching: BatchSettings | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    model_name: str | None = None,
) -> FastAPI:
    """The HTTP app (ASGI) answering questions with ``model``: a loaded :class:`QuestionAnswerer`
    or a model directory, loaded now with ``device``, ``precision``, ``threads`` and ``batching``.

    Routes: ``POST /v1/answer``, ``POST /v1/answer/batch``, ``GET /health``, ``GET /ready``,
    ``GET /metrics`` and the OpenAPI docs (``/docs``, ``/openapi.json``). Mount it in an app of
    your own with ``app.mount("/qa", create_app(...))``; the model is warmed up at the app's
    startup, or on the first request where a mounted app's startup is not run.

    Raises:
        ModelLoadError, ProviderError, InputError: as :func:`onnxqa.load`.
    """
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise InputError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
    if isinstance(request_timeout, bool) or not isinstance(request_timeout, (int, float)) or not request_timeout > 0:
        raise InputError(f"request_timeout must be a number of seconds > 0, got {request_timeout!r}")
    if isinstance(model, QuestionAnswerer):
        qa = model
    else:
        qa = load(model, device=device, precision=precision, threads=threads, batching=batching)
    return build_app(qa, max_body_bytes=max_body_bytes, request_timeout=request_timeout, model_name=model_name)


def build_app(
    qa: QuestionAnswerer,
    *,
    answer_fn: AnswerFn | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    model_name: str | None = None,
) -> FastAPI:
    """:func:`create_app` for a loaded ``qa``, answering through ``answer_fn(pairs, options, timeout)``
    (default: ``qa.batch_async``; the Ray Serve deployment passes its ``@serve.batch`` method).
    ``answer_fn`` raises :class:`InputError`, :class:`OverloadedError` or
    :class:`RequestTimeoutError` for the 422, 503 and 504 answers."""
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise InputError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
    if isinstance(request_timeout, bool) or not isinstance(request_timeout, (int, float)) or not request_timeout > 0:
        raise InputError(f"request_timeout must be a number of seconds > 0, got {request_timeout!r}")
    service = _Service(qa, model_name or qa.model_dir.name, float(request_timeout), answer_fn)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start_warm_up()
        yield
        await asyncio.get_running_loop().run_in_executor(None, qa.close)

    app = FastAPI(
        title="onnxqa",
        summary="Extractive question answering with ONNX Runtime",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.onnxqa = service

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return service.error("invalid_request", 422, _validation_message(exc))

    @app.exception_handler(OnnxQAError)
    async def failed(_: Request, exc: OnnxQAError) -> JSONResponse:
        log.error("request failed: %s", exc)
        return service.error("internal", 500, f"{type(exc).__name__}: {exc}")

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return service.error("internal", 500, "internal error; see the server log")

    @app.post("/v1/answer", response_model=AnswerResponse, responses=_ERRORS)  # type: ignore[arg-type]
    async def answer(body: AnswerRequest) -> Any:
        """The best answers to one question in one context, best first."""
        service.start_warm_up()
        out = await service.answer([(body.question, body.context)], body)
        if isinstance(out, Response):
            return out
        return JSONResponse({"answers": _answers(out[0]), **service.facts})

    @app.post("/v1/answer/batch", response_model=BatchResponse, responses=_ERRORS)  # type: ignore[arg-type]
    async def answer_batch(body: BatchRequest) -> Any:
        """Answers for many question/context pairs, in order (windows of all pairs batched together)."""
        service.start_warm_up()
        out = await service.answer([(p.question, p.context) for p in body.pairs], body)
        if isinstance(out, Response):
            return out
        return JSONResponse({"results": [_answers(a) for a in out], **service.facts})

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The server is alive."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": ErrorResponse}})
    async def ready() -> Any:
        """The model is loaded and warmed up: requests will be answered at full speed."""
        service.start_warm_up()
        if not service.ready.is_set():
            return service.error("not_ready", 503, "the model is warming up", {"Retry-After": "1"})
        return {"status": "ready", **service.facts}

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Guard, service=service, max_body_bytes=max_body_bytes)
    return app


def _version() -> str:
    from .. import __version__

    return __version__
