"""onnxqa: fast extractive question answering with ONNX Runtime, no PyTorch at run time.

>>> import onnxqa
>>> qa = onnxqa.load("out/")                          # an `onnxqa export` directory
>>> qa("Who wrote it?", "It was written by Ada.")     # doctest: +SKIP
[Answer(text='Ada', score=0.93, start=18, end=21)]
"""

from ._errors import (
    ExportError,
    InferenceError,
    InputError,
    ModelLoadError,
    OnnxQAError,
    OverloadedError,
    ProviderError,
    RequestTimeoutError,
    RequestTooLargeError,
    ValidationError,
)
from .runtime import (
    Answer,
    BatchSettings,
    Document,
    DocumentAnswer,
    QAOptions,
    QuestionAnswerer,
    ReaderOptions,
    load,
)

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "BatchSettings",
    "Document",
    "DocumentAnswer",
    "ExportError",
    "InferenceError",
    "InputError",
    "ModelLoadError",
    "OnnxQAError",
    "OverloadedError",
    "ProviderError",
    "QAOptions",
    "QuestionAnswerer",
    "ReaderOptions",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ValidationError",
    "__version__",
    "load",
]
