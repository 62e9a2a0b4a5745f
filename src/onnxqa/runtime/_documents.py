"""One question, many documents: the best answers across all of them, scored comparably.

Reproduces Haystack's ``ExtractiveReader`` (haystack-ai 2.x, and ``TransformersExtractiveReader``
of ``transformers-haystack``, same algorithm):

- every window's start and end logits are masked to the document's tokens
  (``sequence_ids == 1``), a span ``(i, j)`` with ``i <= j`` (no length limit) scores
  ``sigmoid(calibration_factor * (start[i] + end[j]))``: not normalized per window, so scores
  compare across windows and documents;
- each window gives its ``answers_per_seq`` best spans; all spans of all windows are sorted by
  score, spans overlapping a better one of the same document by more than ``overlap_threshold``
  (of either span's length) are dropped, and the ``top_k`` best are kept;
- the no-answer entry scores ``prod(1 - score)`` over the answers kept; with it, the list is
  sorted again and cut at ``score_threshold``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

import numpy as np

from .._errors import InputError

__all__ = [
    "Document",
    "DocumentAnswer",
    "ReaderOptions",
    "SpanCandidates",
    "as_documents",
    "deduplicate_by_overlap",
    "select_answers",
    "span_candidates",
]

_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Document:
    """A document to search: its text, and optionally an id and metadata.

    Any object with a ``content`` attribute (and optionally ``id`` and ``meta``) is read the same
    way, Haystack's ``Document`` included; plain strings are documents without id or metadata.
    ``content=None`` documents are skipped. ``meta["page_number"]`` (an int) is the page the
    text starts on: answers get ``page_number`` from it plus the form feeds before them.
    """

    content: str | None
    id: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentAnswer:
    """One answer in one of many documents, or the no-answer entry.

    ``text == content[start:end]`` of the document at index ``document`` of the call (``id`` is
    that document's id, if it had one). The no-answer entry has ``document=None``, ``text=""``,
    ``start == end == 0``; test it with :attr:`is_impossible`.
    """

    text: str
    score: float
    start: int
    end: int
    document: int | None
    id: str | None = None
    page_number: int | None = None

    @property
    def is_impossible(self) -> bool:
        """True for the no-answer entry."""
        return self.document is None


@dataclass(frozen=True, kw_only=True)
class ReaderOptions:
    """Options of :meth:`QuestionAnswerer.answer_documents`, with Haystack's reader's defaults.

    ``top_k`` (``None``: all), ``score_threshold`` (``None``: none), ``max_seq_length`` and
    ``stride`` (tokens per window and of overlap), ``answers_per_seq`` (candidates per window),
    ``no_answer``, ``calibration_factor``, ``overlap_threshold`` (``None``: keep overlapping
    answers), ``batch_size`` (windows per inference call; ``None``: 1 on CPU, 64 on CUDA) and
    ``token_type_ids``: Haystack's reader feeds none, so BERT models see all-zero type ids;
    ``True`` feeds the real ones (question 0, document 1). Zero is a legitimate value here,
    never a synonym for the default.
    """

    top_k: int | None = 20
    score_threshold: float | None = None
    max_seq_length: int = 384
    stride: int = 128
    answers_per_seq: int = 20
    no_answer: bool = True
    calibration_factor: float = 0.1
    overlap_threshold: float | None = 0.01
    batch_size: int | None = None
    token_type_ids: bool = False

    def __post_init__(self) -> None:
        for name in ("no_answer", "token_type_ids"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name, low, optional in (
            ("top_k", 0, True),
            ("max_seq_length", 1, False),
            ("stride", 0, False),
            ("answers_per_seq", 1, False),
            ("batch_size", 1, True),
        ):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, optional in (("score_threshold", True), ("calibration_factor", False), ("overlap_threshold", True)):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value!r}")
        if self.stride >= self.max_seq_length:
            raise InputError(f"stride ({self.stride}) must be smaller than max_seq_length ({self.max_seq_length})")

    def updated(self, **changes: Any) -> ReaderOptions:
        """A copy with ``changes`` applied (unknown names raise :class:`InputError`)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **changes) if changes else self


def as_documents(documents: Iterable[object]) -> list[Document]:
    """The caller's documents (strings, :class:`Document` or objects with ``content``) as :class:`Document`."""
    if isinstance(documents, (str, bytes)):
        raise InputError("documents must be a list of documents, not a single string")
    out = []
    for i, doc in enumerate(documents):
        meta: Any
        if isinstance(doc, str):
            content, doc_id, meta = doc, None, {}
        elif hasattr(doc, "content"):
            content, doc_id, meta = doc.content, getattr(doc, "id", None), getattr(doc, "meta", None) or {}
        else:
            raise InputError(f"document {i} must be a str or have a `content` attribute, got {type(doc).__name__}")
        if content is not None and not isinstance(content, str):
            raise InputError(f"the content of document {i} must be a str or None, got {type(content).__name__}")
        if not isinstance(meta, Mapping):
            raise InputError(f"the meta of document {i} must be a mapping, got {type(meta).__name__}")
        out.append(Document(content=content, id=None if doc_id is None else str(doc_id), meta=meta))
    return out


