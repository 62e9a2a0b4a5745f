"""The torch-free runtime: tokenizers + numpy + onnxruntime."""

from ._answer import Answer, QAOptions
from ._answerer import QuestionAnswerer, load

__all__ = ["Answer", "QAOptions", "QuestionAnswerer", "load"]
