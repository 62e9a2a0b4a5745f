"""Turn start/end logits into answer spans, as the transformers v4 question-answering pipeline does.

Per window: softmax over the window with non-candidate tokens masked to -10000, null score
``p_start[0] * p_end[0]``, CLS zeroed, span score ``p_start[i] * p_end[j]`` for
``i <= j < i + max_answer_len``, top ``k`` spans (``2 * top_k + 10`` when aligning to words).
Across windows: spans mapped to characters (aligned to whole words), equal answers (compared
case-insensitively) merged by adding their scores, the lowest null score of all windows added when
impossible answers are allowed, then the ``top_k`` best.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding

from ._answer import Answer

__all__ = ["WindowSpans", "best_spans", "best_spans_batch", "merge_answers", "spans_to_chars"]

_MASKED = np.float32(-10000.0)


@dataclass(frozen=True)
class WindowSpans:
    """The best token spans of one window, best first, and the window's null score."""

    starts: np.ndarray
    ends: np.ndarray
    scores: np.ndarray  # float32
    null_score: float


def _softmax(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(batch, tokens)`` logits, tokens not allowed masked to -10000.

    The row sums are accumulated in float64, so a row's probabilities do not depend on how much
    padding its batch adds after it (a float32 sum's rounding changes with the row's length).
    """
    x = np.where(allowed, logits.astype(np.float32, copy=False), _MASKED)
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    return x / x.sum(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    allowed: np.ndarray,
    *,
    k: int,
    max_answer_len: int,
) -> WindowSpans:
    """The ``k`` best spans ``(i, j)`` of one window, both ends on allowed tokens.

    ``start_logits``, ``end_logits`` and ``allowed`` are 1-D arrays over the window's tokens.
    """
    return best_spans_batch(start_logits[None], end_logits[None], allowed[None], k=k, max_answer_len=max_answer_len)[0]


def best_spans_batch(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    allowed: np.ndarray,
    *,
    k: int,
    max_answer_len: int,
) -> list[WindowSpans]:
    """:func:`best_spans` for every row of a padded batch of windows, computed at once.

    All three arrays are ``(batch, tokens)``; padding must have ``allowed`` False. A row's spans and
    scores do not depend on the other rows or on the padding: decoding a window in a batch gives
    what decoding it alone gives. Spans of equal score are ordered by start, then end.
    """
    allowed = np.asarray(allowed, dtype=bool)
    rows, n = allowed.shape
    p_start = _softmax(start_logits, allowed)
    p_end = _softmax(end_logits, allowed)
    null_scores = (p_start[:, 0] * p_end[:, 0]).tolist()
    p_start[:, 0] = p_end[:, 0] = 0.0

    width = min(max_answer_len, n)
    # band[r, i, d] = p_start[r, i] * p_end[r, i + d]: every span of at most max_answer_len tokens
    ends = np.arange(n)[:, None] + np.arange(width)[None, :]
    inside = ends < n
    ends = np.minimum(ends, n - 1)
    valid = inside[None] & allowed[:, :, None] & allowed[:, ends]
    band = np.where(valid, p_start[:, :, None] * p_end[:, ends], np.float32(-1.0))

    flat = band.reshape(rows, -1)
    n_valid = valid.reshape(rows, -1).sum(axis=1).tolist()
    kk = min(k, flat.shape[1])
    if kk == 1:
        top = np.argmax(flat, axis=1)[:, None]
    else:
        top = np.argpartition(-flat, kk - 1, axis=1)[:, :kk]
    out = []
    for r in range(rows):
        m = min(k, n_valid[r])
        if m == 0:
            empty = np.zeros(0, dtype=np.int64)
            out.append(WindowSpans(empty, empty, np.zeros(0, dtype=np.float32), null_scores[r]))
            continue
        index = top[r]
        scores = flat[r, index]
        index = index[np.lexsort((index, -scores))[:m]]  # best first; ties by position
        starts, offsets = np.divmod(index, width)
        out.append(WindowSpans(starts, starts + offsets, flat[r, index], null_scores[r]))
    return out


def spans_to_chars(
    encoding: Encoding, starts: Iterable[int], ends: Iterable[int], *, align_to_words: bool
) -> list[tuple[int, int]]:
    """Character ``(start, end)`` in the context for each token span of a window.

    With ``align_to_words`` the span grows to the whole words its first and last tokens belong to,
    falling back to the tokens' own offsets where a token has no word.
    """
    out = []
    offsets = encoding.offsets
    for s, e in zip(starts, ends):
        s, e = int(s), int(e)
        chars = None
        if align_to_words:
            start_word, end_word = encoding.token_to_word(s), encoding.token_to_word(e)
            if start_word is not None and end_word is not None:
                first = encoding.word_to_chars(start_word, sequence_index=1)
                last = encoding.word_to_chars(end_word, sequence_index=1)
                if first is not None and last is not None:
                    chars = (first[0], last[1])
        out.append(chars if chars is not None else (offsets[s][0], offsets[e][1]))
    return out


def merge_answers(
    context: str,
    candidates: Iterable[tuple[int, int, float]],
    *,
    null_score: float | None,
    top_k: int,
) -> list[Answer]:
    """Merge character spans (in window order) into the ``top_k`` best answers.

    Spans whose text is equal ignoring case are one answer: the first one's offsets, the sum of
    their scores (capped at 1.0 once ranked). ``null_score`` (``None`` when impossible answers are
    not allowed) adds the empty
    answer.
    """
    merged: list[list] = []  # [start, end, score]
    index: dict[str, int] = {}
    for start, end, score in candidates:
        key = context[start:end].lower()
        at = index.get(key)
        if at is None:
            index[key] = len(merged)
            merged.append([start, end, float(score)])
        else:
            merged[at][2] += float(score)
    if null_score is not None:
        merged.append([0, 0, null_score])
    merged.sort(key=lambda m: m[2], reverse=True)
    # a text found in several overlapping windows can sum past 1: rank by the sum, report at most 1
    return [Answer(text=context[s:e], score=min(score, 1.0), start=s, end=e) for s, e, score in merged[:top_k]]
