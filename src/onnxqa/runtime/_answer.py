"""The result type and the per-call options of the runtime."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .._errors import InputError

__all__ = ["Answer", "QAOptions"]

DEFAULT_BATCH = {"cpu": 1, "cuda": 64}


@dataclass(frozen=True)
class Answer:
    """One answer span, with character offsets into the caller's own context.

    ``context[start:end] == text`` always holds. The "no answer" of SQuAD 2.0 (only returned with
    ``handle_impossible_answer=True``) is ``Answer(text="", score=..., start=0, end=0)``; test it
    with :attr:`is_impossible`.
    """

    text: str
    score: float
    start: int
    end: int

    @property
    def is_impossible(self) -> bool:
        """True for the "no answer" answer."""
        return self.start == self.end == 0 and self.text == ""

    def to_dict(self) -> dict[str, Any]:
        """The answer as a plain dict, with the transformers pipeline's key names."""
        return {"answer": self.text, "score": self.score, "start": self.start, "end": self.end}


@dataclass(frozen=True, kw_only=True)
class QAOptions:
    """Decoding and windowing options, with the transformers v4 pipeline's defaults and meaning.

    ``max_seq_len`` and ``doc_stride`` left as ``None`` resolve like the pipeline's:
    ``min(tokenizer.model_max_length, 384)`` and ``min(max_seq_len // 2, 128)``. ``batch_size``
    (windows per inference call) left as ``None`` resolves per device: 64 on CUDA; 1 on CPU, where
    larger batches only add padding and cache misses and, with the int8 variant (whose activation
    scales are computed per call), make a window's scores depend on its batch neighbours.
    """

    top_k: int = 1
    max_answer_len: int = 15
    max_seq_len: int | None = None
    doc_stride: int | None = None
    max_question_len: int = 64
    handle_impossible_answer: bool = False
    align_to_words: bool = True
    batch_size: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("handle_impossible_answer", "align_to_words"):
                if not isinstance(value, bool):
                    raise InputError(f"{f.name} must be True or False, got {value!r}")
                continue
            if value is None and f.name in ("max_seq_len", "doc_stride", "batch_size"):
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"{f.name} must be an integer, got {value!r}")
            if f.name == "doc_stride":
                if value < 0:
                    raise InputError(f"doc_stride must be >= 0, got {value}")
            elif value < 1:
                raise InputError(f"{f.name} must be >= 1, got {value}")
        if self.max_seq_len is not None and self.doc_stride is not None:
            if self.doc_stride >= self.max_seq_len:
                raise InputError(
                    f"doc_stride ({self.doc_stride}) must be smaller than max_seq_len "
                    f"({self.max_seq_len}): windows overlap by doc_stride tokens"
                )

    def updated(self, **changes: Any) -> QAOptions:
        """A copy with ``changes`` applied (unknown names raise :class:`InputError`)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **changes) if changes else self

    def resolved(self, model_max_length: int, max_positions: int, device: str = "cpu") -> QAOptions:
        """Fill in ``max_seq_len`` / ``doc_stride`` / ``batch_size`` and check them against the model."""
        max_seq_len = self.max_seq_len if self.max_seq_len is not None else min(model_max_length, 384)
        if max_seq_len > max_positions:
            raise InputError(
                f"max_seq_len ({max_seq_len}) exceeds the model's {max_positions} positions; "
                f"use max_seq_len <= {max_positions}"
            )
        doc_stride = self.doc_stride if self.doc_stride is not None else min(max_seq_len // 2, 128)
        if doc_stride >= max_seq_len:
            raise InputError(f"doc_stride ({doc_stride}) must be smaller than max_seq_len ({max_seq_len})")
        batch_size = self.batch_size if self.batch_size is not None else DEFAULT_BATCH[device]
        return replace(self, max_seq_len=max_seq_len, doc_stride=doc_stride, batch_size=batch_size)
