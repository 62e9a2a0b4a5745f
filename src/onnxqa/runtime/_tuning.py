"""What ``onnxqa tune`` keeps beside a model, as :func:`onnxqa.load` reads it (the measuring is in
:mod:`onnxqa.tune`)."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import onnxruntime as ort

from .._errors import ModelLoadError
from ._openvino import openvino_version

__all__ = ["TUNING_FORMAT", "TUNING", "cpu_name", "machine_key", "read_tuning", "variant_identity"]

TUNING = "onnxqa.tuning.json"
TUNING_FORMAT = 1


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(openvino: bool = False) -> dict[str, Any]:
    """What a tuning result is valid for: this CPU model and core count, this onnxruntime and onnxqa,
    and with ``openvino`` (an OpenVINO variant was measured) this OpenVINO (None: not installed)."""
    try:
        version = metadata.version("onnxqa")
    except metadata.PackageNotFoundError:  # run from a source tree
        version = "unknown"
    key = {"cpu": cpu_name(), "logical_cores": os.cpu_count(), "onnxruntime": ort.__version__, "onnxqa": version}
    return key | {"openvino": openvino_version()} if openvino else key


def variant_identity(variant: dict[str, Any]) -> str:
    """The hashes of a variant's files (graph, then weights files), as a tuning file records them."""
    return "+".join([variant["sha256"], *(part["sha256"] for part in variant.get("external_data", []))])


def read_tuning(model_dir: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The configuration ``onnxqa tune`` chose for ``model_dir`` on this machine, or None: no
    tuning file, or one measured on another machine or software, or for other files. A tuning file
    that cannot be read or makes no sense is an error (it was written by ``onnxqa tune``)."""
    path = model_dir / TUNING
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        chosen = data["chosen"]
        precision, threads, batch_size = chosen["precision"], chosen["threads"], chosen["batch_size"]
        recorded = data["variants"][precision]
        machine = data["machine"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path} cannot be read ({exc!r}); run `onnxqa tune` again or delete it") from exc
    counts = [n for n in (threads, batch_size) if isinstance(n, int) and not isinstance(n, bool) and n >= 1]
    valid = isinstance(precision, str) and len(counts) == 2
    if not valid or data.get("format") != TUNING_FORMAT:
        raise ModelLoadError(f"{path} is not a tuning file of this onnxqa; run `onnxqa tune` again or delete it")
    variant = manifest["variants"].get(precision)
    same_machine = isinstance(machine, dict) and machine == machine_key(openvino="openvino" in machine)
    if variant is None or variant_identity(variant) != recorded or not same_machine:
        return None  # another machine, or the model was exported again: defaults apply
    return {"precision": precision, "threads": threads, "batch_size": batch_size}
