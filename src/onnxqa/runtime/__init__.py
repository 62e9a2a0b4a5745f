"""The torch-free runtime: tokenizers + numpy + onnxruntime."""

from ._answer import Answer, QAOptions
from ._answerer import QuestionAnswerer, load
from ._batcher import BatchSettings

__all__ = ["Answer", "BatchSettings", "QAOptions", "QuestionAnswerer", "load"]
