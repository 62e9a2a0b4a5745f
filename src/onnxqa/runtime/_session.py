"""ONNX Runtime session creation: providers checked, never a silent fallback from CUDA to CPU.

On CUDA the inputs and logits travel through IO binding. With ``fixed_buffers`` every input shape
gets device buffers of its own, bound once and refilled in place; with ``cuda_graph`` each such
shape is also a CUDA graph (``gpu_graph_id``), captured by onnxruntime after its first runs and
replayed from then on. Before the first CUDA session, ``onnxruntime.preload_dlls()`` loads the
CUDA and cuDNN libraries of NVIDIA's pip packages (unless a CUDA build of torch, imported first,
already did, or ``ONNXQA_PRELOAD_DLLS=0``).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import mmap
import os
import re
import sys
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .._errors import InferenceError, InputError, ModelLoadError, ProviderError

__all__ = ["DEVICES", "MAX_GRAPHS", "Engine", "cuda_available", "preload_cuda_libraries", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")
MAX_GRAPHS = 64  # shapes given buffers (and graphs) of their own; further shapes run without
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_preload_lock = threading.Lock()
_preload_report: list[str] = []  # what preload_dlls printed, once it ran


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
    cuda_graph: bool = False  # capture and replay one CUDA graph per input shape (CUDA only)
    fixed_buffers: bool = False  # one bound set of buffers per input shape (always with cuda_graph)
    shape_sessions: bool = False  # with fixed_buffers, a session per shape (chosen by itself when needed)
    # onnxruntime optimizers left out: the manifest's, where onnxqa's passes took apart what they fuse
    disabled_optimizers: tuple[str, ...] = ()


def preload_cuda_libraries() -> str:
    """Run ``onnxruntime.preload_dlls()`` once (onnxruntime-gpu >= 1.21), unless a CUDA build of
    torch is already imported (it loaded the libraries) or ``ONNXQA_PRELOAD_DLLS=0``; returns what
    it printed (the libraries it failed to load)."""
    with _preload_lock:
        if not _preload_report:
            torch = sys.modules.get("torch")
            skip = os.environ.get("ONNXQA_PRELOAD_DLLS", "1").strip() == "0" or (
                torch is not None and getattr(getattr(torch, "version", None), "cuda", None)
            )
            printed = io.StringIO()
            if not skip and hasattr(ort, "preload_dlls"):
                with contextlib.redirect_stdout(printed):
                    try:
                        ort.preload_dlls()
                    except Exception as exc:  # a missing directory, an unparsable version: say so later
                        print(f"preload_dlls failed: {exc}")
            _preload_report.append(printed.getvalue().strip())
        return _preload_report[0]


def _cuda_major() -> str:
    version = str(getattr(ort, "cuda_version", "") or "")
    return version.split(".")[0] if version[:1].isdigit() else "13"


def missing_cuda_libraries() -> list[str]:
    """The CUDA / cuDNN libraries onnxruntime-gpu needs that cannot be loaded here (Linux names)."""
    if not sys.platform.startswith("linux"):
        return []
    major = _cuda_major()
    missing = []
    for name in (f"libcudart.so.{major}", f"libcublasLt.so.{major}", f"libcublas.so.{major}", "libcudnn.so.9"):
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    return missing


def cuda_failure_message(what: str, preload_report: str = "") -> str:
    """``what`` went wrong with the CUDA provider, what is missing, and what to do about it."""
    missing = missing_cuda_libraries()
    major = _cuda_major()
    lines = [
        f"{what}.",
        f"Libraries that cannot be loaded: {', '.join(missing)}." if missing else "",
        f"onnxruntime-gpu {ort.__version__} needs CUDA {major} and cuDNN 9. Either `import torch` (a CUDA "
        f"{major} build) before onnxqa, or install NVIDIA's pip packages "
        f'(`pip install "onnxruntime-gpu[cuda,cudnn]"`, which brings nvidia-cuda-runtime and nvidia-cudnn-cu{major}) '
        + (
            "and let onnxqa call onnxruntime.preload_dlls() (it does so before the first CUDA session), "
            if hasattr(ort, "preload_dlls")
            else ""
        )
        + "or put the libraries' directories on LD_LIBRARY_PATH before starting Python; or use device='cpu'.",
        f"preload_dlls said: {preload_report}" if preload_report else "",
    ]
    return " ".join(line for line in lines if line)


@dataclass
class _Slot:
    """Buffers of one input shape, bound once: refilled in place, so a CUDA graph can replay them."""

    session: ort.InferenceSession
    binding: ort.IOBinding
    inputs: dict[str, ort.OrtValue]
    outputs: tuple[ort.OrtValue, ort.OrtValue]
    run_options: ort.RunOptions | None
    runs: int = field(default=0)


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


def check_no_external_data(model: bytes | Path, provided: Collection[str] = ()) -> None:
    """Refuse graphs (bytes, or a file) whose weights live in files other than ``provided`` (the
    external-data files the manifest lists and hashes), above all files outside the model directory."""
    if isinstance(model, Path) and model.stat().st_size == 0:
        locations: list[str] = []  # nothing to map; onnxruntime refuses the empty file
    elif isinstance(model, Path):
        with open(model, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            locations = external_data_locations(view)  # type: ignore[arg-type]  # bytes-like: find, slices
    else:
        locations = external_data_locations(model)
    for location in locations:
        path = Path(location)
        if path.is_absolute() or ".." in path.parts:
            raise ModelLoadError(
                f"the ONNX graph refers to external data {location!r} outside the model directory; refusing to load it"
            )
        if location not in provided:
            raise ModelLoadError(
                f"the ONNX graph keeps weights in an external file ({location!r}) that its manifest does not list "
                "and hash; re-export with `onnxqa export`"
            )


class _CaptureRefused(Exception):
    """onnxruntime refused CUDA graphs for this graph: some of its nodes would run on the CPU."""


class Engine:
    """One inference session over a QA graph: feeds exactly the inputs the graph declares."""

    def __init__(
        self,
        model: bytes | Path,
        device: str,
        settings: SessionSettings,
        external_data: dict[str, bytes] | None = None,
    ) -> None:
        if settings.cuda_graph and device != "cuda":
            raise ProviderError(f"CUDA graphs need device='cuda', not {device!r}")
        self.device = device
        self.cuda_graph = settings.cuda_graph
        self._settings = settings
        self._bound = settings.io_binding if settings.io_binding is not None else device == "cuda"
        self._buffers = threading.local()  # per thread: output OrtValues reused while shapes repeat
        fixed = settings.cuda_graph or settings.fixed_buffers
        self._slots: dict[tuple[int, ...], _Slot] | None = {} if fixed else None
        self._slots_lock = threading.Lock()
        # verified bytes of the graph's external-data files, handed to onnxruntime from memory
        self._external = dict(external_data or {})
        check_no_external_data(model, self._external)
        self._report = preload_cuda_libraries() if device == "cuda" else ""
        # a session per shape, its dimensions fixed: onnxruntime then folds the graph's shape
        # computations away, which it would otherwise run on the CPU (RoBERTa and DistilBERT
        # exports compute position ids and masks from shapes), and which CUDA graphs cannot hold
        self.shape_sessions = bool(settings.shape_sessions) and fixed
        try:
            self.session = self._create(model, graph=self.cuda_graph and not self.shape_sessions)
        except _CaptureRefused:
            self.shape_sessions = True
            self.session = self._create(model, graph=False)
        self._model = model if self.shape_sessions else None
        if not self.shape_sessions:
            self._external = {}  # onnxruntime copied the tensors; no further session needs them
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        missing = {"input_ids", "attention_mask"} - set(self.input_names)
        unknown = set(self.input_names) - {"input_ids", "attention_mask", "token_type_ids"}
        if missing or unknown or not {"start_logits", "end_logits"} <= set(outputs):
            raise ModelLoadError(
                f"the graph is not a QA graph (inputs {self.input_names}, outputs {outputs}); "
                "export it with `onnxqa export`"
            )

    def _create(
        self, model: bytes | Path, *, graph: bool, shape: tuple[int, ...] | None = None
    ) -> ort.InferenceSession:
        """A session on this engine's device; with ``shape``, its free dimensions fixed to it."""
        settings = self._settings
        opts = ort.SessionOptions()
        if settings.threads is not None:
            opts.intra_op_num_threads = settings.threads
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = settings.arena
        # shapes change with every batch: memory patterns would only be recomputed each time
        opts.enable_mem_pattern = False
        opts.log_severity_level = 3
        if shape is not None:
            dims = self.session.get_inputs()[0].shape
            for dim, size in zip(dims, shape):
                if isinstance(dim, str):
                    opts.add_free_dimension_override_by_name(dim, size)
        if self._external:
            if not hasattr(opts, "add_external_initializers_from_files_in_memory"):
                raise ModelLoadError(
                    f"this graph keeps its weights in an external-data file, which onnxruntime {ort.__version__} "
                    "cannot take from memory: upgrade onnxruntime"
                )
            names = list(self._external)
            opts.add_external_initializers_from_files_in_memory(
                names, [self._external[n] for n in names], [len(self._external[n]) for n in names]
            )
        cuda: str | tuple[str, dict[str, str]] = (_CUDA, {"enable_cuda_graph": "1"}) if graph else _CUDA
        providers = [cuda, _CPU] if self.device == "cuda" else [_CPU]
        try:
            source = str(model) if isinstance(model, Path) else model
            disabled = list(settings.disabled_optimizers)
            kept_apart = {"disabled_optimizers": disabled} if disabled else {}
            session = ort.InferenceSession(source, sess_options=opts, providers=providers, **kept_apart)
        except Exception as exc:  # onnxruntime raises its own exception types
            text = str(exc)
            if graph and "graph capture" in text.lower():
                if shape is None:
                    raise _CaptureRefused(text) from exc
                raise ModelLoadError(
                    f"this graph cannot be captured as a CUDA graph even with its shape fixed ({text}); "
                    "load it with cuda_graph=False"
                ) from exc
            if self.device == "cuda" and re.search(r"cuda|cudnn|cublas|\.so|LoadLibrary|provider", text, re.I):
                message = cuda_failure_message(f"the CUDA execution provider failed: {text}", self._report)
                raise ProviderError(message) from exc
            raise ModelLoadError(f"onnxruntime cannot load the model: {exc}") from exc
        active = session.get_providers()
        if self.device == "cuda" and (not active or active[0] != _CUDA):
            raise ProviderError(
                cuda_failure_message(
                    f"CUDA was asked for but the session runs on {active}: the CUDA execution provider failed to "
                    "initialise",
                    self._report,
                )
            )
        return session

    def run(
        self, input_ids: np.ndarray, type_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits, float32, shaped like ``input_ids``.

        Raises:
            InferenceError: the model produced NaN or infinite logits.
            ModelLoadError: a session of its own for a new shape (``shape_sessions``) cannot be made.
        """
        available = {"input_ids": input_ids, "token_type_ids": type_ids, "attention_mask": attention_mask}
        feed = {name: available[name] for name in self.input_names}
        if self._slots is not None:
            start, end = self._run_fixed(feed)
        elif self._bound:
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

    def _run_fixed(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Buffers of this shape (made and bound on its first call) refilled in place; with CUDA
        graphs the shape's graph is captured on its first runs and replayed after. One call at a
        time: the buffers are shared."""
        shape = tuple(feed["input_ids"].shape)
        with self._slots_lock:
            assert self._slots is not None
            slot = self._slots.get(shape)
            if slot is None:
                if len(self._slots) >= MAX_GRAPHS:  # rare shapes past the limit: no graph, fresh buffers
                    options = None
                    if self.cuda_graph and not self.shape_sessions:
                        options = ort.RunOptions()
                        options.add_run_config_entry("gpu_graph_id", "-1")
                    return self._run_bound(feed, options)
                slot = self._slots[shape] = self._new_slot(shape, graph_id=len(self._slots) + 1)
            for name, array in feed.items():
                slot.inputs[name].update_inplace(np.ascontiguousarray(array, dtype=np.int64))
            slot.session.run_with_iobinding(slot.binding, slot.run_options)
            slot.runs += 1
            start, end = slot.outputs[0].numpy(), slot.outputs[1].numpy()
            # from CUDA, numpy() copies to the host; on the CPU it is a view of the reused buffer
            return (start.copy(), end.copy()) if self.device == "cpu" else (start, end)

    def _new_slot(self, shape: tuple[int, ...], graph_id: int) -> _Slot:
        where = "cuda" if self.device == "cuda" else "cpu"
        session = self.session
        if self._model is not None:
            session, graph_id = self._create(self._model, graph=self.cuda_graph, shape=shape), 1
        binding = session.io_binding()
        inputs = {
            name: ort.OrtValue.ortvalue_from_shape_and_type(shape, np.int64, where, 0) for name in self.input_names
        }
        outputs = (
            ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, where, 0),
            ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, where, 0),
        )
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_ortvalue_output("start_logits", outputs[0])
        binding.bind_ortvalue_output("end_logits", outputs[1])
        options = None
        if self.cuda_graph:
            options = ort.RunOptions()
            options.add_run_config_entry("gpu_graph_id", str(graph_id))  # 0 is onnxruntime's own
        return _Slot(session, binding, inputs, outputs, options)

    def time_call(self, rows: int, width: int, runs: int = 50) -> dict[str, float] | None:
        """Milliseconds per call of one ``rows`` x ``width`` call through this engine's own buffers
        (made on first use): ``h2d`` (inputs copied in), ``run`` (kernels, or a graph replay) and
        ``d2h`` (logits copied out), with ``rows`` and ``width``. None without fixed buffers
        (``fixed_buffers`` / ``cuda_graph``). For benchmarks; holds the engine for ``runs`` calls."""
        if self._slots is None:
            return None
        ids = np.full((rows, width), 1000, dtype=np.int64)
        feed = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids)}
        for _ in range(4):  # the first makes the slot; a graph is captured on the first runs
            self.run(ids, feed["token_type_ids"], feed["attention_mask"])
        spent = {"h2d": 0.0, "run": 0.0, "d2h": 0.0}
        with self._slots_lock:
            slot = self._slots[(rows, width)]
            for _ in range(runs):
                t0 = time.perf_counter()
                for name in self.input_names:
                    slot.inputs[name].update_inplace(feed[name])
                t1 = time.perf_counter()
                slot.session.run_with_iobinding(slot.binding, slot.run_options)
                t2 = time.perf_counter()
                slot.outputs[0].numpy()
                slot.outputs[1].numpy()
                t3 = time.perf_counter()
                spent["h2d"] += t1 - t0
                spent["run"] += t2 - t1
                spent["d2h"] += t3 - t2
        return {k: 1000 * v / runs for k, v in spent.items()} | {"rows": rows, "width": width}

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """The input shapes given buffers of their own (each a CUDA graph with ``cuda_graph``)."""
        with self._slots_lock:
            return list(self._slots or {})

    def _run_bound(
        self, feed: dict[str, np.ndarray], options: ort.RunOptions | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
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
        self.session.run_with_iobinding(binding, options)
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
