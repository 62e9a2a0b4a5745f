"""QuestionAnswerer: tokenize -> windows -> batches -> session -> decode."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError, ModelLoadError, ProviderError
from .._manifest import PRECISIONS, read_manifest, read_verified
from ._answer import DEFAULT_BATCH, Answer, QAOptions
from ._decode import best_spans, merge_answers, spans_to_chars
from ._documents import DocumentAnswer, ReaderOptions, as_documents, select_answers, span_candidates, tokenizable
from ._session import Engine, SessionSettings, default_threads, resolve_device
from ._windows import Window, Windower, check_text

__all__ = ["QuestionAnswerer", "load"]

# precision="auto" picks the first of these the model directory has
_AUTO_PRECISION = {"cpu": ("int8", "fp32"), "cuda": ("fp16", "fp32")}
_SUITED = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}


def _pick_precision(variants: dict[str, Any], device: str, precision: str) -> str:
    if precision == "auto":
        for candidate in _AUTO_PRECISION[device]:
            if candidate in variants:
                return candidate
        raise ModelLoadError(
            f"the model directory has no variant that runs on {device} (has: {', '.join(variants)}); "
            f"re-export with --precision {','.join(_SUITED[device])}"
        )
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use auto, {', '.join(PRECISIONS)}")
    if precision not in _SUITED[device]:
        other = "cuda" if device == "cpu" else "cpu"
        raise ProviderError(
            f"precision {precision!r} is not suited to device {device!r} (it is built for {other}); "
            f"on {device} use {' or '.join(_SUITED[device])}"
        )
    if precision not in variants:
        raise ModelLoadError(
            f"the model directory has no {precision} variant (has: {', '.join(variants)}); "
            f"re-export with --precision including {precision}"
        )
    return precision


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
        **options: Any,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        self.device = resolve_device(device)
        variants = self.manifest["variants"]
        self.precision = _pick_precision(variants, self.device, precision)
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
        variant = variants[self.precision]
        model_bytes = read_verified(self.model_dir, variant["file"], variant["sha256"])
        self._engine = Engine(model_bytes, self.device, SessionSettings(threads=threads, arena=arena))

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

    def batch_with_null(self, pairs: Iterable[tuple[str, str]], **options: Any) -> list[tuple[list[Answer], float]]:
        """Like :meth:`batch`, with each pair's no-answer score (the lowest over its windows).

        The no-answer score is the probability the model gives to the CLS span; it is what
        ``handle_impossible_answer=True`` ranks against the spans, and what SQuAD 2.0 evaluation
        uses as the no-answer probability.
        """
        opts = self.options.updated(**options).resolved(self._model_max_length, self._max_positions, self.device)
        checked, originals = [], []  # what the tokenizer reads; the caller's own contexts
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InputError(f"pair {i} must be a (question, context) tuple, got {type(pair).__name__}")
            checked.append((check_text("question", pair[0]), check_text("context", pair[1])))
            originals.append(pair[1])
        results: list[tuple[list[Answer], float]] = []
        chunk = max(8 * opts.batch_size, 256)  # type: ignore[operator]
        for first in range(0, len(checked), chunk):
            part = checked[first : first + chunk]
            windows = self._windower.windows(
                part,
                max_seq_len=opts.max_seq_len,  # type: ignore[arg-type]
                doc_stride=opts.doc_stride,  # type: ignore[arg-type]
                max_question_len=opts.max_question_len,
            )
            results.extend(self._answer(windows, originals[first : first + chunk], opts))
        return results

    def _answer(
        self, windows: Sequence[Window], contexts: Sequence[str], opts: QAOptions
    ) -> list[tuple[list[Answer], float]]:
        k = opts.top_k * 2 + 10 if opts.align_to_words else opts.top_k
        decoded: list[tuple[list[tuple[int, int]], np.ndarray, float]] = [None] * len(windows)  # type: ignore[list-item]
        order = sorted(range(len(windows)), key=lambda i: windows[i].input_ids.shape[0])
        size: int = opts.batch_size  # type: ignore[assignment]
        for b in range(0, len(order), size):
            rows = order[b : b + size]
            start, end = self._run([windows[i] for i in rows])
            for r, i in enumerate(rows):
                w = windows[i]
                n = w.input_ids.shape[0]
                spans = best_spans(start[r, :n], end[r, :n], w.allowed, k=k, max_answer_len=opts.max_answer_len)
                chars = spans_to_chars(w.encoding, spans.starts, spans.ends, align_to_words=opts.align_to_words)
                decoded[i] = (chars, spans.scores, spans.null_score)

        answers: list[tuple[list[Answer], float]] = []
        by_pair: list[list[int]] = [[] for _ in contexts]
        for i, w in enumerate(windows):
            by_pair[w.pair].append(i)
        for pair, context in enumerate(contexts):
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
            start, end = self._run([windows[i] for i in rows], type_ids=opts.token_type_ids)
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

    def _run(self, batch: Sequence[Window], type_ids: bool = True) -> tuple[np.ndarray, np.ndarray]:
        width = max(w.input_ids.shape[0] for w in batch)
        ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for r, w in enumerate(batch):
            n = w.input_ids.shape[0]
            ids[r, :n] = w.input_ids
            if type_ids:
                types[r, :n] = w.type_ids
            mask[r, :n] = 1
        return self._engine.run(ids, types, mask)


def load(
    model_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    arena: bool = True,
    **options: Any,
) -> QuestionAnswerer:
    """Load an exported model directory.

    ``device``: ``"auto"`` (CUDA when its provider is really active, else CPU), ``"cpu"`` or
    ``"cuda"``. ``precision``: ``"auto"`` (int8 on CPU, fp16 on CUDA, else fp32), ``"fp32"``,
    ``"int8"`` or ``"fp16"``. ``threads``: onnxruntime intra-op threads (default: the
    ``ONNXQA_THREADS`` environment variable, else one per physical core). ``arena``:
    onnxruntime's CPU memory arena (on by default; see BENCHMARKS.md for its effect on memory).
    Other keyword arguments are default :class:`QAOptions` for every call.

    Raises:
        ModelLoadError: the directory is missing, incomplete, corrupted or inconsistent.
        ProviderError: the device is unknown or unavailable, or the precision does not suit it.
        InputError: an option is invalid.
    """
    return QuestionAnswerer(model_dir, device=device, precision=precision, threads=threads, arena=arena, **options)
