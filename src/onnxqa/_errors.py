"""The exceptions onnxqa raises.

Every error onnxqa raises on purpose is an :class:`OnnxQAError`::

    OnnxQAError
    ├── InputError         a question, context or option the caller passed is unusable
    │   └── RequestTooLargeError   a request has more windows than the server's per-request cap
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
    "RequestTooLargeError",
    "ValidationError",
]


class OnnxQAError(Exception):
    """Base class of every error onnxqa raises on purpose."""


class InputError(OnnxQAError, ValueError):
    """A question, context or option passed by the caller cannot be used."""


class RequestTooLargeError(InputError):
    """A request would take more windows (model inputs) than the server takes from one request
    (``BatchSettings.window_cap``: ``max_request_windows``, or 4 times ``max_queue_windows``).

    ``windows`` is what the request needs, ``limit`` the cap; split the context or send it to a
    server with a higher cap.
    """

    def __init__(self, windows: int, limit: int) -> None:
        super().__init__(
            f"the request needs {windows} windows, over this server's limit of {limit} windows per request: "
            "send a shorter context, windows that overlap less, or split it over several requests"
        )
        self.windows, self.limit = windows, limit


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
    """A request was not answered within its timeout; none of its remaining work runs."""


class ExportError(OnnxQAError):
    """A checkpoint could not be exported; no output directory was left behind."""


class ValidationError(ExportError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""
