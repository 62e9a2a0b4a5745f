"""Checks that decide whether an exported variant may be used.

- fp32 against PyTorch on the bundled pairs: the start/end logits within ``atol``, or the export
  fails.
- int8 / fp16 against fp32, on the bundled pairs plus generated ones: top-1 answers equal on at
  least ``min_agreement`` of the pairs, and the mean absolute difference of the logits, relative to
  the spread (standard deviation) of fp32's logits, at most ``max_rel_diff`` on average over the
  windows; every logit finite. A
  variant that misses a limit is kept but marked failed in the manifest, and the runtime's
  ``precision="auto"`` never picks it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._manifest import BACKENDS
from ._openvino import openvino_logits

__all__ = ["LIMITS", "Limits", "check_variant", "model_inputs", "onnx_logits", "torch_reference"]


@dataclass(frozen=True)
class Limits:
    """What a quantized or half-precision variant must reach against fp32 to pass."""

    min_agreement: float  # share of pairs whose best answer (start, end) equals fp32's
    max_rel_diff: float  # mean over windows of mean |logit - fp32 logit| / std(fp32 logits)


# Measured with 206 pairs (BENCHMARKS.md, "Export checks"): the shipped dynamic int8 agrees with fp32
# on 93-96% of pairs with a relative difference of 0.013-0.045 on the seeds and the trained
# reference model; fp16 differs from fp32 by about 1e-3 relative.
LIMITS = {"int8": Limits(min_agreement=0.85, max_rel_diff=0.1), "fp16": Limits(min_agreement=0.98, max_rel_diff=0.01)}
LIMITS["openvino-int8"] = LIMITS["int8"]


def model_inputs(windower: Any, pairs: Sequence[tuple[str, str]], uses_types: bool) -> list[dict[str, np.ndarray]]:
    """One batch-of-one input per window of ``pairs`` (384-token windows, and 128 for the last pair)."""
    windows = windower.windows(pairs, max_seq_len=384, doc_stride=128, max_question_len=64)
    # also a short window size so that long contexts are split into several windows
    windows += windower.windows(pairs[-1:], max_seq_len=128, doc_stride=32, max_question_len=64)
    feeds = []
    for w in windows:
        feed = {"input_ids": w.input_ids[None], "attention_mask": np.ones_like(w.input_ids)[None]}
        if uses_types:
            feed["token_type_ids"] = w.type_ids[None]
        feeds.append(feed)
    return feeds


def torch_reference(
    model: Any, windower: Any, pairs: Sequence[tuple[str, str]], uses_types: bool
) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """The model inputs of every window of ``pairs`` and PyTorch's (2, n) start/end logits for each."""
    import torch

    feeds = model_inputs(windower, pairs, uses_types)
    logits = []
    with torch.no_grad():
        for feed in feeds:
            out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
            logits.append(np.stack([out.start_logits[0].numpy(), out.end_logits[0].numpy()]))
    return feeds, logits


def onnx_logits(
    path: Path, feeds: Sequence[dict[str, np.ndarray]], device: str = "cpu", disabled_optimizers: Sequence[str] = ()
) -> list[np.ndarray]:
    """onnxruntime's (2, n) start/end logits of the graph at ``path`` for each input, in a session
    without ``disabled_optimizers`` (as the runtime will run it)."""
    import onnxruntime as ort

    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), providers=providers, disabled_optimizers=list(disabled_optimizers))
    names = {i.name for i in session.get_inputs()}
    out = []
    for feed in feeds:
        start, end = session.run(["start_logits", "end_logits"], {k: v for k, v in feed.items() if k in names})
        out.append(np.stack([start[0], end[0]]).astype(np.float32))
    return out


def check_variant(
    work: Path,
    precision: str,
    file: str,
    pairs: Sequence[tuple[str, str]],
    feeds: Sequence[dict[str, np.ndarray]],
    fp32_logits: Sequence[np.ndarray],
    device: str,
    disabled_optimizers: Sequence[str] = (),
) -> dict[str, Any]:
    """Compare ``precision`` with fp32 on answers and logits; the manifest's ``validation`` entry."""
    from ..runtime import QuestionAnswerer

    limits = LIMITS[precision]
    if BACKENDS.get(precision) == "openvino":
        logits = openvino_logits(work, feeds)
    else:
        logits = onnx_logits(work / file, feeds, device, disabled_optimizers)
    finite = all(bool(np.isfinite(x).all()) for x in logits)
    scales = [max(float(ref.std()), 1e-6) for ref in fp32_logits]
    diffs = [np.abs(x - ref) for x, ref in zip(logits, fp32_logits)]
    mean_rel = float(np.mean([d.mean() / s for d, s in zip(diffs, scales)])) if finite else math.inf
    max_rel = max(float(d.max()) / s for d, s in zip(diffs, scales)) if finite else math.inf

    base = QuestionAnswerer(work, device="cpu", precision="fp32").batch(pairs, top_k=1)
    same = 0
    if finite:
        other = QuestionAnswerer(work, device=device, precision=precision).batch(pairs, top_k=1)
        same = sum(a[0].start == b[0].start and a[0].end == b[0].end for a, b in zip(base, other))
    agreement = same / len(pairs)
    reasons = []
    if not finite:
        reasons.append("non-finite logits")
    if agreement < limits.min_agreement:
        reasons.append(f"answers equal on {agreement:.1%} of pairs < {limits.min_agreement:.0%}")
    if mean_rel > limits.max_rel_diff:
        reasons.append(f"mean relative logit difference {mean_rel:.3g} > {limits.max_rel_diff}")
    return {
        "status": "failed" if reasons else "passed",
        "reference": "fp32",
        "device": device,
        "pairs": len(pairs),
        "windows": len(feeds),
        "answers_equal": same,
        "agreement": agreement,
        "finite": finite,
        "max_abs_diff": max(float(d.max()) for d in diffs) if finite else None,
        "mean_rel_diff": mean_rel if finite else None,
        "max_rel_diff": max_rel if finite else None,
        "limits": asdict(limits),
        "failed_because": reasons,
    }
