"""The exceptions onnxqa raises.

Every error onnxqa raises on purpose is an :class:`OnnxQAError`::

    OnnxQAError
    ├── InputError         a question, context or option the caller passed is unusable
    ├── ModelLoadError     a model directory is missing, incomplete, corrupted or inconsistent
    ├── ProviderError      the requested device / execution provider is not really available
    ├── InferenceError     the model produced unusable numbers (NaN or infinite logits)
    ├── OverloadedError    the request queue is full: retry later
    ├── RequestTimeoutError    a request was not answered within its timeout
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
    "OverloadedError",
    "ProviderError",
    "RequestTimeoutError",
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


class OverloadedError(OnnxQAError):
    """Too many requests are waiting: this one was refused at once, without queueing.

    ``retry_after`` is a suggested wait in seconds before trying again.
    """

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimeoutError(OnnxQAError, TimeoutError):
    """A request was not answered within its timeout; work not yet started for it was dropped."""


class ExportError(OnnxQAError):
    """A checkpoint could not be exported; no output directory was left behind."""


class ValidationError(ExportError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""
