"""From windows to answers: the stages after tokenization, as plain functions and small job objects.

A *job* is one call's work once tokenized: its windows, and what to do with their logits.
:class:`PairsJob` answers question/context pairs (the transformers pipeline's decoding),
:class:`DocumentsJob` answers one question across documents (Haystack's reader's decoding). Both
take their windows' logits a few rows at a time, in any order and in calls shared with other jobs,
and give their answers once the last window is decoded: the same answers whatever the calls were
(for batch-invariant variants).

:func:`run_call` runs one inference call over windows of one or more jobs: pad, run the model,
decode. :func:`run_planned` sorts windows by length and runs them in planned calls;
:func:`run_jobs` runs every window of some jobs and finishes them. The synchronous API is
``run_jobs``; the scheduler behind the async API runs ``run_planned`` on the windows it picked. A
:data:`StageHook` is told how long each stage took.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from ._answer import Answer, QAOptions
from ._buckets import Buckets, plan_batches
from ._decode import best_spans_batch, merge_answers, spans_to_chars
from ._documents import Document, DocumentAnswer, ReaderOptions, select_answers, span_candidates
from ._windows import Window

__all__ = [
    "STAGES",
    "DocumentsJob",
    "Job",
    "PairsJob",
    "Result",
    "Runner",
    "StageHook",
    "finish",
    "pad_windows",
    "run_call",
    "run_jobs",
    "run_planned",
]

Result = tuple[list[Answer], float]  # a pair's answers and its no-answer score
StageHook = Callable[[str, float, int], None]
"""``hook(stage, seconds, windows)``: called after each stage of each call (see :data:`STAGES`)."""
STAGES = ("tokenize", "pad", "model", "decode", "assemble")
"""The stages a :data:`StageHook` hears of: tokenization of a call's texts (``windows`` is the number
it produced), padding the inputs of one inference call, the model, span decoding of the call's
windows, and assembling a finished job's answers across its windows."""


