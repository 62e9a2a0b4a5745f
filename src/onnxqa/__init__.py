"""onnxqa: fast extractive question answering with ONNX Runtime, no PyTorch at run time.

>>> import onnxqa
>>> qa = onnxqa.load("out/")                          # an `onnxqa export` directory
>>> qa("Who wrote it?", "It was written by Ada.")     # doctest: +SKIP
[Answer(text='Ada', score=0.93, start=18, end=21)]
"""

from ._errors import ExportError, InputError, ModelLoadError, OnnxQAError, ProviderError, ValidationError
from .runtime import Answer, Document, DocumentAnswer, QAOptions, QuestionAnswerer, ReaderOptions, load

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "Document",
    "DocumentAnswer",
    "ExportError",
    "InputError",
    "ModelLoadError",
    "OnnxQAError",
    "ProviderError",
    "QAOptions",
    "QuestionAnswerer",
    "ReaderOptions",
    "ValidationError",
    "__version__",
    "load",
]
