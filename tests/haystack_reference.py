"""Haystack's own torch ``ExtractiveReader`` (haystack-ai 2.x core), the reference for onnxqa's reader."""

from __future__ import annotations

import warnings
from pathlib import Path


def torch_reader(checkpoint: Path, **init):
    """A warmed-up torch ``ExtractiveReader`` on the CPU for a local checkpoint directory."""
    from haystack.components.readers.extractive import ExtractiveReader
    from haystack.utils import ComponentDevice

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "moving to transformers-haystack in 3.0"
        reader = ExtractiveReader(model=str(checkpoint), device=ComponentDevice.from_str("cpu"), token=None, **init)
    reader.warm_up()
    return reader
