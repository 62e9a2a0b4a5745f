"""Checkpoints with a real architecture and tokenizer but random weights: for parity and speed tests."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["random_checkpoint"]


def random_checkpoint(config_dir: str | Path, out: str | Path, *, seed: int = 0, head_std: float = 1.0) -> Path:
    """Save a QA model built from ``config_dir/config.json`` with seeded random weights to ``out``,
    next to a copy of the tokenizer files of ``config_dir``.

    The QA head is re-drawn with standard deviation ``head_std``: with the default initialisation
    span scores are near-ties that float noise can reorder; 1.0 separates the best spans clearly.
    """
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    config_dir, out = Path(config_dir), Path(out)
    config = AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(seed)
    model = AutoModelForQuestionAnswering.from_config(config)
    with torch.no_grad():
        model.qa_outputs.weight.normal_(0.0, head_std)
    model.save_pretrained(out)
    for f in config_dir.iterdir():
        if f.is_file() and f.name != "config.json":
            shutil.copy(f, out / f.name)
    return out
