"""Where onnxqa may write: never over a user's data, never half a file.

Rules shared by every command that writes:

- a directory is replaced (``--force``) only when it is an onnxqa model directory, recognised
  by a parseable ``onnxqa.json``; anything else is refused and left untouched;
- an output is never one of the command's inputs (a source checkpoint, a model directory, a data
  file), a directory that contains one, or a path inside one;
- files are written to a temporary name beside the target and renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ._manifest import MANIFEST

__all__ = ["check_not_overlapping", "is_model_dir", "write_text_atomic"]


def is_model_dir(path: Path) -> bool:
    """Whether ``path`` is a directory holding a parseable onnxqa manifest (a JSON object with ``format``)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and "format" in manifest


def _overlap(output: Path, protected: Path) -> str | None:
    out, keep = output.resolve(), protected.resolve()
    if out == keep:
        return "is"
    if keep.is_relative_to(out):
        return "contains"
    if out.is_relative_to(keep) and keep.is_dir():
        return "is inside"
    return None


def check_not_overlapping(output: Path, inputs: Iterable[tuple[str, Path]], error: type[Exception]) -> None:
    """Raise ``error`` when ``output`` is, contains, or lies inside one of the named ``inputs``."""
    for what, path in inputs:
        how = _overlap(output, path)
        if how is not None:
            raise error(
                f"{output} {how} {what} {path}: onnxqa never writes over its own inputs; choose another output path"
            )


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
