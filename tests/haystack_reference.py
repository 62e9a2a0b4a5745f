"""Haystack's own torch ``ExtractiveReader`` (haystack-ai 2.x core), the reference for onnxqa's reader.

Its module imports ``accelerate`` inside a lazy-import block only to check it is installed, and
the reader loads its model with ``device_map``, which transformers serves through ``accelerate``.
Where that package is absent, an empty stand-in lets the module import (and is removed again at
once), and the reader loads its model without ``device_map``: on the CPU, the same model.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from pathlib import Path


def reader_class() -> type:
    """Haystack's ``ExtractiveReader`` class."""
    import haystack.utils.hf  # noqa: F401  (imports transformers, which looks for accelerate itself)

    stand_in = importlib.util.find_spec("accelerate") is None and "accelerate" not in sys.modules
    if stand_in:
        sys.modules["accelerate"] = types.ModuleType("accelerate")
    try:
        from haystack.components.readers.extractive import ExtractiveReader
    finally:
        if stand_in:
            del sys.modules["accelerate"]
    return ExtractiveReader


def torch_reader(checkpoint: Path, **init):
    """A warmed-up torch ``ExtractiveReader`` on the CPU for a local checkpoint directory."""
    from haystack.utils import ComponentDevice

    ExtractiveReader = reader_class()
    stand_in = importlib.util.find_spec("accelerate") is None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "moving to transformers-haystack in 3.0"
        reader = ExtractiveReader(model=str(checkpoint), device=ComponentDevice.from_str("cpu"), token=None, **init)
    if stand_in:
        reader.model_kwargs.pop("device_map", None)
    reader.warm_up()
    return reader
