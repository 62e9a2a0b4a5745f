"""Export Hugging Face QA checkpoints to optimized ONNX (needs the ``export`` extra)."""

from ._exporter import ExportConfig, export

__all__ = ["ExportConfig", "export"]
