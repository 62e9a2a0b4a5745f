"""Export Hugging Face QA checkpoints to optimized ONNX (needs the ``export`` extra)."""

from ._exporter import ExportConfig, export
from ._pairs import generated_pairs, tuning_pairs, validation_pairs
from ._random import random_checkpoint

__all__ = ["ExportConfig", "export", "generated_pairs", "random_checkpoint", "tuning_pairs", "validation_pairs"]
