"""What onnxqa's graph passes (``onnxqa/export/_passes.py``) are worth, per family: the same
optimized graph with and without them, fp32 and static int8, timed on the same windows in one run,
and where the int8 graph's time goes (onnxruntime's profiler, by operator type).

    python benchmarks/graph_passes.py --model deberta-v3-base
    python benchmarks/graph_passes.py --model electra-base --windows 100

Writes benchmarks/results/graph-passes-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS, ROOT, SHARED, cpu_session, kernel_us, log, squad_pairs


def _time(path: Path, feeds: list[dict[str, np.ndarray]], rounds: int, disabled: list[str]) -> float:
    """Windows per second of a 2-thread session over ``feeds`` (batch of one), best of ``rounds``."""
    session = cpu_session(path, disabled)
    names = {i.name for i in session.get_inputs()}
    feeds = [{k: v for k, v in f.items() if k in names} for f in feeds]
    for f in feeds[:5]:
        session.run(None, f)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for f in feeds:
            session.run(None, f)
        best = min(best, time.perf_counter() - t0)
    return len(feeds) / best


def _profile(path: Path, feeds: list[dict[str, np.ndarray]], scratch: Path, disabled: list[str]) -> dict[str, float]:
    """Share of kernel time by operator type."""
    session = cpu_session(path, disabled, scratch)
    names = {i.name for i in session.get_inputs()}
    for f in feeds:
        session.run(None, {k: v for k, v in f.items() if k in names})
    by_op = kernel_us(session.end_profiling())
    total = sum(by_op.values())
    return {k: round(100 * v / total, 1) for k, v in by_op.most_common(12)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deberta-v3-base", help="a family model of benchmarks/compare.py")
    ap.add_argument("--windows", type=int, default=60, help="timed windows (SQuAD 2.0 dev, default 60)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calibration-pairs", type=int, default=50)
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the benchmark needs the SQuAD data in ../shared")
    import onnx

    from compare import model_checkpoint
    from onnxqa.bench import machine_facts
    from onnxqa.export import _exporter
    from onnxqa.export._checks import model_inputs
    from onnxqa.export._pairs import calibration_pairs
    from onnxqa.export._passes import disabled_optimizers, run_passes
    from onnxqa.export._quantize import quantize_static_int8
    from onnxqa.export._source import load_checkpoint
    from onnxqa.runtime import Windower

    result: dict[str, Any] = {"machine": machine_facts(), "date": time.strftime("%Y-%m-%d"), "settings": vars(args)}
    with tempfile.TemporaryDirectory(prefix="onnxqa-passes-") as tmp:
        work = Path(tmp)
        checkpoint = model_checkpoint(args.model, work / "ckpt")
        ckpt = load_checkpoint(args.model, checkpoint, False)
        (work / "export").mkdir()
        manifest = _exporter._new_manifest(ckpt, work / "export")
        raw, _ = _exporter._export_onnx(ckpt, work / "export" / "raw", None, manifest)
        windower = Windower((work / "export" / "tokenizer.json").read_text(), manifest["tokenizer"]["cls_token_id"])
        uses_types = manifest["architecture"]["uses_token_type_ids"]
        plain = _exporter._optimized(raw, manifest, use_gpu=False)
        plain.save_model_to_file(str(work / "plain.fp32.onnx"))
        model = onnx.load(work / "plain.fp32.onnx")
        result["passes"] = run_passes(model)
        onnx.save(model, work / "passes.fp32.onnx")
        log(f"passes: {result['passes']}")
        disabled = {"plain": [], "passes": disabled_optimizers(result["passes"])}
        feeds = model_inputs(windower, squad_pairs(args.windows), uses_types)[: args.windows]
        calibration = model_inputs(windower, calibration_pairs(args.calibration_pairs), uses_types)
        for name in ("plain", "passes"):
            quantize_static_int8(work / f"{name}.fp32.onnx", work / f"{name}.int8.onnx", calibration)
        a = cpu_session(work / "plain.fp32.onnx", []).run(None, feeds[0])
        b = cpu_session(work / "passes.fp32.onnx", disabled["passes"]).run(None, feeds[0])
        result["fp32_max_abs_diff"] = max(float(np.abs(x - y).max()) for x, y in zip(a, b))
        result["windows_per_s"] = {}
        for round_ in range(2):  # interleaved: each variant timed twice, the best kept
            for name in ("plain.fp32", "passes.fp32", "plain.int8", "passes.int8"):
                rate = _time(work / f"{name}.onnx", feeds, args.rounds, disabled[name.split(".")[0]])
                result["windows_per_s"][name] = max(rate, result["windows_per_s"].get(name, 0.0))
                log(f"{name} round {round_}: {rate:.2f} windows/s")
        result["profile_int8"] = {
            name: _profile(work / f"{name}.int8.onnx", feeds[:20], work, disabled[name]) for name in ("plain", "passes")
        }
        result["bytes"] = {p.name: p.stat().st_size for p in work.glob("*.onnx")}
        shutil.rmtree(work / "export", ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"graph-passes-{args.model}.json"
    out.write_text(json.dumps(result, indent=2))
    log(json.dumps({k: result[k] for k in ("passes", "fp32_max_abs_diff", "windows_per_s", "profile_int8")}, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    main()
