"""QuestionAnswerer: tokenize -> windows -> batches -> session -> decode."""

from __future__ import annotations

import asyncio
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError, ModelLoadError, ProviderError, RequestTimeoutError
from .._manifest import PRECISIONS, batch_invariant, read_manifest, read_verified, variant_status
from ._answer import DEFAULT_BATCH, Answer, QAOptions
from ._batcher import Batcher, BatchSettings
from ._buckets import plan_batches, resolve_buckets
from ._decode import best_spans_batch, merge_answers, spans_to_chars
from ._documents import DocumentAnswer, ReaderOptions, as_documents, select_answers, span_candidates, tokenizable
from ._session import Engine, SessionSettings, default_threads, resolve_device
from ._windows import Window, Windower, check_text

__all__ = ["QuestionAnswerer", "load"]

# precision="auto" picks the first of these that passed its check at export (see _pick_precision)
_AUTO_PRECISION = {"cpu": ("int8", "fp32"), "cuda": ("fp16", "fp32")}
_SUITED = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}
_warned: set[tuple[str, str]] = set()  # (model directory, precision) already warned about


def _pick_precision(model_dir: Path, variants: dict[str, Any], device: str, precision: str) -> str:
    """The variant to load: an explicit ``precision``, or for ``"auto"`` the first of the device's
    candidates that passed its check at export; an unvalidated one only when none passed, a failed
    one never while another exists. Choosing a variant that did not pass warns once."""
    if precision == "auto":
        present = [p for p in _AUTO_PRECISION[device] if p in variants]
        if not present:
            raise ModelLoadError(
                f"the model directory has no variant that runs on {device} (has: {', '.join(variants)}); "
                f"re-export with --precision {','.join(_SUITED[device])}"
            )
        rank = {"passed": 0, "unvalidated": 1, "failed": 2}
        chosen = min(present, key=lambda p: rank[variant_status(variants[p])])
    elif precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use auto, {', '.join(PRECISIONS)}")
    elif precision not in _SUITED[device]:
        other = "cuda" if device == "cpu" else "cpu"
        raise ProviderError(
            f"precision {precision!r} is not suited to device {device!r} (it is built for {other}); "
            f"on {device} use {' or '.join(_SUITED[device])}"
        )
    elif precision not in variants:
        raise ModelLoadError(
            f"the model directory has no {precision} variant (has: {', '.join(variants)}); "
            f"re-export with --precision including {precision}"
        )
    else:
        chosen = precision
    status = variant_status(variants[chosen])
    key = (str(model_dir.resolve()), chosen)
    if status != "passed" and key not in _warned:
        _warned.add(key)
        why = variants[chosen].get("validation", {})
        detail = "; ".join(why.get("failed_because", [])) or why.get("reason", "") if isinstance(why, dict) else ""
        warnings.warn(
            f"using the {chosen} variant of {model_dir}, which {'failed' if status == 'failed' else 'did not get'} "
            f"its check against {'fp32' if chosen != 'fp32' else 'PyTorch'} at export"
            + (f" ({detail})" if detail else "")
            + "; its answers may differ: measure with `onnxqa eval`",
            UserWarning,
            stacklevel=4,
        )
    return chosen


@dataclass(frozen=True)
class _Request:
    """One call's work once tokenized: its windows, the caller's own contexts, its options."""

    windows: list[Window]
    contexts: list[str]
    opts: QAOptions


_Result = tuple[list[Answer], float]  # a pair's answers and its no-answer score
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


