"""The exceptions onnxqa raises.

Every error onnxqa raises on purpose is an :class:`OnnxQAError`::

    OnnxQAError
    ├── InputError         a question, context or option the caller passed is unusable
    ├── ModelLoadError     a model directory is missing, incomplete, corrupted or inconsistent
    ├── ProviderError      the requested device / execution provider is not really available
    ├── InferenceError     the model produced unusable numbers (NaN or infinite logits)
    └── ExportError        a checkpoint could not be exported
        └── ValidationError    the exported graph disagrees with PyTorch beyond tolerance

Each message says what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ExportError",
    "InferenceError",
    "InputError",
    "ModelLoadError",
    "OnnxQAError",
    "ProviderError",
    "ValidationError",
]


class OnnxQAError(Exception):
    """Base class of every error onnxqa raises on purpose."""


class InputError(OnnxQAError, ValueError):
    """A question, context or option passed by the caller cannot be used."""


class ModelLoadError(OnnxQAError):
    """A model directory cannot be loaded: missing, truncated, tampered with or mismatched files."""


class ProviderError(OnnxQAError):
    """The requested device or precision cannot run here (e.g. CUDA asked for but not active)."""


class InferenceError(OnnxQAError):
    """The model produced NaN or infinite logits (e.g. an fp16 overflow): no answer is made from them."""


class ExportError(OnnxQAError):
    """A checkpoint could not be exported; no output directory was left behind."""


class ValidationError(ExportError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""
