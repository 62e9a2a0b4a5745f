"""Serve a model over HTTP (needs the ``serve`` extra: FastAPI, uvicorn, prometheus-client).

Never imported by ``import onnxqa``; ``onnxqa serve MODEL_DIR`` runs :func:`run_server`, and
:func:`create_app` builds the app to mount in an ASGI app of your own.
"""

from ._app import create_app
from ._server import run_server

__all__ = ["create_app", "run_server"]
