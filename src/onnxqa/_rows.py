"""Answering rows of a table: the answer columns, per-row options, rows grouped by options, and an
error of its own for each row that cannot be answered.

Used by ``onnxqa batch`` (:mod:`onnxqa.batch`) and by Ray Data's :class:`onnxqa.ray.QAPredictor`,
so that a row gets the same answer, or the same error, whichever runs it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import InputError, OnnxQAError
from .runtime import Answer, QAOptions

if TYPE_CHECKING:
    import pyarrow as pa

    from .runtime import QuestionAnswerer

__all__ = [
    "ANSWER_COLUMNS",
    "ROW_OPTIONS",
    "Outcome",
    "Request",
    "answer_columns",
    "answer_requests",
    "arrow_answer_fields",
    "plain",
    "row_options",
]

ANSWER_COLUMNS = ("answer", "score", "start", "end", "is_impossible", "error")
"""Columns added to every row: the best answer's text, score and character offsets, whether it
is the empty answer, and the error message of a row that could not be answered (else null)."""
ROW_OPTIONS = (
    "handle_impossible_answer",
    "max_answer_len",
    "max_question_len",
    "max_seq_len",
    "doc_stride",
    "align_to_words",
)
"""Options a row may carry in a column of that name (null: the job's own)."""

Request = tuple[Sequence[tuple[Any, Any]], Mapping[str, Any]]
"""Some ``(question, context)`` pairs and the options to answer them with."""
Outcome = list[list[Answer]] | OnnxQAError
"""A request's answers (one list per pair, as ``qa.batch`` gives them), or why it got none."""


def plain(value: Any) -> Any:
    """A JSON/Arrow/numpy cell as a plain Python value; None for null and NaN."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return int(value)  # pandas turns integer columns with nulls into floats
    return value


def row_options(columns: Mapping[str, Sequence[Any]], rows: int) -> list[dict[str, Any]]:
    """Each row's options from the columns named in :data:`ROW_OPTIONS` (nulls left out)."""
    present = [name for name in ROW_OPTIONS if name in columns]
    out: list[dict[str, Any]] = []
    for i in range(rows):
        opts = {}
        for name in present:
            value = plain(columns[name][i])
            if value is not None:
                opts[name] = value
        out.append(opts)
    return out


def answer_requests(qa: QuestionAnswerer, requests: Sequence[Request], *, coalesce: bool = True) -> list[Outcome]:
    """Each request's answers, or its own error.

    Requests with the same options are answered by one ``qa.batch`` call (``coalesce=False``: each
    request by a call of its own). When such a call fails, its requests are answered one by one, so
    the request at fault gets its error and the others their answers.
    """
    outcomes: list[Outcome | None] = [None] * len(requests)
    groups: dict[Any, list[int]] = {}
    for i, (_, options) in enumerate(requests):
        key = tuple(sorted(options.items())) if coalesce else i
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        options = dict(requests[members[0]][1])
        try:
            results = qa.batch([pair for i in members for pair in requests[i][0]], **options)
        except OnnxQAError as exc:
            if len(members) == 1:
                outcomes[members[0]] = exc
                continue
            for i in members:  # find the request at fault
                try:
                    outcomes[i] = qa.batch(requests[i][0], **options)
                except OnnxQAError as own:
                    outcomes[i] = own
            continue
        first = 0
        for i in members:
            outcomes[i] = results[first : first + len(requests[i][0])]
            first += len(requests[i][0])
    return outcomes  # type: ignore[return-value]


def _looks_answerable(text: Any) -> bool:
    """Worth a place in a shared call: a question or context ``qa.batch`` will not refuse for itself."""
    return isinstance(text, str) and bool(text.strip())


def answer_columns(
    qa: QuestionAnswerer,
    questions: Sequence[Any],
    contexts: Sequence[Any],
    options: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, list[Any]]:
    """:data:`ANSWER_COLUMNS` for rows of questions, contexts and per-row options.

    Rows with the same options are answered by one ``qa.batch`` call, so each gets exactly the
    answer ``qa.batch`` (or ``qa(question, context, **options)``) gives it. A row with a bad option,
    an empty or non-text question or context, or that its call rejects gets ``error`` (the message
    ``qa`` gives it alone) and nulls; the others are answered.
    """
    n = len(questions)
    out: dict[str, list[Any]] = {name: [None] * n for name in ANSWER_COLUMNS}
    shared: list[int] = []
    alone: list[int] = []
    row_opts: list[dict[str, Any]] = []
    for i in range(n):
        opts = dict(options[i]) if options is not None else {}
        row_opts.append(opts)
        try:
            QAOptions().updated(**opts)
        except InputError as exc:
            out["error"][i] = str(exc)
            continue
        answerable = _looks_answerable(questions[i]) and _looks_answerable(contexts[i])
        (shared if answerable else alone).append(i)
    for rows, coalesce in ((shared, True), (alone, False)):
        requests = [([(questions[i], contexts[i])], row_opts[i]) for i in rows]
        for i, outcome in zip(rows, answer_requests(qa, requests, coalesce=coalesce)):
            if isinstance(outcome, OnnxQAError):
                out["error"][i] = str(outcome)
            elif outcome[0]:
                best = outcome[0][0]
                out["answer"][i], out["score"][i] = best.text, best.score
                out["start"][i], out["end"][i] = best.start, best.end
                out["is_impossible"][i] = best.is_impossible
            # no answer at all (no valid span and no empty answer allowed): nulls, no error
    return out


def arrow_answer_fields() -> list[pa.Field]:
    """The Arrow types of :data:`ANSWER_COLUMNS` (needs pyarrow)."""
    import pyarrow as pa

    types = (pa.string(), pa.float64(), pa.int64(), pa.int64(), pa.bool_(), pa.string())
    return [pa.field(name, t) for name, t in zip(ANSWER_COLUMNS, types)]
