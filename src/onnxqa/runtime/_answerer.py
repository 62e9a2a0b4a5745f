"""QuestionAnswerer: a model directory loaded, wiring tokenize -> windows -> pipeline (sync) or
scheduler (async)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import InputError, ModelLoadError, ProviderError, RequestTooLargeError
from .._manifest import BACKENDS, batch_invariant, open_verifying, read_external_data, read_manifest, read_verified
from ._answer import DEFAULT_BATCH, Answer, QAOptions
from ._async import AsyncFront
from ._buckets import Batch, plan_batches, resolve_buckets
from ._documents import DocumentAnswer, ReaderOptions, as_documents, tokenizable
from ._pipeline import DocumentsJob, Job, PairsJob, Result, StageHook, finish, run_call, run_jobs, run_planned
from ._scheduler import CALL_PADDING, BatchSettings, Call, Scheduler
from ._session import Engine, SessionSettings, default_threads, resolve_device
from ._tuning import read_tuning
from ._variants import pick_precision
from ._windows import Windower, check_text

if TYPE_CHECKING:
    from ._openvino import OpenVINOEngine

__all__ = ["QuestionAnswerer", "load"]

_WARMUP = ("What is this?", "This short text exists only to run the model once before the first real question.")


def _check_pairs(pairs: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """What the tokenizer reads, and the caller's own contexts (offsets point into these)."""
    checked, originals = [], []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InputError(f"pair {i} must be a (question, context) tuple, got {type(pair).__name__}")
        checked.append((check_text("question", pair[0]), check_text("context", pair[1])))
        originals.append(pair[1])
    return checked, originals


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InputError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    return float(timeout)


def _chars(texts: Iterable[object]) -> int:
    return sum(len(t) for t in texts if isinstance(t, str))


