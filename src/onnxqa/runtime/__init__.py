"""The torch-free runtime: tokenizers + numpy + onnxruntime."""

from ._answer import Answer, QAOptions
from ._answerer import QuestionAnswerer, load
from ._batcher import BatchSettings
from ._documents import Document, DocumentAnswer, ReaderOptions

__all__ = [
    "Answer",
    "BatchSettings",
    "Document",
    "DocumentAnswer",
    "QAOptions",
    "QuestionAnswerer",
    "ReaderOptions",
    "load",
]