def tokenizable(content: str) -> str:
    """``content`` with lone surrogates replaced one for one, so offsets still point into the original."""
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        content = _SURROGATES.sub("\ufffd", content)
    return content


@dataclass(frozen=True)
class SpanCandidates:
    """The best spans of one window: token indices, best first, and their scores (float32)."""

    starts: np.ndarray
    ends: np.ndarray
    scores: np.ndarray


@lru_cache(maxsize=16)
def _below_diagonal(n: int) -> np.ndarray:
    return np.tri(n, n, -1, dtype=bool)


def span_candidates(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    allowed: np.ndarray,
    *,
    k: int,
    calibration_factor: float,
) -> SpanCandidates:
    """The ``k`` best spans ``(i, j)``, ``i <= j``, both on allowed tokens, of one window.

    Scores are ``sigmoid(calibration_factor * (start[i] + end[j]))`` in float32, as Haystack
    computes them; spans whose score is 0 in float32 are dropped, as Haystack drops them. Ties are
    broken by position (earlier start, then earlier end first).
    """
    n = start_logits.shape[0]
    start = np.where(allowed, start_logits.astype(np.float32, copy=False), -np.inf).astype(np.float32)
    end = np.where(allowed, end_logits.astype(np.float32, copy=False), -np.inf).astype(np.float32)
    sums = np.where(_below_diagonal(n), np.float32(-np.inf), start[:, None] + end[None, :])
    flat = sums.ravel()
    k = min(k, flat.shape[0])
    if k == 0:
        empty = np.zeros(0, dtype=np.int64)
        return SpanCandidates(empty, empty, np.zeros(0, dtype=np.float32))
    if k < flat.shape[0]:
        top = np.argpartition(-flat, k - 1)[:k]
        top.sort()
    else:
        top = np.arange(flat.shape[0])
    order = top[np.argsort(-flat[top], kind="stable")]
    x = flat[order] * np.float32(calibration_factor)
    with np.errstate(over="ignore"):
        scores = (np.float32(1.0) / (np.float32(1.0) + np.exp(-x))).astype(np.float32)
    keep = scores > 0
    order, scores = order[keep], scores[keep]
    return SpanCandidates(order // n, order % n, scores)


def _overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> int:
    if a_start <= b_end and b_start <= a_end:
        return min(a_end - a_start, a_end - b_start, b_end - a_start, b_end - b_start)
    return 0


def deduplicate_by_overlap(
    candidates: Sequence[tuple[Any, int, int]], overlap_threshold: float | None, limit: int | None = None
) -> list[int]:
    """Indices of the ``(document key, start, end)`` candidates to keep, in order.

    A candidate is dropped when it overlaps an earlier kept one of the same document by more than
    ``overlap_threshold`` of either span's length (in characters). ``limit`` stops once that many
    are kept: the first ones never depend on later candidates.
    """
    if overlap_threshold is None:
        return list(range(len(candidates)))[:limit]
    kept: list[int] = []
    by_doc: dict[Any, list[tuple[int, int]]] = {}
    for i, (key, start, end) in enumerate(candidates):
        if limit is not None and len(kept) >= limit:
            break
        same_doc = by_doc.setdefault(key, [])
        for kept_start, kept_end in same_doc:
            overlap = _overlap(kept_start, kept_end, start, end)
            if overlap and (
                overlap / (kept_end - kept_start) > overlap_threshold or overlap / (end - start) > overlap_threshold
            ):
                break
        else:
            kept.append(i)
            same_doc.append((start, end))
    return kept


def _page_number(doc: Document, start: int) -> int | None:
    page = doc.meta.get("page_number")
    if not isinstance(page, int) or not doc.content:
        return None
    return page + doc.content[:start].count("\f")


def select_answers(
    documents: Sequence[Document],
    candidates: Sequence[tuple[int, int, int, float]],
    opts: ReaderOptions,
) -> list[DocumentAnswer]:
    """The final answers from ``(document index, start char, end char, score)`` candidates.

    ``candidates`` come window after window (documents in order), each window's best first.
    """
    order = sorted(range(len(candidates)), key=lambda i: candidates[i][3], reverse=True)
    keys = [
        (documents[candidates[i][0]].id or ("index", candidates[i][0]), candidates[i][1], candidates[i][2])
        for i in order
    ]
    kept = [order[i] for i in deduplicate_by_overlap(keys, opts.overlap_threshold, limit=opts.top_k)]
    answers = []
    for doc_index, start, end, score in (candidates[i] for i in kept):
        doc = documents[doc_index]
        answers.append(
            DocumentAnswer(
                text=doc.content[start:end],  # type: ignore[index]
                score=score,
                start=start,
                end=end,
                document=doc_index,
                id=doc.id,
                page_number=_page_number(doc, start),
            )
        )
    if opts.no_answer:
        no_answer = math.prod(1 - a.score for a in answers)
        answers.append(DocumentAnswer(text="", score=no_answer, start=0, end=0, document=None))
        answers.sort(key=lambda a: a.score, reverse=True)
    if opts.score_threshold is not None:
        answers = [a for a in answers if a.score >= opts.score_threshold]
    return answers