class QuestionAnswerer:
    """Extractive question answering over an exported model directory.

    One instance may be shared by many threads. Options given here become the defaults of every
    call; each call may override them (see :class:`QAOptions`). Use it as a context manager, or
    call :meth:`close`, to stop the async API's threads.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        device: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        arena: bool = True,
        batching: BatchSettings | None = None,
        buckets: bool | Sequence[int] | None = None,
        cuda_graph: bool = False,
        **options: Any,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        self.device = resolve_device(device)
        # what `onnxqa tune` chose on this machine, for what the caller left open
        self.tuning = read_tuning(self.model_dir, self.manifest) if self.device == "cpu" else None
        if self.tuning is not None:
            precision = self.tuning["precision"] if precision == "auto" else precision
            if threads is None and default_threads() is None:
                threads = self.tuning["threads"]
            if options.get("batch_size") is None:
                options["batch_size"] = self.tuning["batch_size"]
        variants = self.manifest["variants"]
        rejected = self.manifest.get("rejected")
        self.precision = pick_precision(
            self.model_dir, variants, self.device, precision, rejected if isinstance(rejected, dict) else None
        )
        arch, tok = self.manifest["architecture"], self.manifest["tokenizer"]
        self._max_positions = int(arch["max_positions"])
        self._model_max_length = int(tok["model_max_length"])
        self._pad_id = int(tok["pad_token_id"])
        self.options = QAOptions(**options)
        self.options.resolved(self._model_max_length, self._max_positions, self.device)  # fail early
        self._windower = self._load_tokenizer(tok, arch.get("vocab_size"))
        if threads is None:
            threads = default_threads()
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a positive integer or None, got {threads!r}")
        if batching is not None and not isinstance(batching, BatchSettings):
            raise InputError(f"batching must be a BatchSettings or None, got {type(batching).__name__}")
        self.batching = (batching or BatchSettings()).resolved(self.device)
        self.buckets = resolve_buckets(buckets, self.device, self._max_positions)
        if not isinstance(cuda_graph, bool):
            raise InputError(f"cuda_graph must be True or False, got {cuda_graph!r}")
        if cuda_graph and self.device != "cuda":
            raise ProviderError(f"cuda_graph=True needs device='cuda' (this one runs on {self.device})")
        if cuda_graph and self.buckets is None:
            raise InputError("cuda_graph=True needs shape buckets (a graph per shape): leave buckets on")
        variant = variants[self.precision]
        self._batch_invariant = batch_invariant(self.precision, variant)
        self._engine = self._make_engine(variant, threads, arena, cuda_graph)
        self._call_listeners: list[Callable[[int, int, float], None]] = []
        self._stage_listeners: list[StageHook] = []
        self._async = AsyncFront(self._make_scheduler)

    def _make_engine(
        self, variant: dict[str, Any], threads: int | None, arena: bool, cuda_graph: bool
    ) -> Engine | OpenVINOEngine:
        """The engine of the chosen variant, its files checked against the manifest's hashes
        before any answer."""
        if BACKENDS.get(self.precision) == "openvino":
            from ._openvino import OpenVINOEngine

            graph_bytes = read_verified(self.model_dir, variant["file"], variant["sha256"])
            weights = list(read_external_data(self.model_dir, variant).values())
            if len(weights) != 1:
                raise ModelLoadError(
                    f"{self.model_dir}: the manifest lists no single weights file for the {self.precision} variant; "
                    "re-export the model"
                )
            return OpenVINOEngine(graph_bytes, weights[0], threads=threads)
        # on CPU onnxruntime reads the graph from its path while a thread hashes it (a cold start
        # ~0.1 s shorter for a 768-wide int8 graph), checked before any answer; a graph with
        # external data, or for CUDA (which may make a session per shape later), is read once,
        # hashed, and handed over as bytes
        if variant.get("external_data") or self.device != "cpu":
            graph: bytes | Path = read_verified(self.model_dir, variant["file"], variant["sha256"])
            verify: Callable[[], None] = _already_verified
        else:
            graph, verify = open_verifying(self.model_dir, variant["file"], variant["sha256"])
        try:
            return Engine(
                graph,
                self.device,
                SessionSettings(
                    threads=threads,
                    arena=arena,
                    cuda_graph=cuda_graph,
                    # with buckets a CUDA engine sees few shapes: device buffers of their own for each
                    fixed_buffers=self.buckets is not None and self.device == "cuda",
                    disabled_optimizers=tuple(variant.get("disabled_optimizers", ())),
                ),
                external_data=read_external_data(self.model_dir, variant),
            )
        finally:
            verify()  # before any answer; a corrupted file is reported as such, not as onnxruntime saw it

    def _load_tokenizer(self, tok: dict[str, Any], vocab_size: object) -> Windower:
        tokenizer_bytes = read_verified(self.model_dir, tok["file"], tok["sha256"])
        try:
            windower = Windower(tokenizer_bytes.decode("utf-8"), tok.get("cls_token_id"))
        except (UnicodeDecodeError, InputError) as exc:
            raise ModelLoadError(f"the tokenizer of {self.model_dir} cannot be loaded: {exc}") from exc
        if isinstance(vocab_size, int) and windower.vocab_size > vocab_size:
            raise ModelLoadError(
                f"the tokenizer has {windower.vocab_size} tokens but the model's embedding "
                f"has {vocab_size}: tokenizer and model do not belong together; re-export"
            )
        return windower

    def __repr__(self) -> str:
        return f"QuestionAnswerer({str(self.model_dir)!r}, device={self.device!r}, precision={self.precision!r})"

    def __enter__(self) -> QuestionAnswerer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ synchronous API

    def __call__(self, question: str, context: str, **options: Any) -> list[Answer]:
        """The best answers to ``question`` in ``context``, best first."""
        return self.batch([(question, context)], **options)[0]

    def batch(self, pairs: Iterable[tuple[str, str]], **options: Any) -> list[list[Answer]]:
        """Answers for many ``(question, context)`` pairs, in order.

        Windows of all pairs are packed into batches of ``batch_size`` windows, sorted by length
        and padded only to the longest window of each batch.
        """
        return [answers for answers, _ in self.batch_with_null(pairs, **options)]

    def batch_with_null(self, pairs: Iterable[tuple[str, str]], **options: Any) -> list[Result]:
        """Like :meth:`batch`, with each pair's no-answer score (the lowest over its windows).

        The no-answer score is the probability the model gives to the CLS span; it is what
        ``handle_impossible_answer=True`` ranks against the spans, and what SQuAD 2.0 evaluation
        uses as the no-answer probability.
        """
        opts = self._options(options)
        checked, originals = _check_pairs(pairs)
        results: list[Result] = []
        chunk = max(8 * opts.batch_size, 256)  # type: ignore[operator]
        hook = self._hook()
        for first in range(0, len(checked), chunk):
            job = self._prepare(checked[first : first + chunk], originals[first : first + chunk], opts)
            results.extend(self._run_alone(job, opts.batch_size, hook))  # type: ignore[arg-type]
        return results

    def answer_documents(self, question: str, documents: Iterable[object], **options: Any) -> list[DocumentAnswer]:
        """The best answers to ``question`` across ``documents``, best first, as Haystack's reader finds them.

        ``documents``: strings, :class:`Document` objects, or any objects with ``content`` (and
        optionally ``id`` and ``meta``), Haystack's ``Document`` included; ``content=None`` ones are
        skipped. Windows of all documents are packed into batches together. Scores are
        ``sigmoid(calibration_factor * (start_logit + end_logit))``, comparable across windows and
        documents. With ``no_answer`` (the default) the list holds one no-answer entry scored
        ``prod(1 - score)`` over the answers kept. Options: :class:`ReaderOptions`.

        Raises:
            InputError: the question is empty, a document or an option is invalid, or the
                question cannot be cut into windows of ``max_seq_length`` with ``stride``.
        """
        opts = ReaderOptions().updated(**options)
        job = self._prepare_documents(question, documents, opts)
        size = next(b for b in (opts.batch_size, self.options.batch_size, DEFAULT_BATCH[self.device]) if b is not None)
        return self._run_alone(job, size, self._hook())  # type: ignore[no-any-return]

    def _run_alone(self, job: Job, batch_size: int, hook: StageHook | None) -> Any:
        return run_jobs(
            self._engine,
            self._pad_id,
            [job],
            batch_size=batch_size,
            buckets=self.buckets,
            max_width=self._max_positions,
            hook=hook,
        )[0]

    # ------------------------------------------------------------------ async API, for servers

    @property
    def batch_invariant(self) -> bool:
        """Whether a window's answers are independent of the other windows in its inference call.

        True for fp32, fp16, static int8 (activation scales calibrated at export) and openvino-int8
        (static too, each window run at its own length), whose windows the async API coalesces
        across requests. False for dynamic int8 (``--int8 dynamic``:
        activation scales are computed per call), whose requests the async API runs each in calls
        of their own.
        """
        return self._batch_invariant

    async def answer_async(
        self, question: str, context: str, *, timeout: float | None = None, **options: Any
    ) -> list[Answer]:
        """:meth:`__call__` for asyncio code: the event loop is never blocked.

        Tokenization runs on a thread pool, inference and decoding on the scheduler's thread, where
        windows of concurrent requests share inference calls in round robin (see
        :class:`BatchSettings`); the answers are those the request would get alone. A request that
        times out or whose task is cancelled stops: none of its remaining windows run.

        Raises:
            InputError: a question, context or option is unusable.
            RequestTooLargeError: more windows than ``batching.max_request_windows``.
            OverloadedError: ``batching.max_queue`` requests or ``max_queue_windows`` windows are
                already waiting (raised at once), or the answerer is closed.
            RequestTimeoutError: no answer within ``timeout`` seconds.
        """
        return (await self.batch_async([(question, context)], timeout=timeout, **options))[0]

    async def batch_async(
        self, pairs: Iterable[tuple[str, str]], *, timeout: float | None = None, **options: Any
    ) -> list[list[Answer]]:
        """:meth:`batch` for asyncio code; same errors as :meth:`answer_async`."""
        return [answers for answers, _ in await self.batch_with_null_async(pairs, timeout=timeout, **options)]

    async def batch_with_null_async(
        self, pairs: Iterable[tuple[str, str]], *, timeout: float | None = None, **options: Any
    ) -> list[Result]:
        """:meth:`batch_with_null` for asyncio code; same errors as :meth:`answer_async`."""
        seconds = _check_timeout(timeout)
        opts = self._options(options)
        pairs = list(pairs)
        chars = _chars(text for pair in pairs if isinstance(pair, (tuple, list)) for text in pair)
        return await self._async.run(  # type: ignore[no-any-return]
            lambda: self._prepare_pairs(pairs, opts, capped=True), chars=chars, timeout=seconds
        )

    async def answer_documents_async(
        self, question: str, documents: Iterable[object], *, timeout: float | None = None, **options: Any
    ) -> list[DocumentAnswer]:
        """:meth:`answer_documents` for asyncio code, through the same scheduler as
        :meth:`answer_async` (windows shared with concurrent requests, round robin, cancellation).
        ``batch_size`` is the scheduler's (:class:`BatchSettings`); same errors as :meth:`answer_async`."""
        seconds = _check_timeout(timeout)
        opts = ReaderOptions().updated(**options)
        docs = list(documents)
        chars = _chars([question]) + _chars(getattr(d, "content", d) for d in docs)
        return await self._async.run(  # type: ignore[no-any-return]
            lambda: self._prepare_documents(question, docs, opts, capped=True), chars=chars, timeout=seconds
        )

    def submit(self, pairs: Iterable[tuple[str, str]], **options: Any) -> Future[list[Result]]:
        """Queue ``pairs`` on the scheduler from synchronous code; a future of
        :meth:`batch_with_null`'s result. Tokenizes in the calling thread. ``future.cancel()``
        gives up the request's remaining windows.

        Raises:
            InputError: a question, context or option is unusable.
            RequestTooLargeError, OverloadedError: as :meth:`answer_async`.
        """
        opts = self._options(options)
        pairs = list(pairs)
        return self._async.submit(lambda: self._prepare_pairs(pairs, opts, capped=True))

    @property
    def queue_depth(self) -> int:
        """Requests of the async API admitted whose windows have not all started."""
        scheduler = self._async.scheduler
        return scheduler.depth if scheduler is not None else 0

    @property
    def windows_waiting(self) -> int:
        """Windows of the async API admitted and not yet run."""
        scheduler = self._async.scheduler
        return scheduler.windows_waiting if scheduler is not None else 0

    def add_batch_listener(self, listener: Callable[[int, int, float], None]) -> None:
        """Call ``listener(requests, windows, seconds)`` after every inference call of the async API
        (on the scheduler's thread; keep it quick)."""
        self._call_listeners.append(listener)

    def add_stage_listener(self, listener: StageHook) -> None:
        """Call ``listener(stage, seconds, windows)`` after every stage of every call, synchronous
        or async: ``tokenize``, ``pad``, ``model``, ``decode``, ``assemble`` (see
        :data:`onnxqa.runtime.STAGES`). For profiling; called on the thread that ran the stage."""
        self._stage_listeners.append(listener)

    def remove_stage_listener(self, listener: StageHook) -> None:
        """Stop calling a listener added with :meth:`add_stage_listener`."""
        self._stage_listeners.remove(listener)

    # ------------------------------------------------------------------ introspection, for benchmarks

    @property
    def engine(self) -> Engine | OpenVINOEngine:
        """The inference engine (read-only use): ``session`` (the onnxruntime session; None for
        OpenVINO), ``input_names``, ``device``, ``shapes`` and ``shape_sessions`` (fixed-buffer
        shapes on CUDA), ``time_call(rows, width)``."""
        return self._engine

    def window_lengths(self, pairs: Iterable[tuple[str, str]], **options: Any) -> list[int]:
        """The token count of each window the pairs are cut into with these options, pair by pair
        in order: what the model reads before padding. Runs only the tokenizer.

        Raises:
            InputError: a question, context or option is unusable.
        """
        job = self._prepare_pairs(pairs, self._options(options))
        return [int(w.input_ids.shape[0]) for w in job.windows]

    def warm_up(self) -> None:
        """Answer one question through the synchronous and the async path, starting their threads."""
        self(*_WARMUP)
        self.submit([_WARMUP]).result()

    def close(self) -> None:
        """Finish the async requests admitted, then stop the async API's threads for good: later
        async calls raise :class:`OverloadedError`. The synchronous API keeps working."""
        self._async.close()

    # ------------------------------------------------------------------ the stages

    def _hook(self) -> StageHook | None:
        listeners = self._stage_listeners
        if not listeners:
            return None

        def hook(stage: str, seconds: float, windows: int) -> None:
            for listener in listeners:
                listener(stage, seconds, windows)

        return hook

    def _make_scheduler(self) -> Scheduler:
        settings = self.batching
        return Scheduler(
            self._run_scheduled,
            lambda job: finish(job, self._hook()),
            max_windows=settings.max_windows,  # type: ignore[arg-type]
            max_wait_s=settings.max_wait_ms / 1000,  # type: ignore[operator]
            max_call_s=settings.max_call_ms / 1000 if settings.max_call_ms else None,
            max_queue=settings.max_queue,
            max_queue_windows=settings.max_queue_windows,
            max_request_windows=settings.max_request_windows,
            coalesce=self._batch_invariant,
            max_padding=CALL_PADDING[self.device],
            units=self._units_alone,
            on_call=self._notify_call,
        )

    def _units_alone(self, job: Job) -> list[Batch]:
        """The calls ``job`` gets when it runs alone, as the synchronous API plans them (for variants
        that are not batch-invariant, whose answers depend on their call's other windows)."""
        if isinstance(job, PairsJob):
            size = job.opts.batch_size or DEFAULT_BATCH[self.device]
            chunk = max(8 * size, 256)  # pairs prepared and planned together, as batch_with_null does
        else:
            opts = job.opts  # type: ignore[attr-defined]
            size = next(b for b in (opts.batch_size, self.options.batch_size, DEFAULT_BATCH[self.device]) if b)
            chunk = None
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(job.windows):
            groups.setdefault(w.pair // chunk if chunk else 0, []).append(i)
        units = []
        for members in groups.values():
            lengths = [job.windows[i].input_ids.shape[0] for i in members]
            for planned in plan_batches(lengths, size, self.buckets, self._max_positions):
                units.append(Batch([members[r] for r in planned.windows], planned.rows, planned.width))
        return units

    def _run_scheduled(self, call: Call) -> int:
        """The scheduler's inference call: windows of several jobs shaped as one planned batch, or
        (not batch-invariant) one job's unit exactly as it runs alone."""
        hook = self._hook()
        if not self._batch_invariant:
            ((job, (unit,)),) = call
            return run_call(
                self._engine, self._pad_id, [(job, unit.windows)], rows=unit.rows, width=unit.width, hook=hook
            )
        work = [(job, [i for unit in units for i in unit.windows]) for job, units in call]
        return run_planned(
            self._engine,
            self._pad_id,
            work,
            batch_size=self.batching.max_windows,  # type: ignore[arg-type]
            buckets=self.buckets,
            max_width=self._max_positions,
            hook=hook,
        )

    def _notify_call(self, requests: int, windows: int, seconds: float) -> None:
        for listener in self._call_listeners:
            listener(requests, windows, seconds)

    def _options(self, options: dict[str, Any]) -> QAOptions:
        return self.options.updated(**options).resolved(self._model_max_length, self._max_positions, self.device)

    def _prepare_pairs(self, pairs: Iterable[tuple[str, str]], opts: QAOptions, capped: bool = False) -> PairsJob:
        checked, originals = _check_pairs(pairs)
        if capped:  # the async API: refuse a request over the window cap before its windows exist
            for question, context in checked:
                self._check_window_cap(question, [context], opts.max_seq_len, opts.doc_stride, opts.max_question_len)  # type: ignore[arg-type]
        return self._prepare(checked, originals, opts)

    def _check_window_cap(
        self, question: str, texts: list[str], max_seq_len: int, stride: int, max_question_len: int
    ) -> None:
        """RequestTooLargeError if ``question`` with ``texts`` would make more windows than the
        scheduler takes from one request (:attr:`BatchSettings.window_cap`); counted (a tokenizer
        pass) only where the texts' byte length allows that many."""
        cap = self.batching.window_cap
        question_tokens = min(len(question.encode("utf-8", "surrogatepass")), max_question_len)
        bound = Windower.most_windows(texts, question_tokens=question_tokens, max_seq_len=max_seq_len, stride=stride)
        if bound <= cap:
            return
        windows = self._windower.count_windows(
            question, texts, max_seq_len=max_seq_len, stride=stride, max_question_len=max_question_len
        )
        if windows > cap:
            raise RequestTooLargeError(windows, cap)

    def _prepare(self, checked: list[tuple[str, str]], contexts: list[str], opts: QAOptions) -> PairsJob:
        t0 = time.perf_counter()
        windows = self._windower.windows(
            checked,
            max_seq_len=opts.max_seq_len,  # type: ignore[arg-type]
            doc_stride=opts.doc_stride,  # type: ignore[arg-type]
            max_question_len=opts.max_question_len,
        )
        self._tokenized(t0, len(windows))
        return PairsJob(windows, contexts, opts)

    def _prepare_documents(
        self, question: str, documents: Iterable[object], opts: ReaderOptions, capped: bool = False
    ) -> DocumentsJob:
        question = check_text("question", question)
        if opts.max_seq_length > self._max_positions:
            raise InputError(
                f"max_seq_length ({opts.max_seq_length}) exceeds the model's {self._max_positions} positions; "
                f"use max_seq_length <= {self._max_positions}"
            )
        t0 = time.perf_counter()
        docs = as_documents(documents)
        present = [i for i, d in enumerate(docs) if d.content is not None]
        if capped:
            texts = [tokenizable(docs[i].content) for i in present]  # type: ignore[arg-type]
            self._check_window_cap(question, texts, opts.max_seq_length, opts.stride, opts.max_seq_length // 2)
        windows = self._windower.document_windows(
            question,
            [tokenizable(docs[i].content) for i in present],  # type: ignore[arg-type]
            max_seq_len=opts.max_seq_length,
            stride=opts.stride,
        )
        self._tokenized(t0, len(windows))
        return DocumentsJob(windows, docs, present, opts)

    def _tokenized(self, t0: float, windows: int) -> None:
        hook = self._hook()
        if hook is not None:
            hook("tokenize", time.perf_counter() - t0, windows)


def _already_verified() -> None:
    """What there is left to check of a file :func:`read_verified` read: nothing."""


def load(
    model_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    arena: bool = True,
    batching: BatchSettings | None = None,
    buckets: bool | Sequence[int] | None = None,
    cuda_graph: bool = False,
    **options: Any,
) -> QuestionAnswerer:
    """Load an exported model directory.

    ``device``: ``"auto"`` (CUDA when its provider is really active, else CPU), ``"cpu"`` or
    ``"cuda"``. ``precision``: ``"auto"`` (int8 on CPU, fp16 on CUDA, else fp32), ``"fp32"``,
    ``"int8"``, ``"fp16"`` or ``"openvino-int8"`` (run by OpenVINO, the ``openvino`` extra; see the
    Python page). ``threads``: inference threads, onnxruntime's intra-op or OpenVINO's (default:
    the ``ONNXQA_THREADS`` environment variable, else one per physical core). ``arena``:
    onnxruntime's CPU memory arena (not used by OpenVINO) (on by default; see the benchmarks for its effect on memory).
    ``batching``: limits of the async API's scheduler (:class:`BatchSettings`).
    ``buckets``: pad windows to a few fixed widths (``True``: 64, 128, 192, 256, 384 tokens, or a
    sequence of widths) and batches to power-of-two row counts, so the session sees few shapes;
    ``None`` (default): on for CUDA, off for CPU (where padding only costs). Answers are the same
    either way. ``cuda_graph``: capture one CUDA graph per shape and replay it (CUDA only, needs
    buckets; see the GPU page).
    Other keyword arguments are default :class:`QAOptions` for every call.

    Raises:
        ModelLoadError: the directory is missing, incomplete, corrupted or inconsistent.
        ProviderError: the device is unknown or unavailable, the precision does not suit it, or
            ``cuda_graph`` is asked for off CUDA.
        InputError: an option is invalid.
    """
    return QuestionAnswerer(
        model_dir,
        device=device,
        precision=precision,
        threads=threads,
        arena=arena,
        batching=batching,
        buckets=buckets,
        cuda_graph=cuda_graph,
        **options,
    )
