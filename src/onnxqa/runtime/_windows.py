"""Tokenize question/context pairs and cut long contexts into overlapping windows.

Reproduces the tokenization of the transformers v4 question-answering pipeline (fast tokenizer,
question first, ``truncation="only_second"``, ``stride=doc_stride``, no padding) with the
``tokenizers`` library alone.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding, Tokenizer

from .._errors import InputError

__all__ = ["Window", "Windower", "check_text"]

_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Window:
    """One model input: a question and a slice of its context."""

    pair: int  # index of the question/context pair in the request
    input_ids: np.ndarray  # int64, (n,)
    type_ids: np.ndarray  # int64, (n,)
    allowed: np.ndarray  # bool, (n,): tokens that may start or end an answer (context tokens, CLS)
    encoding: Encoding  # for token -> character offsets


def check_text(name: str, value: object) -> str:
    """Return ``value`` as text the tokenizer accepts, or raise :class:`InputError`.

    Lone surrogates (which cannot be encoded as UTF-8) are replaced by U+FFFD one for one, so
    character offsets still point into the caller's original string.
    """
    if not isinstance(value, str):
        raise InputError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise InputError(f"{name} is empty or whitespace only; pass some text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATES.sub("\ufffd", value)
    return value


class Windower:
    """Turns question/context pairs into :class:`Window` objects. Safe to share between threads."""

    def __init__(self, tokenizer_json: str, cls_token_id: int | None) -> None:
        try:
            first = Tokenizer.from_str(tokenizer_json)
        except Exception as exc:  # the tokenizers library raises plain Exception
            raise InputError(f"tokenizer.json cannot be parsed: {exc}") from exc
        self._json = tokenizer_json
        self._cls = cls_token_id
        self._n_special = first.num_special_tokens_to_add(is_pair=True)
        self._vocab_size = int(first.get_vocab_size(with_added_tokens=True))
        # parsing takes ~0.1 s for a 50k-token BPE: the one parsed here becomes the first window
        # shape's tokenizer, and the untruncated one is parsed only when something needs it
        self._spare: Tokenizer | None = first
        self._untruncated: Tokenizer | None = None
        self._by_shape: dict[tuple[int, int, str], Tokenizer] = {}
        self._lock = threading.Lock()

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def _parsed(self) -> Tokenizer:
        """A tokenizer of its own to configure (call with the lock held)."""
        tok, self._spare = self._spare or Tokenizer.from_str(self._json), None
        return tok

    @property
    def _plain(self) -> Tokenizer:
        """The tokenizer without truncation (texts of any length, tokenized alone)."""
        with self._lock:
            if self._untruncated is None:
                tok = self._parsed()
                tok.no_truncation()
                tok.no_padding()
                self._untruncated = tok
            return self._untruncated

    def _windowing(self, max_seq_len: int, doc_stride: int, strategy: str = "only_second") -> Tokenizer:
        key = (max_seq_len, doc_stride, strategy)
        with self._lock:
            tok = self._by_shape.get(key)
            if tok is None:
                tok = self._parsed()
                tok.no_padding()
                tok.enable_truncation(max_seq_len, stride=doc_stride, strategy=strategy, direction="right")
                self._by_shape[key] = tok
            return tok

    def windows(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        max_seq_len: int,
        doc_stride: int,
        max_question_len: int,
        first_pair: int = 0,
    ) -> list[Window]:
        """All windows of ``pairs``, in pair order then window order.

        Questions longer than ``max_question_len`` tokens are cut to that length.
        """
        questions = [q for q, _ in pairs]
        tok = self._windowing(max_seq_len, doc_stride)
        try:  # alone, a question shorter than the window is tokenized as without truncation
            encoded_questions = tok.encode_batch(questions, add_special_tokens=False)
        except Exception:  # "Second sequence not provided": a question longer than the window
            encoded_questions = self._plain.encode_batch(questions, add_special_tokens=False)
        prepared: list[tuple[str, str]] = []
        for (question, context), enc in zip(pairs, encoded_questions):
            n_question = len(enc.ids)
            if n_question > max_question_len:
                question = question[: enc.offsets[max_question_len - 1][1]]
                n_question = max_question_len
            room = max_seq_len - self._n_special - n_question
            if room <= doc_stride:
                raise InputError(
                    f"the question takes {n_question} tokens, leaving {max(room, 0)} of max_seq_len="
                    f"{max_seq_len} for the context, not more than doc_stride={doc_stride}: "
                    "shorten the question, lower max_question_len or doc_stride, or raise max_seq_len"
                )
            prepared.append((question, context))

        out: list[Window] = []
        for i, enc in enumerate(tok.encode_batch(prepared)):
            for window in [enc, *enc.overflowing]:
                ids = np.asarray(window.ids, dtype=np.int64)
                allowed = np.fromiter((s == 1 for s in window.sequence_ids), dtype=bool, count=len(ids))
                if self._cls is not None:
                    allowed |= ids == self._cls
                out.append(
                    Window(
                        pair=first_pair + i,
                        input_ids=ids,
                        type_ids=np.asarray(window.type_ids, dtype=np.int64),
                        allowed=allowed,
                        encoding=window,
                    )
                )
        return out

    def count_windows(
        self, question: str, contexts: Sequence[str], *, max_seq_len: int, stride: int, max_question_len: int
    ) -> int:
        """How many windows of ``max_seq_len`` tokens, overlapping by ``stride``, ``question`` paired
        with each of ``contexts`` makes, without making them: the question and each context are
        tokenized alone (one pass, without the windows' copies). Used to refuse a request before
        its windows take memory; when the question leaves no room the count is the contexts'."""
        n_question = min(len(self._plain.encode(question, add_special_tokens=False).ids), max_question_len)
        room = max(max_seq_len - self._n_special - n_question, 1)
        step = max(room - stride, 1)
        total = 0
        for enc in self._plain.encode_batch(list(contexts), add_special_tokens=False):
            extra = max(len(enc.ids) - room, 0)
            total += 1 + -(-extra // step)
        return total

    @staticmethod
    def most_windows(
        texts: Sequence[str], *, question_tokens: int, max_seq_len: int, stride: int, n_special: int = 4
    ) -> int:
        """An upper bound on :meth:`count_windows` from the texts' UTF-8 lengths alone (a token is
        at least one byte), with the question taking at least ``question_tokens`` tokens."""
        room = max(max_seq_len - n_special - question_tokens, 1)
        step = max(room - stride, 1)
        return sum(1 + -(-max(len(t.encode("utf-8", "surrogatepass")) - room, 0) // step) for t in texts)

    def document_windows(
        self, question: str, contents: Sequence[str], *, max_seq_len: int, stride: int
    ) -> list[Window]:
        """All windows of ``question`` paired with each of ``contents``, as Haystack's reader cuts them.

        That reader calls the tokenizer with ``truncation=True`` (``longest_first``): the same
        windows as ``only_second`` while the question takes at most half the window; a longer
        question is cut too, and its pieces are paired with the document's. ``Window.pair`` is the
        index in ``contents``; ``allowed`` marks the document's tokens only.
        """
        tok = self._windowing(max_seq_len, stride, "longest_first")
        try:
            encodings = tok.encode_batch([(question, content) for content in contents])
        except BaseException as exc:  # the tokenizers library panics on a stride too long for a piece
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise InputError(
                f"the question and documents cannot be cut into windows of max_seq_length={max_seq_len} "
                f"with stride={stride} ({exc}); lower the stride or raise max_seq_length"
            ) from None
        out: list[Window] = []
        for i, enc in enumerate(encodings):
            for window in [enc, *enc.overflowing]:
                ids = np.asarray(window.ids, dtype=np.int64)
                allowed = np.fromiter((s == 1 for s in window.sequence_ids), dtype=bool, count=len(ids))
                out.append(
                    Window(
                        pair=i,
                        input_ids=ids,
                        type_ids=np.asarray(window.type_ids, dtype=np.int64),
                        allowed=allowed,
                        encoding=window,
                    )
                )
        return out
