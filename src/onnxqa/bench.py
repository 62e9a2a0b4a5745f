"""``onnxqa bench``: single-question latency and batch throughput of a model directory."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InputError
from ._paths import check_not_overlapping, write_text_atomic

__all__ = ["DEFAULT_QUESTIONS", "latency_ms", "machine_facts", "run_bench", "throughput"]

DEFAULT_QUESTIONS = 200
"""Questions per measurement (``onnxqa bench -n``)."""


def machine_facts() -> dict[str, Any]:
    """CPU model, core counts, instruction sets, Python, onnxruntime and OpenVINO versions."""
    import onnxruntime as ort

    from .runtime import cpu_name, openvino_version

    cpu = cpu_name()
    flags = ""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "avx512_vnni": "avx512_vnni" in flags,
        "avx2": "avx2" in flags,
        "amx_int8": "amx_int8" in flags,
        "bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "openvino": openvino_version(),
        "providers": ort.get_available_providers(),
    }


def latency_ms(answer_one: Any, pairs: list[tuple[str, str]], warmup: int = 5) -> dict[str, float]:
    """p50 / p90 / p99 / mean milliseconds of ``answer_one(question, context)`` over ``pairs``."""
    for q, c in pairs[:warmup]:
        answer_one(q, c)
    times = []
    for q, c in pairs:
        t0 = time.perf_counter()
        answer_one(q, c)
        times.append((time.perf_counter() - t0) * 1000)
    a = np.asarray(times)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
    }


def throughput(answer_all: Any, pairs: list[tuple[str, str]]) -> float:
    """Questions per second of ``answer_all(pairs)`` (after one small warm-up call)."""
    answer_all(pairs[:8])
    t0 = time.perf_counter()
    answer_all(pairs)
    return len(pairs) / (time.perf_counter() - t0)


def _pairs(data: str | None, n: int) -> list[tuple[str, str]]:
    if data:
        from .squad import load_squad

        _, questions = load_squad(data)
        pairs = [(q.question, q.context) for q in questions[:n]]
    else:
        from .export import validation_pairs

        base = validation_pairs()
        pairs = [base[i % len(base)] for i in range(n)]
    if not pairs:
        raise InputError("no questions to benchmark")
    return pairs


def run_bench(
    model_dir: str,
    *,
    data: str | None = None,
    questions: int = DEFAULT_QUESTIONS,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "all",
    threads: int | None = None,
    output: str | None = None,
) -> dict[str, Any]:
    """Latency and throughput of ``model_dir`` for one precision, or every one suited to the device
    (``precision="all"``), on ``questions`` questions of ``data`` (default: built-in pairs).

    Raises:
        InputError: bad arguments; ModelLoadError / ProviderError from loading.
    """
    from .runtime import load, suited_precisions

    if questions < 1:
        raise InputError(f"--questions must be >= 1, got {questions}")
    if output:
        inputs = [("the model directory", Path(model_dir))] + ([("the data file", Path(data))] if data else [])
        check_not_overlapping(Path(output), inputs, InputError)
    pairs = _pairs(data, questions)
    precisions = suited_precisions(model_dir, device) if precision == "all" else [precision]
    runs = []
    for name in precisions:
        qa = load(model_dir, device=device, precision=name, threads=threads)
        qa.batch(pairs)  # every window shape once (OpenVINO prepares kernels per new shape)
        runs.append(
            {
                "precision": name,
                "device": qa.device,
                "batch_size": batch_size,
                "questions": len(pairs),
                "latency_ms": latency_ms(qa, pairs),
                "questions_per_s": throughput(lambda ps, qa=qa: qa.batch(ps, batch_size=batch_size), pairs),
            }
        )
    result = {
        "model_dir": str(model_dir),
        "data": data or "built-in pairs",
        "machine": machine_facts(),
        "runs": runs,
    }
    if output:
        write_text_atomic(Path(output), json.dumps(result, indent=2))
    return result
