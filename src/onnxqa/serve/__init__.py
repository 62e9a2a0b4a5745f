"""Serve a model over HTTP (needs the ``serve`` extra: FastAPI, uvicorn, prometheus-client).

Never imported by ``import onnxqa``; ``onnxqa serve MODEL_DIR`` runs :func:`run_server`, and
:func:`create_app` builds the app to mount in an ASGI app of your own. The limits below are plain
constants: importing them does not import FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import build_app, create_app
    from ._auth import resolve_api_keys
    from ._server import run_server

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_DOCUMENTS",
    "DEFAULT_REQUEST_TIMEOUT",
    "MAX_PAIRS",
    "build_app",
    "create_app",
    "resolve_api_keys",
    "run_server",
]

DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
"""Request bodies over this many bytes get 413 (``--max-body-bytes``)."""
DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds before a request gets 504 (``--request-timeout``); a request's own ``timeout`` may be shorter."""
DEFAULT_MAX_DOCUMENTS = 100
"""Documents per ``/v1/answer/documents`` request (``--max-documents``)."""
MAX_PAIRS = 1024
"""Pairs per ``/v1/answer/batch`` request."""


_LAZY = {
    "build_app": "._app",
    "create_app": "._app",
    "resolve_api_keys": "._auth",  # no FastAPI needed
    "run_server": "._server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
