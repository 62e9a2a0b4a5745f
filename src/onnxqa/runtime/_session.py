"""ONNX Runtime session creation: providers checked, never a silent fallback from CUDA to CPU."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .._errors import InferenceError, InputError, ModelLoadError, ProviderError

__all__ = ["DEVICES", "Engine", "cuda_available", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def cuda_available() -> bool:
    """Whether this onnxruntime build offers the CUDA execution provider."""
    return _CUDA in ort.get_available_providers()


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when the CUDA provider is offered, else ``"cpu"``."""
    if device not in DEVICES:
        raise ProviderError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise ProviderError(
            "device='cuda' but this onnxruntime offers no CUDAExecutionProvider "
            f"(available: {', '.join(ort.get_available_providers())}); install the GPU build "
            "(see the README's GPU section) or use device='cpu'"
        )
    return device


@dataclass(frozen=True)
class SessionSettings:
    """The few session settings a caller may choose."""

    threads: int | None = None  # intra-op threads; None: onnxruntime's default (physical cores)
    arena: bool = True  # onnxruntime's CPU memory arena
    io_binding: bool | None = None  # bind inputs/outputs as OrtValues; None: on CUDA only


_LOCATION = b"\n\x08location\x12"  # protobuf: key "location" of an external-data entry, then its value


def external_data_locations(model: bytes) -> list[str]:
    """The external-data file names an ONNX model refers to (scanned without parsing the graph)."""
    found = []
    at = model.find(_LOCATION)
    while at >= 0:
        i, length, shift = at + len(_LOCATION), 0, 0
        while i < len(model):  # varint length of the value
            byte = model[i]
            length |= (byte & 0x7F) << shift
            i, shift = i + 1, shift + 7
            if byte < 0x80:
                break
        found.append(model[i : i + length].decode("utf-8", errors="replace"))
        at = model.find(_LOCATION, i)
    return found


def check_no_external_data(model: bytes) -> None:
    """Refuse graphs whose weights live in other files, above all files outside the model directory."""
    for location in external_data_locations(model):
        path = Path(location)
        if path.is_absolute() or ".." in path.parts:
            raise ModelLoadError(
                f"the ONNX graph refers to external data {location!r} outside the model directory; refusing to load it"
            )
        raise ModelLoadError(
            f"the ONNX graph keeps weights in an external file ({location!r}); onnxqa loads "
            "self-contained graphs only: re-export with `onnxqa export`"
        )


class Engine:
    """One inference session over a QA graph: feeds exactly the inputs the graph declares."""

    def __init__(self, model: bytes, device: str, settings: SessionSettings) -> None:
        self._bound = settings.io_binding if settings.io_binding is not None else device == "cuda"
        self._buffers = threading.local()  # per thread: output OrtValues reused while shapes repeat
        check_no_external_data(model)
        opts = ort.SessionOptions()
        if settings.threads is not None:
            opts.intra_op_num_threads = settings.threads
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = settings.arena
        # shapes change with every batch: memory patterns would only be recomputed each time
        opts.enable_mem_pattern = False
        opts.log_severity_level = 3
        providers = [_CUDA, _CPU] if device == "cuda" else [_CPU]
        try:
            self.session = ort.InferenceSession(model, sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime cannot load the model: {exc}") from exc
        active = self.session.get_providers()
        if device == "cuda" and (not active or active[0] != _CUDA):
            raise ProviderError(
                f"CUDA was asked for but the session runs on {active}: the CUDA provider failed "
                "to initialise (check the CUDA / cuDNN libraries onnxruntime-gpu needs)"
            )
        self.device = device
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        missing = {"input_ids", "attention_mask"} - set(self.input_names)
        unknown = set(self.input_names) - {"input_ids", "attention_mask", "token_type_ids"}
        if missing or unknown or not {"start_logits", "end_logits"} <= set(outputs):
            raise ModelLoadError(
                f"the graph is not a QA graph (inputs {self.input_names}, outputs {outputs}); "
                "export it with `onnxqa export`"
            )

    def run(
        self, input_ids: np.ndarray, type_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits, float32, shaped like ``input_ids``.

        Raises:
            InferenceError: the model produced NaN or infinite logits.
        """
        available = {"input_ids": input_ids, "token_type_ids": type_ids, "attention_mask": attention_mask}
        feed = {name: available[name] for name in self.input_names}
        if self._bound:
            start, end = self._run_bound(feed)
        else:
            raw_start, raw_end = self.session.run(["start_logits", "end_logits"], feed)
            start, end = np.asarray(raw_start, dtype=np.float32), np.asarray(raw_end, dtype=np.float32)
        if not (np.isfinite(start).all() and np.isfinite(end).all()):
            raise InferenceError(
                "the model produced NaN or infinite logits, so no answer can be made from them (an fp16 overflow, "
                "or a broken export); use the fp32 variant, or re-export"
            )
        return start, end

    def _run_bound(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """IO binding: inputs copied to the device once, logits written into output OrtValues kept on
        the device and reused for every call of the same shape; only the logits come back."""
        where = "cuda" if self.device == "cuda" else "cpu"
        shape = feed["input_ids"].shape
        cache = getattr(self._buffers, "outputs", None)
        if cache is None or cache[0] != shape:
            outputs = [ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, where, 0) for _ in range(2)]
            self._buffers.outputs = cache = (shape, outputs)
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, where, 0))
        binding.bind_ortvalue_output("start_logits", cache[1][0])
        binding.bind_ortvalue_output("end_logits", cache[1][1])
        self.session.run_with_iobinding(binding)
        # from CUDA, numpy() copies to the host; on the CPU it is a view of the reused buffer
        start, end = cache[1][0].numpy(), cache[1][1].numpy()
        return (start.copy(), end.copy()) if where == "cpu" else (start, end)


def default_threads() -> int | None:
    """Threads from ``ONNXQA_THREADS`` when set, else onnxruntime's default.

    Raises:
        InputError: ``ONNXQA_THREADS`` is not a positive integer.
    """
    value = os.environ.get("ONNXQA_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"ONNXQA_THREADS must be a positive integer (onnxruntime intra-op threads), got {value!r}")
    return int(value)
