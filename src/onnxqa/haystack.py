"""A torch-free Haystack reader: ``ExtractiveReader`` over an onnxqa model directory.

    pip install "onnxqa[haystack]"

A drop-in for Haystack's ``ExtractiveReader`` (``haystack.components.readers``, moved in Haystack
3 to ``transformers-haystack`` as ``TransformersExtractiveReader``): the same constructor
arguments and defaults, the same ``run`` arguments, the same answers (Haystack ``ExtractedAnswer``
objects with the document attached and ``meta["answer_page_number"]``), with the model run by
ONNX Runtime. Only core Haystack APIs present in 2.x and 3.x are used (``component``,
``Document``, ``ExtractedAnswer``, ``default_to_dict`` / ``default_from_dict``); tested with
haystack-ai 2.31 and 3.4 (``tests/test_haystack3.py``). Haystack 3 loads YAML pipelines naming this
class only with ``allowed_modules=["onnxqa.haystack"]`` (or ``HAYSTACK_DESERIALIZATION_ALLOWLIST``).

Where Haystack's reader does something odd, this one does the same by default, so that answers
are identical:

- it feeds the model no ``token_type_ids``, so BERT models see all-zero type ids even on the
  document's tokens; ``token_type_ids=True`` feeds the real ones;
- ``run`` arguments are combined with the constructor's as ``value or default``, so ``0``
  (``score_threshold=0``, ``overlap_threshold=0``, ...) means "the constructor's value";
  ``zero_means_default=False`` takes a ``0`` at its word;
- a span has no length limit within its window, and ``overlap_threshold`` compares documents by
  ``Document.id`` (equal content and meta give equal ids).

Differences: ``model`` is an onnxqa model directory (``onnxqa export``), not a hub id, so there
is no ``token`` nor ``model_kwargs``; ``device`` is ``"auto"``, ``"cpu"`` or ``"cuda"`` (a
Haystack ``ComponentDevice`` is accepted too), with ``precision`` and ``threads`` as in
:func:`onnxqa.load`; ``max_batch_size`` left as ``None`` uses onnxqa's per-device batch size
(one window per call on a CPU) instead of one batch of every window; ``overlap_threshold`` is
kept by ``to_dict`` (Haystack's reader drops it); documents whose ``content`` is ``None`` are skipped
(Haystack's reader says it skips them, then fails on a length mismatch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import ExtractedAnswer

from .runtime import DocumentAnswer, QuestionAnswerer

__all__ = ["ExtractiveReader"]


def _device_name(device: Any) -> str:
    """``"auto"`` / ``"cpu"`` / ``"cuda"`` from a string, ``None`` or a Haystack ``ComponentDevice``."""
    if device is None:
        return "auto"
    if hasattr(device, "to_torch_str"):  # ComponentDevice (a single device)
        device = device.to_torch_str()
    name = str(device).split(":")[0]
    return name


@component
class ExtractiveReader:
    """Locates and extracts answers to a query from Documents, with an onnxqa model.

    Every span's score is ``sigmoid(calibration_factor * (start_logit + end_logit))``, so answers
    compare across documents; see :meth:`onnxqa.QuestionAnswerer.answer_documents`.

    ```python
    from haystack import Document
    from onnxqa.haystack import ExtractiveReader

    reader = ExtractiveReader("out/my-model")
    reader.warm_up()
    docs = [Document(content="Python is a popular programming language")]
    answers = reader.run(query="What is a popular programming language?", documents=docs)["answers"]
    ```
    """

    def __init__(
        self,
        model: Path | str,
        device: Any = None,
        top_k: int = 20,
        score_threshold: float | None = None,
        max_seq_length: int = 384,
        stride: int = 128,
        max_batch_size: int | None = None,
        answers_per_seq: int | None = None,
        no_answer: bool = True,
        calibration_factor: float = 0.1,
        overlap_threshold: float | None = 0.01,
        precision: str = "auto",
        threads: int | None = None,
        token_type_ids: bool = False,
        zero_means_default: bool = True,
    ) -> None:
        """
        :param model: an onnxqa model directory (written by ``onnxqa export``).
        :param device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``None`` (auto) or
            a Haystack ``ComponentDevice``.
        :param top_k: answers to return, besides the no-answer entry.
        :param score_threshold: return only answers (the no-answer entry included) scoring at least this.
        :param max_seq_length: tokens per window; longer documents are split.
        :param stride: tokens of overlap between a document's windows.
        :param max_batch_size: windows per inference call (``None``: 1 on CPU, 64 on CUDA).
        :param answers_per_seq: candidate spans per window (``None``: 20).
        :param no_answer: add an answer with no text, scored ``prod(1 - score)`` over the answers.
        :param calibration_factor: scales the logits before the sigmoid.
        :param overlap_threshold: drop an answer overlapping a better one of the same document by more
            than this fraction of either's length; ``None`` keeps all.
        :param precision: ``"auto"``, ``"fp32"``, ``"int8"``, ``"openvino-int8"`` or ``"fp16"`` (see
            :func:`onnxqa.load`).
        :param threads: inference threads, onnxruntime's intra-op or OpenVINO's (``None``:
            ``$ONNXQA_THREADS``, else one per core).
        :param token_type_ids: feed the real token type ids (Haystack's reader feeds none: zeros).
        :param zero_means_default: ``run`` arguments equal to ``0`` mean the constructor's value, as in
            Haystack's reader.
        """
        self.model = str(model)
        self.device = _device_name(device)
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.max_seq_length = max_seq_length
        self.stride = stride
        self.max_batch_size = max_batch_size
        self.answers_per_seq = answers_per_seq
        self.no_answer = no_answer
        self.calibration_factor = calibration_factor
        self.overlap_threshold = overlap_threshold
        self.precision = precision
        self.threads = threads
        self.token_type_ids = token_type_ids
        self.zero_means_default = zero_means_default
        self._qa: QuestionAnswerer | None = None

    def warm_up(self) -> None:
        """Load the model (once)."""
        if self._qa is None:
            self._qa = QuestionAnswerer(self.model, device=self.device, precision=self.precision, threads=self.threads)

    def to_dict(self) -> dict[str, Any]:
        """Serialize the component to a dictionary."""
        return default_to_dict(
            self,
            model=self.model,
            device=self.device,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            max_seq_length=self.max_seq_length,
            stride=self.stride,
            max_batch_size=self.max_batch_size,
            answers_per_seq=self.answers_per_seq,
            no_answer=self.no_answer,
            calibration_factor=self.calibration_factor,
            overlap_threshold=self.overlap_threshold,
            precision=self.precision,
            threads=self.threads,
            token_type_ids=self.token_type_ids,
            zero_means_default=self.zero_means_default,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractiveReader:
        """Deserialize the component from a dictionary."""
        return default_from_dict(cls, data)

    def _pick(self, value: Any, default: Any) -> Any:
        if self.zero_means_default:
            return value or default
        return value if value is not None else default

    @component.output_types(answers=list[ExtractedAnswer])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
        max_seq_length: int | None = None,
        stride: int | None = None,
        max_batch_size: int | None = None,
        answers_per_seq: int | None = None,
        no_answer: bool | None = None,
        overlap_threshold: float | None = None,
    ) -> dict[str, Any]:
        """Extract answers to ``query`` from ``documents``; arguments left as ``None`` take the constructor's.

        :returns: ``{"answers": [ExtractedAnswer, ...]}``, best first; with ``no_answer``, one
            answer has ``data=None`` and no document.
        """
        if self._qa is None:
            self.warm_up()
        assert self._qa is not None
        if not documents:
            return {"answers": []}
        answers = self._qa.answer_documents(
            query,
            documents,
            top_k=self._pick(top_k, self.top_k),
            score_threshold=self._pick(score_threshold, self.score_threshold),
            max_seq_length=self._pick(max_seq_length, self.max_seq_length),
            stride=self._pick(stride, self.stride),
            batch_size=self._pick(max_batch_size, self.max_batch_size),
            answers_per_seq=self._pick(self._pick(answers_per_seq, self.answers_per_seq), 20),
            no_answer=no_answer if no_answer is not None else self.no_answer,
            calibration_factor=self.calibration_factor,
            overlap_threshold=self._pick(overlap_threshold, self.overlap_threshold),
            token_type_ids=self.token_type_ids,
        )
        return {"answers": [_extracted(query, documents, a) for a in answers]}


def _extracted(query: str, documents: list[Document], answer: DocumentAnswer) -> ExtractedAnswer:
    if answer.document is None:
        return ExtractedAnswer(query=query, score=answer.score, data=None, document=None, meta={})
    meta = {"answer_page_number": answer.page_number} if answer.page_number is not None else {}
    return ExtractedAnswer(
        query=query,
        score=answer.score,
        data=answer.text,
        document=documents[answer.document],
        document_offset=ExtractedAnswer.Span(answer.start, answer.end),
        meta=meta,
    )
