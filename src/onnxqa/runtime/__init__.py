"""The torch-free runtime: tokenizers + numpy + onnxruntime."""

from ._answer import Answer, QAOptions
from ._answerer import QuestionAnswerer, load
from ._documents import Document, DocumentAnswer, ReaderOptions
from ._pipeline import STAGES
from ._scheduler import BatchSettings
from ._session import cuda_available
from ._tuning import TUNING, TUNING_FORMAT, cpu_name, machine_key, read_tuning
from ._variants import suited_precisions
from ._windows import Windower

__all__ = [
    "Answer",
    "BatchSettings",
    "Document",
    "DocumentAnswer",
    "QAOptions",
    "QuestionAnswerer",
    "ReaderOptions",
    "STAGES",
    "TUNING",
    "TUNING_FORMAT",
    "Windower",
    "cpu_name",
    "cuda_available",
    "load",
    "machine_key",
    "read_tuning",
    "suited_precisions",
]
