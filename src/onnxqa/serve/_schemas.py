"""The HTTP contract as pydantic models: what the OpenAPI description says is what the server enforces."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from . import MAX_PAIRS

__all__ = [
    "MIN_TIMEOUT",
    "AnswerOut",
    "AnswerRequest",
    "AnswerResponse",
    "BatchRequest",
    "BatchResponse",
    "DocumentAnswerOut",
    "DocumentIn",
    "DocumentsRequest",
    "DocumentsResponse",
    "ErrorResponse",
]

MIN_TIMEOUT = 0.001  # seconds: a request's own timeout is at least this

# not empty and not whitespace only, whitespace as Python's str.isspace() (what the runtime refuses)
_TEXT = {
    "min_length": 1,
    "pattern": r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Timeout(_Strict):
    timeout: StrictFloat | StrictInt | None = Field(
        None,
        ge=MIN_TIMEOUT,
        description=f"seconds (at least {MIN_TIMEOUT}); at most the server's own request timeout",
    )


class _Options(_Timeout):
    top_k: StrictInt | None = Field(None, ge=1, description="number of answers (default 1)")
    handle_impossible_answer: StrictBool | None = Field(None, description="let the empty answer compete")
    max_answer_len: StrictInt | None = Field(None, ge=1, description="longest answer, in tokens (default 15)")
    max_seq_len: StrictInt | None = Field(None, ge=1, description="tokens per window (at most the model's positions)")
    doc_stride: StrictInt | None = Field(None, ge=0, description="tokens of overlap between windows")
    max_question_len: StrictInt | None = Field(
        None, ge=1, description="longer questions are cut to this many tokens (default 64)"
    )
    align_to_words: StrictBool | None = Field(None, description="grow spans to whole words (default true)")

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"question", "context", "pairs", "timeout"})


class AnswerRequest(_Options):
    """One question about one context."""

    question: StrictStr = Field(..., **_TEXT)  # type: ignore[arg-type]
    context: StrictStr = Field(..., **_TEXT)  # type: ignore[arg-type]


class Pair(_Strict):
    question: StrictStr = Field(..., **_TEXT)  # type: ignore[arg-type]
    context: StrictStr = Field(..., **_TEXT)  # type: ignore[arg-type]


class BatchRequest(_Options):
    """Many question/context pairs, answered with the same options."""

    pairs: list[Pair] = Field(..., min_length=1, max_length=MAX_PAIRS)


class DocumentIn(_Strict):
    """A passage found by a search: its text, and optionally its id and metadata (``page_number``)."""

    content: StrictStr
    id: StrictStr | None = None
    meta: dict[str, Any] | None = None


class DocumentsRequest(_Timeout):
    """One question across the documents a search found (Haystack's extractive reader's options)."""

    question: StrictStr = Field(..., **_TEXT)  # type: ignore[arg-type]
    documents: list[StrictStr | DocumentIn] = Field(..., min_length=1, description="passages, as text or objects")
    top_k: StrictInt | None = Field(20, ge=0, description="answers to return (null: all)")
    score_threshold: StrictFloat | StrictInt | None = Field(None, description="drop answers scored below this")
    max_seq_length: StrictInt = Field(384, ge=1, description="tokens per window")
    stride: StrictInt = Field(128, ge=0, description="tokens of overlap between windows")
    answers_per_seq: StrictInt = Field(20, ge=1, description="candidate spans per window")
    no_answer: StrictBool = Field(True, description="add the no-answer entry")
    calibration_factor: StrictFloat | StrictInt = Field(0.1, description="scales the logits before the sigmoid")
    overlap_threshold: StrictFloat | StrictInt | None = Field(
        0.01, description="drop answers overlapping a better one of the same document by more than this share"
    )

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude={"question", "documents", "timeout"})


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


class DocumentAnswerOut(BaseModel):
    text: str
    score: float
    start: int
    end: int
    document: int | None = Field(..., description="index of the document in the request; null for no answer")
    id: str | None = Field(..., description="the document's id, if it had one")
    page_number: int | None
    is_impossible: bool


class DocumentsResponse(BaseModel):
    answers: list[DocumentAnswerOut]
    model: str
    precision: str
    device: str


class ErrorResponse(BaseModel):
    error: str
    message: str
