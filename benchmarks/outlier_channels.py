"""What the int8 graph's outlier channels cost in speed: a GELU-fed MatMul's input channels that
stand out computed in fp32 beside its int8 product (``quantize_static_int8``'s default since it
brought the reference model's int8 to within 0.1 F1 of fp32).

    python benchmarks/outlier_channels.py MODEL_DIR [MODEL_DIR ...] [--questions 100] [--rounds 3]

For each directory exported by this version (default static int8), its int8 graph is built again
from its own fp32 graph as the exporter builds it -- the same generated calibration pairs, the
family's kept MatMuls, the int8 passes -- once as shipped (it must give the shipped logits), once
with the 4 largest channels of every GELU-fed MatMul apart whether they stand out or not (what a
model with such channels in every layer pays; checkpoints with random weights have none) and once
with none (the int8 of the version before). These two are timed in turns with the shipped graph
(2 threads, batch of one, the windows of the first N SQuAD 2.0 dev questions, best of the rounds;
then onnxruntime's kernel profile, least total of the rounds), in sessions as the runtime creates
them; and each one's largest and mean |logit - fp32 logit| over those windows are reported
(random-weight checkpoints: a measure of int8 error, not of accuracy, which int8_fidelity.py and
backends.py measure on the trained reference model).

Writes benchmarks/results/outlier-channels-<machine>.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import int8_rewrites
import int8_variants
from common import ROOT, cpu_session


def _rebuild(model_dir: Path, out: Path, outliers: int, ratio: float | None = None) -> None:
    """``model_dir``'s int8 graph as the exporter builds it, with up to ``outliers`` channels apart
    (``ratio``: :func:`outlier_channels`'s, None: the default)."""
    import onnx

    from onnxqa.export._families import family_of
    from onnxqa.export._passes import INT8_PASSES, run_passes
    from onnxqa.export._quantize import quantize_static_int8

    manifest = json.loads((model_dir / "onnxqa.json").read_text())
    calibration = manifest["variants"]["int8"]["quantization"]["calibration"]
    if not calibration["source"].startswith("generated"):
        raise SystemExit(
            f"{model_dir}: int8 calibrated on {calibration['source']}; rebuilt here on generated pairs only"
        )
    feeds = int8_variants._calibration(model_dir, "generated", calibration["pairs"])
    family = family_of(manifest["architecture"]["model_type"])
    chosen = {} if ratio is None else {"outlier_ratio": ratio}
    quantize_static_int8(
        model_dir / "model.fp32.onnx", out, feeds, keep_fragments=family.int8_keep_fp32, outliers=outliers, **chosen
    )
    model = onnx.load(out)
    run_passes(model, INT8_PASSES)
    onnx.save(model, out)


def measure(model_dir: Path, questions: int, rounds: int) -> dict[str, Any]:
    manifest, disabled, feeds = int8_rewrites.int8_windows(model_dir, questions)
    result: dict[str, Any] = {"model": str(model_dir), "windows": len(feeds)}
    with tempfile.TemporaryDirectory(prefix="onnxqa-outliers-") as tmp:
        work = Path(tmp)
        files = {
            "shipped": model_dir / "model.int8.onnx",
            "rebuilt": work / "rebuilt.onnx",
            "top4": work / "top4.onnx",
            "none": work / "none.onnx",
        }
        _rebuild(model_dir, files["rebuilt"], 4)
        _rebuild(model_dir, files["top4"], 4, 0.0)
        _rebuild(model_dir, files["none"], 0)
        sessions = {name: cpu_session(path, disabled) for name, path in files.items()}
        fp32 = cpu_session(model_dir / "model.fp32.onnx", manifest["variants"]["fp32"].get("disabled_optimizers", []))
        names = {i.name for i in fp32.get_inputs()}
        feeds = [{k: v for k, v in f.items() if k in names} for f in feeds]
        reference = [fp32.run(None, f) for f in feeds]
        shipped = [sessions["shipped"].run(None, f) for f in feeds]

        def largest(runs: list, against: list) -> float:
            return max(float(np.abs(a - b).max()) for r, s in zip(runs, against) for a, b in zip(r, s))

        outputs = {name: [s.run(None, f) for f in feeds] for name, s in sessions.items()}
        result["rebuilt_vs_shipped"] = largest(outputs["rebuilt"], shipped)
        result["max_abs_logit_diff_vs_fp32"] = {name: round(largest(o, reference), 4) for name, o in outputs.items()}
        result["mean_abs_logit_diff_vs_fp32"] = {
            name: round(float(np.mean([np.abs(a - b).mean() for r, s in zip(o, reference) for a, b in zip(r, s)])), 4)
            for name, o in outputs.items()
        }
        del sessions["rebuilt"], files["rebuilt"]
        rates: dict[str, float] = {}
        for _ in range(rounds):  # in turns, the best of each kept
            for name, s in sessions.items():
                rates[name] = max(rates.get(name, 0.0), int8_rewrites._rate(s, feeds))
        result["windows_per_s"] = {k: round(v, 2) for k, v in rates.items()}
        result["top4_x_none"] = round(rates["top4"] / rates["none"], 3)
        del sessions
        kernels: dict[str, dict[str, float]] = {}
        for _ in range(rounds):
            for name, path in files.items():
                profile = int8_rewrites._kernels(path, feeds, disabled, work)
                if name not in kernels or profile["total"] < kernels[name]["total"]:
                    kernels[name] = profile
        result["kernel_ms_per_window"] = kernels
        result["kernel_top4_x_none"] = round(kernels["none"]["total"] / kernels["top4"]["total"], 3)
    return result


def main() -> None:
    out = int8_rewrites.over_model_dirs(__doc__ or "", measure, "outlier-channels")
    print(
        "| model | windows/s: shipped | 4 channels apart per MatMul | none | 4 apart × none, wall | kernel "
        "| largest / mean logit error vs fp32: 4 apart | none |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for m in out["models"]:
        r, d, a = m["windows_per_s"], m["max_abs_logit_diff_vs_fp32"], m["mean_abs_logit_diff_vs_fp32"]
        print(
            f"| {Path(m['model']).parent.name}/{Path(m['model']).name} | {r['shipped']} | {r['top4']} | {r['none']} "
            f"| {m['top4_x_none']:.3f}× | {m['kernel_top4_x_none']:.3f}× | {d['top4']} / {a['top4']} "
            f"| {d['none']} / {a['none']} |"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    main()
