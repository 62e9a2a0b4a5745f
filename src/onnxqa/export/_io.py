"""Writing ONNX graphs of any size: a graph whose weights pass protobuf's 2 GiB limit (XLM-R large,
560M parameters, is 2.2 GB in fp32) is written with its tensors in one external-data file beside it,
``<file>.data``; smaller graphs stay single files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["EXTERNAL_DATA_BYTES", "data_file", "is_large", "save_onnx", "session_source"]

# above this many bytes of tensors a graph is written with external data (protobuf caps a
# serialized message at 2 GiB; the margin leaves room for the graph itself)
EXTERNAL_DATA_BYTES = 1_800_000_000


def data_file(path: Path) -> Path:
    """The external-data file of the graph at ``path``."""
    return path.with_name(path.name + ".data")


def _tensor_bytes(model: Any) -> int:
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) if t.raw_data else t.ByteSize()
    for n in model.graph.node:
        if n.op_type == "Constant":
            total += n.ByteSize()
    return total


def is_large(model: Any) -> bool:
    """Whether ``model`` (a ModelProto with its tensors loaded) must be written with external data."""
    return _tensor_bytes(model) > EXTERNAL_DATA_BYTES


def save_onnx(model: Any, path: Path) -> None:
    """Write ``model`` to ``path``, with its tensors in ``data_file(path)`` when it is large."""
    import onnx

    path = Path(path)
    stale = data_file(path)
    if stale.exists():
        stale.unlink()
    if is_large(model):
        onnx.save(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=stale.name,
            size_threshold=1024,
        )
    else:
        onnx.save(model, str(path))


def session_source(model: Any, scratch: Path) -> str | bytes:
    """What ``onnxruntime.InferenceSession`` can open for ``model``: its bytes, or for a large
    graph a file written into the directory ``scratch`` (bytes cannot hold it)."""
    if not is_large(model):
        return model.SerializeToString()
    path = Path(scratch) / "session.onnx"
    save_onnx(model, path)
    return str(path)
