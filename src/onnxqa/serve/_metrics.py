"""Prometheus metrics of one app, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_LATENCY = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Requests and errors by kind, request latency, batch sizes and queue depth."""

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
            "onnxqa_batch_requests", "Requests coalesced into one inference call", buckets=_SIZES, registry=r
        )
        self.batch_windows = Histogram(
            "onnxqa_batch_windows", "Windows per coalesced inference call", buckets=_SIZES, registry=r
        )
        self.batch_seconds = Histogram(
            "onnxqa_batch_duration_seconds",
            "Time of one coalesced call (model and decoding)",
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_depth = Gauge("onnxqa_queue_depth", "Requests admitted and not yet running", registry=r)
        self.model = Gauge("onnxqa_model_info", "The model being served", ["model", "precision", "device"], registry=r)

    def observe_batch(self, requests: int, windows: int, seconds: float) -> None:
        self.batch_requests.observe(requests)
        self.batch_windows.observe(windows)
        self.batch_seconds.observe(seconds)