class Runner(Protocol):
    """What runs the model: ``run(input_ids, token_type_ids, attention_mask) -> (start, end)``."""

    def run(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def pad_windows(
    windows: Sequence[Window], pad_id: int, rows: int | None = None, width: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model inputs for ``windows`` padded to ``rows`` x ``width`` (default: their own count and
    longest window), and which tokens may start or end an answer (the windows' rows only).

    A padded row attends to one token, so no kernel sees an empty row; its logits are dropped.
    """
    n_rows = max(rows or 0, len(windows))
    width = max(width or 0, max(w.input_ids.shape[0] for w in windows))
    ids = np.full((n_rows, width), pad_id, dtype=np.int64)
    types = np.zeros((n_rows, width), dtype=np.int64)
    mask = np.zeros((n_rows, width), dtype=np.int64)
    mask[len(windows) :, 0] = 1
    allowed = np.zeros((len(windows), width), dtype=bool)
    for r, w in enumerate(windows):
        n = w.input_ids.shape[0]
        ids[r, :n] = w.input_ids
        types[r, :n] = w.type_ids
        mask[r, :n] = 1
        allowed[r, :n] = w.allowed
    return ids, types, mask, allowed


class Job(Protocol):
    """One call's windows and their decoding (see the module's docstring)."""

    windows: Sequence[Window]

    def decode(self, items: Sequence[int], start: np.ndarray, end: np.ndarray, allowed: np.ndarray) -> None:
        """Decode windows ``items`` (indices into :attr:`windows`) from rows of logits, in that order."""

    def finish(self) -> Any:
        """The answers, once every window is decoded."""


# a window's decoded spans: character (start, end) pairs, their scores, the window's null score
_Decoded = tuple[list[tuple[int, int]], np.ndarray, float]


@dataclass(eq=False)
class PairsJob:
    """Question/context pairs: each pair's answers (transformers pipeline decoding) and null score."""

    windows: list[Window]
    contexts: list[str]
    opts: QAOptions

    def __post_init__(self) -> None:
        self._decoded: list[_Decoded | None] = [None] * len(self.windows)

    @property
    def decode_key(self) -> tuple[int, int]:
        """Jobs with the same key decode their rows in one batched call."""
        k = self.opts.top_k * 2 + 10 if self.opts.align_to_words else self.opts.top_k
        return k, self.opts.max_answer_len

    def decode(self, items: Sequence[int], start: np.ndarray, end: np.ndarray, allowed: np.ndarray) -> None:
        k, max_answer_len = self.decode_key
        self.store(items, best_spans_batch(start, end, allowed, k=k, max_answer_len=max_answer_len))

    def store(self, items: Sequence[int], spans: Sequence[Any]) -> None:
        """Keep windows' best token spans (:class:`WindowSpans`) as character spans."""
        align = self.opts.align_to_words
        for i, found in zip(items, spans):
            chars = spans_to_chars(self.windows[i].encoding, found.starts, found.ends, align_to_words=align)
            self._decoded[i] = (chars, found.scores, found.null_score)

    def finish(self) -> list[Result]:
        by_pair: list[list[int]] = [[] for _ in self.contexts]
        for i, w in enumerate(self.windows):
            by_pair[w.pair].append(i)
        decoded = self._decoded
        out: list[Result] = []
        for pair, context in enumerate(self.contexts):
            candidates = [
                (s, e, score)
                for i in by_pair[pair]
                for (s, e), score in zip(decoded[i][0], decoded[i][1].tolist())  # type: ignore[index]
            ]
            null = min(decoded[i][2] for i in by_pair[pair])  # type: ignore[index]
            kept = null if self.opts.handle_impossible_answer else None
            out.append((merge_answers(context, candidates, null_score=kept, top_k=self.opts.top_k), null))
        return out


@dataclass(eq=False)
class DocumentsJob:
    """One question across documents: Haystack's reader's spans, scores and no-answer entry.

    ``present``: indices (into ``documents``) of the documents that have content; a window's
    ``pair`` indexes that list. Without ``opts.token_type_ids`` the windows' type ids are zeros,
    as Haystack's reader feeds them.
    """

    windows: list[Window]
    documents: list[Document]
    present: list[int]
    opts: ReaderOptions

    def __post_init__(self) -> None:
        if not self.opts.token_type_ids:
            self.windows = [replace(w, type_ids=np.zeros_like(w.type_ids)) for w in self.windows]
        self._candidates: list[list[tuple[int, int, int, float]]] = [[] for _ in self.windows]

    def decode(self, items: Sequence[int], start: np.ndarray, end: np.ndarray, allowed: np.ndarray) -> None:
        for r, i in enumerate(items):
            w = self.windows[i]
            n = w.input_ids.shape[0]
            spans = span_candidates(
                start[r, :n],
                end[r, :n],
                w.allowed,
                k=self.opts.answers_per_seq,
                calibration_factor=self.opts.calibration_factor,
            )
            offsets = w.encoding.offsets
            doc = self.present[w.pair]
            self._candidates[i] = [
                (doc, offsets[s][0], offsets[e][1], score)
                for s, e, score in zip(spans.starts.tolist(), spans.ends.tolist(), spans.scores.tolist())
            ]

    def finish(self) -> list[DocumentAnswer]:
        return select_answers(self.documents, [c for window in self._candidates for c in window], self.opts)


def run_call(
    runner: Runner,
    pad_id: int,
    work: Sequence[tuple[Job, Sequence[int]]],
    *,
    rows: int | None = None,
    width: int | None = None,
    hook: StageHook | None = None,
) -> int:
    """One inference call over windows of one or more jobs (``(job, window indices)``), padded to
    ``rows`` x ``width`` (default: their own size), each job's rows decoded by the job; returns the
    number of windows run. :class:`PairsJob` rows with the same decoding options are decoded together.
    """
    windows = [job.windows[i] for job, items in work for i in items]
    t0 = time.perf_counter()
    ids, types, mask, allowed = pad_windows(windows, pad_id, rows, width)
    t1 = time.perf_counter()
    start, end = runner.run(ids, types, mask)
    t2 = time.perf_counter()
    start, end = start[: len(windows)], end[: len(windows)]
    first = 0
    pairs: dict[tuple[int, int], list[tuple[PairsJob, Sequence[int], int]]] = {}
    for job, items in work:
        if isinstance(job, PairsJob):
            pairs.setdefault(job.decode_key, []).append((job, items, first))
        else:
            own = slice(first, first + len(items))
            job.decode(items, start[own], end[own], allowed[own])
        first += len(items)
    for (k, max_answer_len), group in pairs.items():
        picked = [r for _, items, at in group for r in range(at, at + len(items))]
        pick = slice(None) if len(picked) == len(windows) else picked
        spans = best_spans_batch(start[pick], end[pick], allowed[pick], k=k, max_answer_len=max_answer_len)
        at = 0
        for job, items, _ in group:
            job.store(items, spans[at : at + len(items)])
            at += len(items)
    if hook is not None:
        t3 = time.perf_counter()
        hook("pad", t1 - t0, len(windows))
        hook("model", t2 - t1, len(windows))
        hook("decode", t3 - t2, len(windows))
    return len(windows)


def run_planned(
    runner: Runner,
    pad_id: int,
    work: Sequence[tuple[Job, Sequence[int]]],
    *,
    batch_size: int,
    buckets: Buckets | None = None,
    max_width: int | None = None,
    hook: StageHook | None = None,
) -> int:
    """The windows of ``work`` (``(job, window indices)``) sorted by length and run in calls of
    ``batch_size`` (shaped by ``buckets``); returns the number of windows run."""
    owners = [(job, i) for job, items in work for i in items]
    lengths = [job.windows[i].input_ids.shape[0] for job, i in owners]
    for planned in plan_batches(lengths, batch_size, buckets, max_width):
        call: list[tuple[Job, list[int]]] = []
        for index in planned.windows:
            job, i = owners[index]
            if call and call[-1][0] is job:
                call[-1][1].append(i)
            else:
                call.append((job, [i]))
        run_call(runner, pad_id, call, rows=planned.rows, width=planned.width, hook=hook)
    return len(owners)


def run_jobs(
    runner: Runner,
    pad_id: int,
    jobs: Sequence[Job],
    *,
    batch_size: int,
    buckets: Buckets | None = None,
    max_width: int | None = None,
    hook: StageHook | None = None,
) -> list[Any]:
    """Every window of ``jobs`` run as :func:`run_planned` runs them, then each job's answers, in order."""
    work = [(job, range(len(job.windows))) for job in jobs]
    run_planned(runner, pad_id, work, batch_size=batch_size, buckets=buckets, max_width=max_width, hook=hook)
    return [finish(job, hook) for job in jobs]


def finish(job: Job, hook: StageHook | None = None) -> Any:
    """``job.finish()``, timed as the ``assemble`` stage."""
    t0 = time.perf_counter()
    out = job.finish()
    if hook is not None:
        hook("assemble", time.perf_counter() - t0, len(job.windows))
    return out