class QuestionAnswerer:
    """Extractive question answering over an exported model directory.

    One instance may be shared by many threads. Options given here become the defaults of every
    call; each call may override them (see :class:`QAOptions`).
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
        variants = self.manifest["variants"]
        self.precision = _pick_precision(self.model_dir, variants, self.device, precision)
        arch, tok = self.manifest["architecture"], self.manifest["tokenizer"]
        self._max_positions = int(arch["max_positions"])
        self._model_max_length = int(tok["model_max_length"])
        self._pad_id = int(tok["pad_token_id"])
        self.options = QAOptions(**options)
        self.options.resolved(self._model_max_length, self._max_positions, self.device)  # fail early

        tokenizer_bytes = read_verified(self.model_dir, tok["file"], tok["sha256"])
        try:
            tokenizer_json = tokenizer_bytes.decode("utf-8")
            self._windower = Windower(tokenizer_json, tok.get("cls_token_id"))
        except (UnicodeDecodeError, InputError) as exc:
            raise ModelLoadError(f"the tokenizer of {self.model_dir} cannot be loaded: {exc}") from exc
        vocab_size = arch.get("vocab_size")
        if isinstance(vocab_size, int) and self._windower.vocab_size > vocab_size:
            raise ModelLoadError(
                f"the tokenizer has {self._windower.vocab_size} tokens but the model's embedding "
                f"has {vocab_size}: tokenizer and model do not belong together; re-export"
            )
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
        model_bytes = read_verified(self.model_dir, variant["file"], variant["sha256"])
        self._engine = Engine(
            model_bytes,
            self.device,
            SessionSettings(
                threads=threads,
                arena=arena,
                cuda_graph=cuda_graph,
                # with buckets a CUDA engine sees few shapes: device buffers of their own for each
                fixed_buffers=self.buckets is not None and self.device == "cuda",
            ),
        )
        self._batcher: Batcher[_Request, list[_Result]] | None = None
        self._prepare_pool: ThreadPoolExecutor | None = None
        self._batch_listeners: list[Callable[[int, int, float], None]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"QuestionAnswerer({str(self.model_dir)!r}, device={self.device!r}, precision={self.precision!r})"

    def __call__(self, question: str, context: str, **options: Any) -> list[Answer]:
        """The best answers to ``question`` in ``context``, best first."""
        return self.batch([(question, context)], **options)[0]

    def batch(self, pairs: Iterable[tuple[str, str]], **options: Any) -> list[list[Answer]]:
        """Answers for many ``(question, context)`` pairs, in order.

        Windows of all pairs are packed into batches of ``batch_size`` windows, sorted by length
        and padded only to the longest window of each batch.
        """
        return [answers for answers, _ in self.batch_with_null(pairs, **options)]

    def batch_with_null(self, pairs: Iterable[tuple[str, str]], **options: Any) -> list[_Result]:
        """Like :meth:`batch`, with each pair's no-answer score (the lowest over its windows).

        The no-answer score is the probability the model gives to the CLS span; it is what
        ``handle_impossible_answer=True`` ranks against the spans, and what SQuAD 2.0 evaluation
        uses as the no-answer probability.
        """
        opts = self._options(options)
        checked, originals = _check_pairs(pairs)
        results: list[_Result] = []
        chunk = max(8 * opts.batch_size, 256)  # type: ignore[operator]
        for first in range(0, len(checked), chunk):
            request = self._prepare(checked[first : first + chunk], originals[first : first + chunk], opts)
            results.extend(self._answer_requests([request], opts.batch_size)[0])  # type: ignore[arg-type]
        return results

    # ------------------------------------------------------------------ async, for servers

    @property
    def batch_invariant(self) -> bool:
        """Whether a window's answers are independent of the other windows in its inference call.

        True for fp32, fp16 and static int8 (activation scales calibrated at export), whose windows
        the async API coalesces across requests. False for dynamic int8 (``--int8 dynamic``:
        activation scales are computed per call), whose requests the async API runs each in calls
        of their own.
        """
        return self._batch_invariant

    async def answer_async(
        self, question: str, context: str, *, timeout: float | None = None, **options: Any
    ) -> list[Answer]:
        """:meth:`__call__` for asyncio code: the event loop is never blocked.

        Tokenization runs on a small thread pool, inference and decoding on the batching thread,
        where windows of concurrent requests are coalesced (see :class:`BatchSettings`); the
        answers are those the request would get alone.

        Raises:
            InputError: a question, context or option is unusable.
            OverloadedError: ``batching.max_queue`` requests are already waiting (raised at once).
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
    ) -> list[_Result]:
        """:meth:`batch_with_null` for asyncio code; same errors as :meth:`answer_async`."""
        seconds = _check_timeout(timeout)
        opts = self._options(options)
        pairs = list(pairs)
        batcher = self._get_batcher()
        slot = batcher.reserve()  # OverloadedError now, before any work
        loop = asyncio.get_running_loop()
        future: Future[list[_Result]] | None = None

        async def answer() -> list[_Result]:
            nonlocal future
            request = await loop.run_in_executor(self._prepare_pool, self._prepare_pairs, pairs, opts)
            future = batcher.submit(request, slot)
            return await asyncio.wrap_future(future)

        try:
            return await asyncio.wait_for(answer(), seconds)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(f"no answer within the timeout of {seconds:g} s") from None
        finally:
            if future is None:
                slot.release()
            elif not future.done():
                future.cancel()  # drops it from the work unless it is already running

    def submit(self, pairs: Iterable[tuple[str, str]], **options: Any) -> Future[list[_Result]]:
        """Queue ``pairs`` on the batching thread from synchronous code; a future of
        :meth:`batch_with_null`'s result. Tokenizes in the calling thread.

        Raises:
            InputError: a question, context or option is unusable.
            OverloadedError: ``batching.max_queue`` requests are already waiting.
        """
        opts = self._options(options)
        batcher = self._get_batcher()
        slot = batcher.reserve()
        try:
            request = self._prepare_pairs(list(pairs), opts)
        except BaseException:
            slot.release()
            raise
        return batcher.submit(request, slot)

    @property
    def queue_depth(self) -> int:
        """Requests of the async API admitted and not yet running."""
        return self._batcher.depth if self._batcher is not None else 0

    def add_batch_listener(self, listener: Callable[[int, int, float], None]) -> None:
        """Call ``listener(requests, windows, seconds)`` after every inference call of the async API
        (on the batching thread; keep it quick)."""
        self._batch_listeners.append(listener)

    def warm_up(self) -> None:
        """Answer one question through the synchronous and the async path, starting their threads."""
        self(*_WARMUP)
        self.submit([_WARMUP]).result()

    def close(self) -> None:
        """Stop the async API's threads once the queued requests are answered (the synchronous API
        keeps working; a later async call starts them again)."""
        with self._lock:
            batcher, pool = self._batcher, self._prepare_pool
            self._batcher = self._prepare_pool = None
        if batcher is not None:
            batcher.close()
        if pool is not None:
            pool.shutdown(wait=True)

    def _get_batcher(self) -> Batcher[_Request, list[_Result]]:
        with self._lock:
            if self._batcher is None:
                settings = self.batching
                self._prepare_pool = ThreadPoolExecutor(
                    max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="onnxqa-prepare"
                )
                self._batcher = Batcher(
                    self._answer_coalesced,
                    max_cost=settings.max_windows,  # type: ignore[arg-type]
                    max_wait_s=settings.max_wait_ms / 1000,  # type: ignore[operator]
                    max_queue=settings.max_queue,
                    cost=lambda request: len(request.windows),
                    coalesce=self._batch_invariant,
                    on_batch=self._notify_batch,
                )
            return self._batcher

    def _notify_batch(self, requests: int, windows: int, seconds: float) -> None:
        for listener in self._batch_listeners:
            listener(requests, windows, seconds)

    def _answer_coalesced(self, requests: list[_Request]) -> list[list[_Result]]:
        """The batching function: requests in, results out, in order."""
        if self._batch_invariant:
            return self._answer_requests(requests, self.batching.max_windows)  # type: ignore[arg-type]
        return [self._answer_requests([r], r.opts.batch_size)[0] for r in requests]  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the stages

    def _options(self, options: dict[str, Any]) -> QAOptions:
        return self.options.updated(**options).resolved(self._model_max_length, self._max_positions, self.device)

    def _prepare_pairs(self, pairs: Iterable[tuple[str, str]], opts: QAOptions) -> _Request:
        checked, originals = _check_pairs(pairs)
        return self._prepare(checked, originals, opts)

    def _prepare(self, checked: list[tuple[str, str]], contexts: list[str], opts: QAOptions) -> _Request:
        windows = self._windower.windows(
            checked,
            max_seq_len=opts.max_seq_len,  # type: ignore[arg-type]
            doc_stride=opts.doc_stride,  # type: ignore[arg-type]
            max_question_len=opts.max_question_len,
        )
        return _Request(windows, contexts, opts)

    def _answer_requests(self, requests: Sequence[_Request], batch_size: int) -> list[list[_Result]]:
        """Windows of all requests sorted by length, run in batches of ``batch_size`` (shaped by the
        buckets, see ``_buckets``), decoded a batch at a time; then each request's answers from its
        own windows and options."""
        owner = [r for r, request in enumerate(requests) for _ in request.windows]
        windows = [w for request in requests for w in request.windows]
        decoded: list[tuple[list[tuple[int, int]], np.ndarray, float]] = [None] * len(windows)  # type: ignore[list-item]
        lengths = [w.input_ids.shape[0] for w in windows]
        for planned in plan_batches(lengths, batch_size, self.buckets, self._max_positions):
            rows = planned.windows
            start, end, allowed = self._run([windows[i] for i in rows], planned.rows, planned.width)
            groups: dict[tuple[int, int], list[int]] = {}
            for r, i in enumerate(rows):
                opts = requests[owner[i]].opts
                k = opts.top_k * 2 + 10 if opts.align_to_words else opts.top_k
                groups.setdefault((k, opts.max_answer_len), []).append(r)
            for (k, max_answer_len), group in groups.items():
                pick = slice(None) if len(group) == len(rows) else group
                spans = best_spans_batch(start[pick], end[pick], allowed[pick], k=k, max_answer_len=max_answer_len)
                for r, found in zip(group, spans):
                    i = rows[r]
                    align = requests[owner[i]].opts.align_to_words
                    chars = spans_to_chars(windows[i].encoding, found.starts, found.ends, align_to_words=align)
                    decoded[i] = (chars, found.scores, found.null_score)
        out, first = [], 0
        for request in requests:
            out.append(self._assemble(request, decoded[first : first + len(request.windows)]))
            first += len(request.windows)
        return out

    @staticmethod
    def _assemble(
        request: _Request, decoded: Sequence[tuple[list[tuple[int, int]], np.ndarray, float]]
    ) -> list[_Result]:
        opts = request.opts
        by_pair: list[list[int]] = [[] for _ in request.contexts]
        for i, w in enumerate(request.windows):
            by_pair[w.pair].append(i)
        answers: list[_Result] = []
        for pair, context in enumerate(request.contexts):
            candidates = [
                (s, e, score) for i in by_pair[pair] for (s, e), score in zip(decoded[i][0], decoded[i][1].tolist())
            ]
            null = min(decoded[i][2] for i in by_pair[pair])
            kept = null if opts.handle_impossible_answer else None
            answers.append((merge_answers(context, candidates, null_score=kept, top_k=opts.top_k), null))
        return answers

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
        question = check_text("question", question)
        if opts.max_seq_length > self._max_positions:
            raise InputError(
                f"max_seq_length ({opts.max_seq_length}) exceeds the model's {self._max_positions} positions; "
                f"use max_seq_length <= {self._max_positions}"
            )
        docs = as_documents(documents)
        present = [i for i, d in enumerate(docs) if d.content is not None]
        windows = self._windower.document_windows(
            question,
            [tokenizable(docs[i].content) for i in present],  # type: ignore[arg-type]
            max_seq_len=opts.max_seq_length,
            stride=opts.stride,
        )
        candidates: list[list[tuple[int, int, int, float]]] = [[] for _ in windows]
        order = sorted(range(len(windows)), key=lambda i: windows[i].input_ids.shape[0])
        size = next(b for b in (opts.batch_size, self.options.batch_size, DEFAULT_BATCH[self.device]) if b is not None)
        for b in range(0, len(order), size):
            rows = order[b : b + size]
            start, end, _ = self._run([windows[i] for i in rows], type_ids=opts.token_type_ids)
            for r, i in enumerate(rows):
                w = windows[i]
                n = w.input_ids.shape[0]
                spans = span_candidates(
                    start[r, :n],
                    end[r, :n],
                    w.allowed,
                    k=opts.answers_per_seq,
                    calibration_factor=opts.calibration_factor,
                )
                offsets = w.encoding.offsets
                candidates[i] = [
                    (present[w.pair], offsets[s][0], offsets[e][1], score)
                    for s, e, score in zip(spans.starts.tolist(), spans.ends.tolist(), spans.scores.tolist())
                ]
        return select_answers(docs, [c for window in candidates for c in window], opts)

    def _run(
        self, batch: Sequence[Window], rows: int | None = None, width: int | None = None, type_ids: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start and end logits of a batch padded to ``rows`` x ``width`` (default: its own size and
        longest window), and which tokens may start or end an answer; padded rows are dropped.
        ``type_ids=False`` feeds zeros as token type ids (what Haystack's reader does)."""
        n_rows = max(rows or 0, len(batch))
        width = max(width or 0, max(w.input_ids.shape[0] for w in batch))
        ids = np.full((n_rows, width), self._pad_id, dtype=np.int64)
        types = np.zeros((n_rows, width), dtype=np.int64)
        mask = np.zeros((n_rows, width), dtype=np.int64)
        mask[len(batch) :, 0] = 1  # a padded row attends to one token: no kernel sees an empty row
        allowed = np.zeros((len(batch), width), dtype=bool)
        for r, w in enumerate(batch):
            n = w.input_ids.shape[0]
            ids[r, :n] = w.input_ids
            if type_ids:
                types[r, :n] = w.type_ids
            mask[r, :n] = 1
            allowed[r, :n] = w.allowed
        start, end = self._engine.run(ids, types, mask)
        return start[: len(batch)], end[: len(batch)], allowed


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
    ``"int8"`` or ``"fp16"``. ``threads``: onnxruntime intra-op threads (default: the
    ``ONNXQA_THREADS`` environment variable, else one per physical core). ``arena``:
    onnxruntime's CPU memory arena (on by default; see BENCHMARKS.md for its effect on memory).
    ``batching``: limits of the async API's dynamic batcher (:class:`BatchSettings`).
    ``buckets``: pad windows to a few fixed widths (``True``: 64, 128, 192, 256, 384 tokens, or a
    sequence of widths) and batches to power-of-two row counts, so the session sees few shapes;
    ``None`` (default): on for CUDA, off for CPU (where padding only costs). Answers are the same
    either way. ``cuda_graph``: capture one CUDA graph per shape and replay it (CUDA only, needs
    buckets; see the README's GPU section).
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
