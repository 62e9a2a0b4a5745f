"""The torch-free runtime: tokenizers + numpy + onnxruntime."""

from ._answer import Answer, QAOptions
from ._answerer import QuestionAnswerer, load
from ._documents import Document, DocumentAnswer, ReaderOptions
from ._openvino import OpenVINOEngine, openvino_available, openvino_version
from ._pipeline import STAGES
from ._scheduler import BatchSettings
from ._session import cuda_available
from ._tuning import TUNING, TUNING_FORMAT, cpu_name, machine_key, read_tuning, variant_identity
from ._variants import AUTO_PRECISION, suited_precisions
from ._windows import Windower

__all__ = [
    "AUTO_PRECISION",
    "Answer",
    "BatchSettings",
    "Document",
    "DocumentAnswer",
    "OpenVINOEngine",
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
    "openvino_available",
    "openvino_version",
    "read_tuning",
    "suited_precisions",
    "variant_identity",
]
