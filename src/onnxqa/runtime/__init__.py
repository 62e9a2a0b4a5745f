"""The torch-free runtime: tokenizers + numpy + onnxruntime."""

from ._answer import Answer, QAOptions
from ._answerer import QuestionAnswerer, load
from ._documents import Document, DocumentAnswer, ReaderOptions
from ._pipeline import STAGES
from ._scheduler import BatchSettings
from ._variants import suited_precisions

__all__ = [
    "Answer",
    "BatchSettings",
    "Document",
    "DocumentAnswer",
    "QAOptions",
    "QuestionAnswerer",
    "ReaderOptions",
    "STAGES",
    "load",
    "suited_precisions",
]
