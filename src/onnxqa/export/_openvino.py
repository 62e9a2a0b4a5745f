"""The ``openvino-int8`` variant: the exported (unoptimized) ONNX graph converted to OpenVINO and
quantized by NNCF's post-training quantization on the same calibration windows as onnxruntime's
static int8. Needs the ``openvino`` extra (``openvino``, ``nncf``) at export; the runtime needs
``openvino`` only.

NNCF's transformer preset: SmoothQuant, then int8 weights (per channel) and activations (per
tensor, ranges calibrated here) for the MatMuls, attention included; the word embeddings are
stored int8 too. Like onnxruntime's static int8, activation scales are constants, and the runtime
runs every window at its own length (see ``onnxqa.runtime._openvino``), so a window's answer does
not depend on its batch neighbours.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ExportError
from .._manifest import sha256_file

__all__ = ["OPENVINO_FILE", "OPENVINO_WEIGHTS", "openvino_logits", "quantize_openvino", "require_openvino"]

OPENVINO_FILE, OPENVINO_WEIGHTS = "model.openvino-int8.xml", "model.openvino-int8.bin"


def require_openvino() -> None:
    """Raise ExportError unless the ``openvino`` extra (openvino, nncf) is installed."""
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            f"the openvino-int8 variant needs the openvino extra ({exc}); pip install 'onnxqa[openvino]'"
        ) from exc


def quantize_openvino(
    raw_model: Path, feeds: Sequence[dict[str, np.ndarray]], work: Path, record: dict[str, Any], progress: bool = True
) -> dict[str, Any]:
    """Convert ``raw_model`` (the plain ONNX export) to OpenVINO, quantize it with NNCF on
    ``feeds`` (batch-of-one calibration windows), write it into ``work``; its manifest entry
    (without its validation). ``record``: where the calibration pairs came from; ``progress``:
    NNCF's progress bars on standard output."""
    import nncf
    import openvino as ov

    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stdout(io.StringIO())
    try:
        with warnings.catch_warnings(), quiet:
            warnings.simplefilter("ignore")
            model = ov.convert_model(str(raw_model))
            quantized = nncf.quantize(
                model,
                nncf.Dataset(list(feeds)),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(feeds),
            )
        ov.save_model(quantized, str(work / OPENVINO_FILE), compress_to_fp16=False)
    except Exception as exc:  # OpenVINO and NNCF raise RuntimeError and their own types
        raise ExportError(f"OpenVINO / NNCF could not convert or quantize the model: {str(exc).strip()[:500]}") from exc
    finally:
        logger.setLevel(level)
    ops: dict[str, int] = {}
    for op in quantized.get_ops():
        ops[op.get_type_name()] = ops.get(op.get_type_name(), 0) + 1
    files = [work / OPENVINO_FILE, work / OPENVINO_WEIGHTS]
    if not files[1].is_file():
        raise ExportError(f"OpenVINO wrote no weights file {OPENVINO_WEIGHTS}")
    return {
        "file": OPENVINO_FILE,
        "precision": "openvino-int8",
        "backend": "openvino",
        "sha256": sha256_file(files[0]),
        "bytes": files[0].stat().st_size,
        "external_data": [{"file": files[1].name, "sha256": sha256_file(files[1]), "bytes": files[1].stat().st_size}],
        "fused_ops": {op: ops[op] for op in ("FakeQuantize", "MatMul", "Gather") if op in ops},
        "quantization": {
            "method": "static",
            "tool": f"NNCF {nncf.__version__}, transformer preset (SmoothQuant, then int8 MatMuls)",
            "format": f"OpenVINO IR ({ov.__version__}), FakeQuantize",
            "activations": "per tensor, ranges calibrated at export (the onnxruntime int8's calibration windows)",
            "calibration": {**record, "windows": len(feeds)},
        },
    }


def openvino_logits(work: Path, feeds: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """OpenVINO's (2, n) start/end logits of the variant in ``work`` for each input, as the
    runtime runs it."""
    from ..runtime import OpenVINOEngine

    engine = OpenVINOEngine((work / OPENVINO_FILE).read_bytes(), (work / OPENVINO_WEIGHTS).read_bytes(), cache=False)
    out = []
    for feed in feeds:
        ids = feed["input_ids"]
        types = feed.get("token_type_ids", np.zeros_like(ids))
        start, end = engine.logits(ids, types, feed["attention_mask"])
        out.append(np.stack([start[0], end[0]]).astype(np.float32))
    return out
