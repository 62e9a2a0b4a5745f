"""How to quantize to int8: EM/F1 of int8 variants of the trained reference model against fp32.

    python benchmarks/int8_variants.py [--questions 1200]

Exports the reference model, builds the candidate int8 graphs from its optimized fp32 graph, and
scores each with the official SQuAD 2.0 metric on the first N questions of the held-out articles
(``handle_impossible_answer=True``), with its questions/s on this CPU. The shipped choice is the
one `onnxqa export` makes (``quantize_int8``). Writes benchmarks/results/int8-variants.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=1200)
    args = ap.parse_args()

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import onnxqa
    from onnxqa._manifest import sha256_file
    from onnxqa.evaluation import predict
    from onnxqa.export import ExportConfig, export
    from onnxqa.export._exporter import quantize_int8
    from onnxqa.squad import evaluate, load_squad, restrict

    logging.getLogger().setLevel(logging.ERROR)
    dataset, questions = load_squad(SHARED / "data" / "squad" / "dev-v2.0.reference-heldout.json")
    questions = questions[: args.questions]
    dataset = restrict(dataset, {q.id for q in questions})
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "ref"
        export(str(SHARED / "models" / "minilm-l6-squad-ref"), base, ExportConfig(precisions=("fp32",), progress=False))
        fp32 = base / "model.fp32.onnx"

        def dynamic(per_channel: bool):
            def build(out: Path) -> None:
                quantize_dynamic(
                    fp32,
                    out,
                    per_channel=per_channel,
                    weight_type=QuantType.QInt8,
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )

            return build

        variants = {
            "fp32 (reference)": None,
            "int8 dynamic, per-tensor weights": dynamic(False),
            "int8 dynamic, per-channel weights": dynamic(True),
            "int8 dynamic, per-channel, FFN output in fp32 (shipped)": lambda out: quantize_int8(fp32, out),
        }
        for name, build in variants.items():
            model_dir, precision = base, "fp32"
            if build is not None:
                model_dir, precision = Path(tmp) / f"v{len(rows)}", "int8"
                shutil.copytree(base, model_dir)
                build(model_dir / "model.int8.onnx")
                manifest = json.loads((model_dir / "onnxqa.json").read_text())
                manifest["variants"]["int8"] = {
                    "file": "model.int8.onnx",
                    "sha256": sha256_file(model_dir / "model.int8.onnx"),
                }
                (model_dir / "onnxqa.json").write_text(json.dumps(manifest))
            qa = onnxqa.load(model_dir, device="cpu", precision=precision)
            t0 = time.perf_counter()
            preds, _ = predict(qa, questions, v2=True, progress=False)
            seconds = time.perf_counter() - t0
            s = evaluate(dataset, preds)
            rows[name] = {
                "exact": s["exact"],
                "f1": s["f1"],
                "questions_per_s": len(questions) / seconds,
                "bytes": (model_dir / ("model.int8.onnx" if build else "model.fp32.onnx")).stat().st_size,
            }
            print(
                f"{name}: EM {s['exact']:.2f} F1 {s['f1']:.2f} {rows[name]['questions_per_s']:.1f} q/s",
                file=sys.stderr,
                flush=True,
            )
    out = {"questions": len(questions), "variants": rows}
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "int8-variants.json").write_text(json.dumps(out, indent=2))
    ref = rows["fp32 (reference)"]["f1"]
    print(f"| variant ({len(questions)} held-out questions) | EM | F1 | ΔF1 vs fp32 | questions/s | size |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['exact']:.2f} | {r['f1']:.2f} | {r['f1'] - ref:+.2f} | {r['questions_per_s']:.1f} | "
            f"{r['bytes'] / 2**20:.1f} MiB |"
        )


if __name__ == "__main__":
    main()
