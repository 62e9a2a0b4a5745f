"""onnxqa on Ray (needs the ``ray`` extra: ``pip install "onnxqa[ray]"``).

- :class:`QAPredictor`: batch inference with Ray Data (``Dataset.map_batches``); ``onnxqa batch
  --ray`` runs it over a JSONL or Parquet file.
- :func:`deployment` / :func:`run`: the HTTP contract of ``onnxqa serve`` on Ray Serve, replicated,
  with ``@serve.batch``; ``onnxqa serve --ray`` starts it.

Never imported by ``import onnxqa``.
"""

from ._data import QAPredictor
from ._serve import QADeployment, deployment, run

__all__ = ["QADeployment", "QAPredictor", "deployment", "run"]
