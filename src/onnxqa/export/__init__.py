"""Export Hugging Face QA checkpoints to optimized ONNX (needs the ``export`` extra)."""

from ._exporter import INT8_METHODS, ExportConfig, export
from ._pairs import generated_pairs, tuning_pairs, validation_pairs
from ._random import random_checkpoint

__all__ = [
    "INT8_METHODS",
    "ExportConfig",
    "export",
    "generated_pairs",
    "random_checkpoint",
    "tuning_pairs",
    "validation_pairs",
]
