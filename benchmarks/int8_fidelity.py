"""Which parts of the onnxruntime int8 graph move its answers away from fp32's, on the trained reference model.

    python benchmarks/int8_fidelity.py                               # every recipe, all 5,795 held-out questions
    python benchmarks/int8_fidelity.py --recipes default all-ffn-out-fp32 --questions 1000

Each recipe is static int8 of the reference model's optimized fp32 graph, built by
``quantize_static_int8`` (calibrated on the bundled generated pairs) with some MatMuls left in fp32
or other calibration settings; the exporter's later passes (int8 vocabulary) are not applied. Two
figures per recipe: the share of held-out questions whose answer text equals fp32's (needs no
labels: how faithful int8 is), and F1 with the official SQuAD 2.0 metric
(``handle_impossible_answer=True``), against fp32's. Prints one line per recipe and writes
benchmarks/results/int8-fidelity.json (``--name``: another file name).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import int8_variants
from common import HELDOUT, RESULTS, SHARED, squad

LAYER = "/bert/encoder/layer.{}/{}/dense/MatMul"  # the reference model's (BERT) MatMul names
BLOCK = ("output", "intermediate", "attention/output")


def recipes() -> dict[str, tuple[dict[str, Any], int]]:
    """name -> (quantize_static_int8 options, calibration pairs). The recipes before outlier channels
    existed keep none (``outliers: 0``), as they were measured (results/int8-fidelity.json)."""
    before = {"outliers": 0}
    return {
        "default": ({}, 200),
        "no-outlier-channels": (before, 200),  # the default before outlier channels
        "calibration-800": (before, 800),
        "smoothquant-0.5": ({**before, "smooth_alpha": 0.5}, 200),
        "last-ffn-out-fp32": ({**before, "keep_fp32": [LAYER.format(5, "output")]}, 200),
        "last-block-fp32": ({**before, "keep_fp32": [LAYER.format(5, k) for k in BLOCK]}, 200),
        "first-ffn-out-fp32": ({**before, "keep_fp32": [LAYER.format(0, "output")]}, 200),
        "first-block-fp32": ({**before, "keep_fp32": [LAYER.format(0, k) for k in BLOCK]}, 200),
        "first-2-ffn-out-fp32": ({**before, "keep_fp32": [LAYER.format(i, "output") for i in (0, 1)]}, 200),
        "all-ffn-out-fp32": ({**before, "keep_fp32": [LAYER.format(i, "output") for i in range(6)]}, 200),
        "outlier-channel-1": ({"outliers": 1}, 200),  # the default's rule, at most one per MatMul
        # the largest channels whether they stand out or not (outlier_ratio 0)
        "top-1-channel": ({"outliers": 1, "outlier_ratio": 0.0}, 200),
        "top-4-channels": ({"outliers": 4, "outlier_ratio": 0.0}, 200),
        "top-4-channels-smoothquant-0.5": ({"outliers": 4, "outlier_ratio": 0.0, "smooth_alpha": 0.5}, 200),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=5795)
    ap.add_argument("--recipes", nargs="+", default=list(recipes()), choices=list(recipes()))
    ap.add_argument("--name", default="int8-fidelity", help="results file name (default: int8-fidelity)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="using the int8 variant")  # recipes built here have no check

    import onnxqa
    from onnxqa.evaluation import predict
    from onnxqa.export import ExportConfig, export
    from onnxqa.export._quantize import quantize_static_int8
    from onnxqa.squad import evaluate, restrict

    dataset, questions = squad(HELDOUT, args.questions)
    dataset = restrict(dataset, {q.id for q in questions})
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="onnxqa-fidelity-") as tmp:
        base = Path(tmp) / "ref"
        export(str(SHARED / "models" / "minilm-l6-squad-ref"), base, ExportConfig(precisions=("fp32",), progress=False))
        with onnxqa.load(base, device="cpu", precision="fp32") as qa:
            ref, _ = predict(qa, questions, v2=True, batch_size=64, progress=False)
        f1 = evaluate(dataset, ref)["f1"]
        rows["fp32"] = {"f1": f1, "same_as_fp32": 1.0, "no_answer": sum(not t for t in ref.values())}
        print(f"fp32: F1 {f1:.2f}", flush=True)
        for name in args.recipes:
            options, pairs = recipes()[name]
            t0 = time.perf_counter()

            def build(fp32: Path, out: Path, feeds: list, options: dict[str, Any] = options) -> None:
                quantize_static_int8(fp32, out, feeds, **options)

            model_dir, precision = int8_variants._build(base, Path(tmp), name, build, "generated", pairs)
            with onnxqa.load(model_dir, device="cpu", precision=precision) as qa:
                preds, _ = predict(qa, questions, v2=True, batch_size=64, progress=False)
            score = evaluate(dataset, preds)["f1"]
            same = sum(preds[k] == ref[k] for k in ref) / len(ref)
            rows[name] = {"f1": score, "same_as_fp32": same, "no_answer": sum(not t for t in preds.values())}
            print(
                f"{name}: F1 {score:.2f} ({score - f1:+.2f}), answers as fp32's {same:.2%}, no answer "
                f"{rows[name]['no_answer']} (fp32 {rows['fp32']['no_answer']}) ({time.perf_counter() - t0:.0f} s)",
                file=sys.stdout,
                flush=True,
            )
    from onnxqa.bench import machine_facts

    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps({"machine": machine_facts(), "questions": len(questions), "recipes": rows}, indent=2))


if __name__ == "__main__":
    main()
