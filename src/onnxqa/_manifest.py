"""The model directory's manifest, ``onnxqa.json``: what the exporter writes, what the runtime reads.

Only JSON, ONNX and tokenizer files are ever read from a model directory; nothing in it is executed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._errors import ModelLoadError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "BACKENDS",
    "PRECISIONS",
    "batch_invariant",
    "read_external_data",
    "read_manifest",
    "sha256_bytes",
    "sha256_file",
    "variant_status",
]

MANIFEST = "onnxqa.json"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "int8", "fp16", "openvino-int8")
BACKENDS = {"openvino-int8": "openvino"}
"""Variants run by a backend other than onnxruntime: the variant's name -> the backend."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise ModelLoadError(f"{MANIFEST}: missing '{where}{key}'; re-export the model")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ModelLoadError(f"{MANIFEST}: '{where}{key}' has the wrong type; re-export the model")
    return value


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """Parse and structurally check ``model_dir/onnxqa.json``."""
    path = model_dir / MANIFEST
    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir} is not a directory; pass the OUTPUT_DIR of `onnxqa export`")
    if not path.is_file():
        raise ModelLoadError(
            f"{model_dir} has no {MANIFEST}: it is not an onnxqa model directory "
            "(create one with `onnxqa export CHECKPOINT OUTPUT_DIR`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc}); re-export the model") from exc
    fmt = _require(manifest, "format", int, "")
    if fmt != FORMAT_VERSION:
        raise ModelLoadError(f"{path} has format {fmt}, this onnxqa reads format {FORMAT_VERSION}; re-export the model")
    arch = _require(manifest, "architecture", dict, "")
    for key in ("num_layers", "num_heads", "hidden_size", "max_positions"):
        _require(arch, key, int, "architecture.")
    _require(arch, "model_type", str, "architecture.")
    tok = _require(manifest, "tokenizer", dict, "")
    _require(tok, "file", str, "tokenizer.")
    _require(tok, "sha256", str, "tokenizer.")
    _require(tok, "model_max_length", int, "tokenizer.")
    _require(tok, "pad_token_id", int, "tokenizer.")
    variants = _require(manifest, "variants", dict, "")
    if not variants:
        raise ModelLoadError(f"{path} lists no model variants; re-export the model")
    for name, variant in variants.items():
        if name not in PRECISIONS:
            raise ModelLoadError(f"{path}: unknown precision {name!r}; re-export the model")
        _require(variant, "file", str, f"variants.{name}.")
        _require(variant, "sha256", str, f"variants.{name}.")
        parts = variant.get("external_data", [])
        if not isinstance(parts, list):
            raise ModelLoadError(f"{path}: 'variants.{name}.external_data' is not a list; re-export the model")
        for i, part in enumerate(parts):
            _require(part, "file", str, f"variants.{name}.external_data[{i}].")
            _require(part, "sha256", str, f"variants.{name}.external_data[{i}].")
        disabled = variant.get("disabled_optimizers", [])
        if not isinstance(disabled, list) or not all(isinstance(d, str) for d in disabled):
            raise ModelLoadError(
                f"{path}: 'variants.{name}.disabled_optimizers' is not a list of names; re-export the model"
            )
    return manifest


def variant_status(variant: dict[str, Any]) -> str:
    """``"passed"``, ``"failed"`` or ``"unvalidated"``: what the export's check of a variant decided."""
    validation = variant.get("validation")
    if not isinstance(validation, dict):
        return "unvalidated"
    status = validation.get("status")
    if status in ("passed", "failed", "unvalidated"):
        return str(status)
    if "passed" in validation:  # manifests written before the status field
        return "passed" if validation["passed"] is True else "failed"
    return "unvalidated"


def batch_invariant(name: str, variant: dict[str, Any]) -> bool:
    """Whether a window's logits under this variant are independent of its batch neighbours.

    Not so for dynamic quantization (``--int8 dynamic``): activation scales are computed per
    inference call over the whole batch, so other windows in the call shift a window's scores.
    Static int8 (the exporter's default) uses scales calibrated at export and is invariant. A
    variant without a quantization record counts as dynamic when its precision is int8 (manifests
    written before static int8).
    """
    quantization = variant.get("quantization")
    if isinstance(quantization, dict):
        return quantization.get("method") != "dynamic"
    return name != "int8"


def safe_member(model_dir: Path, name: str) -> Path:
    """``model_dir / name``, refusing names that leave the directory."""
    candidate = Path(name)
    if candidate.is_absolute() or ".." in candidate.parts or len(candidate.parts) != 1:
        raise ModelLoadError(f"{MANIFEST} names {name!r}, which is not a plain file name in {model_dir}")
    return model_dir / candidate


def _unreadable(path: Path, exc: OSError) -> ModelLoadError:
    if isinstance(exc, FileNotFoundError):
        return ModelLoadError(f"{path} is missing; the model directory is incomplete, re-export it")
    return ModelLoadError(f"cannot read {path}: {exc}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def _mismatch(path: Path) -> ModelLoadError:
    return ModelLoadError(
        f"{path} does not match the hash in {MANIFEST} (truncated, corrupted or replaced); re-export the model"
    )


def read_verified(model_dir: Path, name: str, sha256: str) -> bytes:
    """The bytes of a file of the model directory, checked against the manifest's hash."""
    path = safe_member(model_dir, name)
    data = _read(path)
    if sha256_bytes(data) != sha256:
        raise _mismatch(path)
    return data


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def open_verifying(model_dir: Path, name: str, sha256: str) -> tuple[Path, Callable[[], None]]:
    """The path of a file of the model directory, for a reader that opens it itself (onnxruntime,
    which reads a graph faster from its path than from Python bytes), and ``verify()``, which
    raises ModelLoadError unless the file matches the manifest's hash and is still the file that
    was hashed (same inode, size and modification time as when hashing began: a file replaced or
    rewritten while it was being read is refused too). The hash is computed on a thread of its
    own while the reader works (hashlib releases the GIL). Call ``verify()`` before anything read
    from the file is used, and also when the reader failed (a corrupted file is then reported as
    such)."""
    path = safe_member(model_dir, name)
    try:
        before = _identity(path)
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    digest: list[str | OSError] = []

    def run() -> None:
        try:
            digest.append(sha256_file(path))
        except OSError as exc:
            digest.append(exc)

    thread = threading.Thread(target=run, name="onnxqa-hash", daemon=True)
    thread.start()

    def verify() -> None:
        thread.join()
        if isinstance(digest[0], OSError):
            raise _unreadable(path, digest[0])
        try:
            same = _identity(path) == before
        except OSError:
            same = False
        if digest[0] != sha256 or not same:
            raise _mismatch(path)

    return path, verify


def read_external_data(model_dir: Path, variant: dict[str, Any]) -> dict[str, bytes]:
    """The external-data files of a variant (graphs over 2 GB keep their tensors beside the graph),
    each checked against the manifest's hash: file name -> bytes."""
    parts = variant.get("external_data", [])  # a list of {file, sha256}: checked by read_manifest
    return {part["file"]: read_verified(model_dir, part["file"], part["sha256"]) for part in parts}
