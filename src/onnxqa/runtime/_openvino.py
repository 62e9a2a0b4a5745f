"""The OpenVINO backend: an exported ``openvino-int8`` variant run by OpenVINO's CPU plugin.

Imported only when such a variant is loaded; ``openvino`` comes with the ``openvino`` extra.

Windows of a call run grouped by their own length, never padded: OpenVINO's int8 kernels give a
window other logits when it is padded (by up to a few percent of their spread, enough to move an
answer), while rows of one length do not affect each other. So a window's logits are the same
alone, beside other windows or padded, as the runtime promises of a batch-invariant variant. The
graph runs at f32 inference precision (OpenVINO's default on CPUs with bf16 would round the
layers left in floating point to bf16); the int8 layers are as NNCF quantized them at export.

Compiled models are cached in ``ONNXQA_OPENVINO_CACHE`` (default: ``~/.cache/onnxqa/openvino``;
empty: no cache), which shortens a later load of the same files by most of a second. OpenVINO
keys its cache by the model's contents and the compile settings; the files themselves are read and
checked against the manifest's hashes on every load.
"""

from __future__ import annotations

import os
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InferenceError, ModelLoadError, ProviderError

__all__ = ["OpenVINOEngine", "cache_dir", "openvino_available", "openvino_version"]

_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}


def openvino_version() -> str | None:
    """The installed ``openvino`` package's version, or None."""
    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return None


def openvino_available() -> bool:
    """Whether ``openvino`` is installed (the ``openvino`` extra); it is not imported here."""
    return openvino_version() is not None


def cache_dir() -> Path | None:
    """Where compiled models are cached: ``ONNXQA_OPENVINO_CACHE``, else the user's cache
    directory; None when that variable is set empty."""
    value = os.environ.get("ONNXQA_OPENVINO_CACHE")
    if value is not None:
        return Path(value).expanduser() if value.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "onnxqa" / "openvino"


def _import() -> Any:
    try:
        import openvino
    except Exception as exc:  # not installed (ImportError), or broken (a missing shared library: OSError)
        raise ProviderError(
            f"the openvino-int8 variant runs on OpenVINO, which cannot be imported ({exc}); "
            "pip install 'onnxqa[openvino]', or load precision='int8' (onnxruntime)"
        ) from exc
    return openvino


def _port_name(port: Any) -> str:
    names = set(port.get_names())
    return next(iter(sorted(names & _INPUTS or names)), "")


class OpenVINOEngine:
    """One compiled OpenVINO model over a QA graph, with the interface of the onnxruntime engine."""

    device = "cpu"
    cuda_graph = False
    shape_sessions = False
    session = None  # no onnxruntime session

    def __init__(self, graph: bytes, weights: bytes, threads: int | None = None, cache: bool = True) -> None:
        ov = _import()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.threads = threads
        try:
            core = ov.Core()
            model = core.read_model(graph, ov.Tensor(np.frombuffer(weights, dtype=np.uint8)))
            folder = cache_dir() if cache else None
            try:
                if folder is None:
                    raise OSError("no cache")
                folder.mkdir(parents=True, exist_ok=True)
                self._compiled = core.compile_model(model, "CPU", {**config, "CACHE_DIR": str(folder)})
            except Exception:  # no cache, or one that cannot be used: it only costs time
                self._compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types
            raise ModelLoadError(f"OpenVINO cannot load the model: {str(exc).strip()[:500]}") from exc
        self.input_names = [_port_name(port) for port in model.inputs]
        outputs = {name for port in model.outputs for name in port.get_names()}
        if not {"input_ids", "attention_mask"} <= set(self.input_names) or not set(self.input_names) <= _INPUTS:
            raise ModelLoadError(f"the OpenVINO graph is not a QA graph (inputs {self.input_names})")
        if not {"start_logits", "end_logits"} <= outputs:
            raise ModelLoadError(f"the OpenVINO graph is not a QA graph (outputs {sorted(outputs)})")
        self._requests = threading.local()  # an infer request per thread: one runs one call at a time

    def _request(self) -> Any:
        """This thread's infer request (a thread pool of N threads holds N: their buffers, not the weights)."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        return request

    def run(
        self, input_ids: np.ndarray, type_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits, float32, shaped like ``input_ids``; rows run grouped by their
        length (``attention_mask``'s leading ones), unpadded. Positions past a row's length get 0.

        Raises:
            InferenceError: the model produced NaN or infinite logits.
        """
        start, end = self.logits(input_ids, type_ids, attention_mask)
        if not (np.isfinite(start).all() and np.isfinite(end).all()):
            raise InferenceError(
                "the model produced NaN or infinite logits, so no answer can be made from them; "
                "use another variant, or re-export"
            )
        return start, end

    def logits(
        self, input_ids: np.ndarray, type_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """What :meth:`run` returns, without refusing non-finite logits (the export's check counts them)."""
        available = {"input_ids": input_ids, "token_type_ids": type_ids, "attention_mask": attention_mask}
        mask = np.asarray(attention_mask)
        lengths = mask.sum(axis=1)
        request = self._request()
        groups: dict[int, list[int]] = {}
        for row, n in enumerate(lengths.tolist()):
            # a mask that is not a prefix of ones (not the runtime's padding) runs as it is
            n = n if mask[row, :n].all() else mask.shape[1]
            groups.setdefault(max(int(n), 1), []).append(row)
        if len(groups) == 1 and next(iter(groups)) == mask.shape[1]:  # no padding: the arrays as they are
            out = request.infer({name: available[name] for name in self.input_names}, share_inputs=True)
            start, end = out["start_logits"], out["end_logits"]
        else:
            start = np.zeros(input_ids.shape, dtype=np.float32)
            end = np.zeros(input_ids.shape, dtype=np.float32)
            for n, rows in groups.items():
                pick = rows if len(rows) < len(lengths) else slice(None)
                feed = {name: np.ascontiguousarray(available[name][pick, :n]) for name in self.input_names}
                out = request.infer(feed, share_inputs=True)
                start[pick, :n] = out["start_logits"]
                end[pick, :n] = out["end_logits"]
        return start, end

    def time_call(self, rows: int, width: int, runs: int = 50) -> dict[str, float] | None:
        """None: timing through fixed buffers is for onnxruntime's CUDA engine."""
        return None

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return []
