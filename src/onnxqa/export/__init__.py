"""Export Hugging Face QA checkpoints to optimized ONNX (needs the ``export`` extra)."""

from ._exporter import ExportConfig, export
from ._pairs import validation_pairs
from ._random import random_checkpoint

__all__ = ["ExportConfig", "export", "random_checkpoint", "validation_pairs"]
