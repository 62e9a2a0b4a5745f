"""Prometheus metrics of one app, in a registry of its own (no global state).

With several worker processes (``onnxqa serve --workers N``) prometheus_client's multiprocess mode
is on (``PROMETHEUS_MULTIPROC_DIR`` set before the workers start): every worker writes its values
to files there and ``/metrics`` sums them across workers (gauges: the sum over live workers).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """Requests and errors by kind, request latency, inference calls, queue depth in requests and windows."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "onnxqa_requests", "HTTP requests by endpoint and status code", ["endpoint", "code"], registry=r
        )
        self.errors = Counter("onnxqa_errors", "Error responses by kind", ["kind"], registry=r)
        self.latency = Histogram(
            "onnxqa_request_duration_seconds",
            "Time to answer an HTTP request",
            ["endpoint"],
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_requests = Histogram(
            "onnxqa_batch_requests", "Requests sharing one inference call", buckets=_SIZES, registry=r
        )
        self.batch_windows = Histogram("onnxqa_batch_windows", "Windows per inference call", buckets=_SIZES, registry=r)
        self.batch_seconds = Histogram(
            "onnxqa_batch_duration_seconds",
            "Time of one inference call (model and decoding)",
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_depth = Gauge(
            "onnxqa_queue_depth",
            "Requests admitted whose windows have not all started",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queue_windows = Gauge(
            "onnxqa_queue_windows", "Windows admitted and not yet run", registry=r, multiprocess_mode="livesum"
        )
        self.model = Gauge(
            "onnxqa_model_info",
            "The model being served (with workers: one series per live worker, labelled by its pid)",
            ["model", "precision", "device"],
            registry=r,
            multiprocess_mode="liveall",
        )

    def observe_batch(self, requests: int, windows: int, seconds: float) -> None:
        self.batch_requests.observe(requests)
        self.batch_windows.observe(windows)
        self.batch_seconds.observe(seconds)

    def set_queue(self, requests: int, windows: int) -> None:
        self.queue_depth.set(requests)
        self.queue_windows.set(windows)

    def worker_started(self) -> None:
        """Multiprocess mode: forget the live gauges of workers that died (uvicorn restarts those)."""
        directory = os.environ.get(_MULTIPROCESS)
        if not directory:
            return
        from prometheus_client import multiprocess

        for path in Path(directory).glob("gauge_live*_*.db"):
            pid = path.stem.rsplit("_", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                multiprocess.mark_process_dead(int(pid), directory)

    def worker_stopped(self) -> None:
        """Multiprocess mode: this worker's live gauges leave the sums."""
        directory = os.environ.get(_MULTIPROCESS)
        if directory:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), directory)

    def exposition(self) -> bytes:
        """The text format: this app's registry, or the sum over worker processes in multiprocess mode."""
        if os.environ.get(_MULTIPROCESS):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
