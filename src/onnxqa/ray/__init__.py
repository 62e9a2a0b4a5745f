"""onnxqa on Ray (needs the ``ray`` extra: ``pip install "onnxqa[ray]"``).

- :class:`QAPredictor`: batch inference with Ray Data (``Dataset.map_batches``); ``onnxqa batch
  --ray`` runs it over a JSONL or Parquet file through :func:`answer_on_ray`.
- :func:`deployment` / :func:`run`: the HTTP contract of ``onnxqa serve`` on Ray Serve, replicated;
  ``onnxqa serve --ray`` starts it with :func:`serve_until_stopped`.

Never imported by ``import onnxqa``. The Ray Data side imports neither Ray Serve nor FastAPI: the
Serve names load them on first use.
"""

from __future__ import annotations

from typing import Any

from ._data import QAPredictor, answer_on_ray

__all__ = ["QADeployment", "QAPredictor", "answer_on_ray", "deployment", "run", "serve_until_stopped"]

_SERVE = ("QADeployment", "deployment", "run", "serve_until_stopped")


def __getattr__(name: str) -> Any:
    if name in _SERVE:
        from . import _serve

        return getattr(_serve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
