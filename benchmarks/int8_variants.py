"""How to quantize to int8: every variant tried, its accuracy, speed and batch invariance.

    python benchmarks/int8_variants.py                       # everything (see BENCHMARKS.md for the time)
    python benchmarks/int8_variants.py --questions 300 --speed-questions 20 --seeds bert-tiny-finetuned-squadv2
    python benchmarks/int8_variants.py --no-speed            # accuracy and batch invariance only

Accuracy: the trained reference model, each variant built from its optimized fp32 graph, scored
with the official SQuAD 2.0 metric on the first N questions of the held-out articles
(``handle_impossible_answer=True``; default: all 5,795). Batch invariance: the share of the first
M held-out questions whose answer (start, end) with ``batch_size=64`` equals ``batch_size=1``.
Speed: questions/s of ``batch()`` on the first K SQuAD 2.0 dev questions, all threads, on each seed
architecture (random weights), with effective GOP/s (encoder operations of the real tokens / wall
time) against the machine's measured int8 MatMul limit. Calibration never uses held-out data:
the bundled generated pairs (the exporter's default) or ``reference-train.json``.
Writes benchmarks/results/int8-variants.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import HELDOUT, ROOT, SEEDS, SHARED, architecture, matmul_peak, squad, squad_pairs, window_flops
from onnxqa.bench import machine_facts

Builder = Callable[[Path, Path, list], Any]  # (fp32 graph, int8 output, calibration feeds)
Variant = tuple[Builder | None, str, bool]


def _variants() -> dict[str, Variant]:
    """name -> (builder of model.int8.onnx, calibration set, speed measured): the variants tried."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from onnxqa.export._quantize import quantize_dynamic_int8, quantize_static_int8

    def dynamic(per_channel: bool) -> Builder:
        def build(fp32: Path, out: Path, feeds: list) -> None:
            quantize_dynamic(
                fp32,
                out,
                per_channel=per_channel,
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )

        return build

    def static(**options: Any) -> Builder:
        def build(fp32: Path, out: Path, feeds: list) -> None:
            quantize_static_int8(fp32, out, feeds, **options)

        return build

    def static_ffn_fp32(fp32: Path, out: Path, feeds: list) -> None:
        graph = onnx.load(fp32, load_external_data=False).graph
        gelu = {o for n in graph.node if n.op_type in ("Gelu", "BiasGelu", "FastGelu") for o in n.output}
        kept = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[0] in gelu]
        quantize_static_int8(fp32, out, feeds, smooth_alpha=None, keep_fp32=kept)

    # name: (builder, calibration set, measured for speed on the seeds)
    return {
        "fp32 (reference)": (None, "", True),
        "dynamic, per-tensor weights": (dynamic(False), "", False),
        "dynamic, per-channel weights": (dynamic(True), "", True),
        "dynamic, per-channel, FFN output in fp32 (--int8 dynamic)": (
            lambda fp32, out, feeds: quantize_dynamic_int8(fp32, out),
            "",
            True,
        ),
        "static, no smoothing, train calibration": (static(smooth_alpha=None), "train", True),
        "static, no smoothing, 7-bit weights, train calibration": (
            static(smooth_alpha=None, reduce_range=True),
            "train",
            False,
        ),
        "static, no smoothing, FFN output in fp32, train calibration": (static_ffn_fp32, "train", True),
        "static, no smoothing, generated calibration": (static(smooth_alpha=None), "generated", False),
        "static, SmoothQuant 0.5, train calibration": (static(smooth_alpha=0.5), "train", False),
        "static, SmoothQuant 0.8, train calibration (--calibration)": (static(), "train", False),
        "static, SmoothQuant 0.5, generated calibration": (static(smooth_alpha=0.5), "generated", False),
        "static, SmoothQuant 0.8, generated calibration (default)": (static(), "generated", True),
    }


def _calibration(model_dir: Path, which: str, n: int = 200) -> list:
    from onnxqa.export._checks import model_inputs
    from onnxqa.export._pairs import calibration_pairs
    from onnxqa.runtime._windows import Windower
    from onnxqa.squad import load_squad

    if which == "generated":
        pairs = calibration_pairs(n)
    else:
        import random

        questions = load_squad(SHARED / "data" / "squad" / "reference-train.json")[1]
        chosen = sorted(random.Random(0).sample(range(len(questions)), n))
        pairs = [(questions[i].question, questions[i].context) for i in chosen]
    manifest = json.loads((model_dir / "onnxqa.json").read_text())
    windower = Windower((model_dir / "tokenizer.json").read_text(), manifest["tokenizer"]["cls_token_id"])
    return model_inputs(windower, pairs, manifest["architecture"]["uses_token_type_ids"])


def _build(
    base: Path, where: Path, name: str, builder: Builder | None, calibration: str, calibration_pairs: int = 200
) -> tuple[Path, str]:
    """A model directory whose int8 variant is built by ``builder``; (directory, precision)."""
    from onnxqa._manifest import sha256_file

    if builder is None:
        return base, "fp32"
    model_dir = where / f"v{abs(hash(name)) % 10**8}"
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(base, model_dir)
    feeds = _calibration(base, calibration, calibration_pairs) if calibration else []
    builder(base / "model.fp32.onnx", model_dir / "model.int8.onnx", feeds)
    manifest = json.loads((model_dir / "onnxqa.json").read_text())
    method = "static" if calibration else "dynamic"
    manifest["variants"]["int8"] = {
        "file": "model.int8.onnx",
        "sha256": sha256_file(model_dir / "model.int8.onnx"),
        "quantization": {"method": method},
    }
    (model_dir / "onnxqa.json").write_text(json.dumps(manifest))
    return model_dir, "int8"


def _op_counts(path: Path) -> dict[str, int]:
    """Operator types onnxruntime runs after its own fusions (int8 kernels: QAttention,
    MatMulIntegerToFloat, DynamicQuantizeMatMul; fp32: MatMul, Attention)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(tmp) / "s.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        counts: dict[str, int] = {}
        for node in onnx.load(options.optimized_model_filepath).graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    keep = ("QAttention", "Attention", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulInteger", "MatMul")
    return {k: counts[k] for k in keep if k in counts}


def accuracy(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import onnxqa
    from onnxqa.evaluation import predict
    from onnxqa.export import ExportConfig, export
    from onnxqa.squad import evaluate, restrict

    dataset, questions = squad(HELDOUT, args.questions)
    dataset = restrict(dataset, {q.id for q in questions})
    pairs = [(q.question, q.context) for q in questions[: args.invariance_questions]]
    base = tmp / "ref"
    export(str(SHARED / "models" / "minilm-l6-squad-ref"), base, ExportConfig(precisions=("fp32",), progress=False))
    rows = {}
    for name, (builder, calibration, _) in _variants().items():
        model_dir, precision = _build(base, tmp, name, builder, calibration)
        qa = onnxqa.load(model_dir, device="cpu", precision=precision)
        preds, _ = predict(qa, questions, v2=True, progress=False)
        s = evaluate(dataset, preds)
        one = qa.batch(pairs, batch_size=1, handle_impossible_answer=True)
        many = qa.batch(pairs, batch_size=64, handle_impossible_answer=True)
        same = sum((a[0].start, a[0].end) == (b[0].start, b[0].end) for a, b in zip(one, many)) / len(pairs)
        file = model_dir / f"model.{precision}.onnx"
        rows[name] = {"exact": s["exact"], "f1": s["f1"], "batch_invariance": same, "bytes": file.stat().st_size}
        rows[name]["ops"] = _op_counts(file)
        print(f"{name}: F1 {s['f1']:.2f}, bs64 = bs1 on {same:.1%}", file=sys.stderr, flush=True)
    # int8 kernels differ between CPUs (AVX2 alone, AVX-512 VNNI, AMX): record which one ran them
    return {
        "machine": machine_facts(),
        "questions": len(questions),
        "invariance_questions": len(pairs),
        "variants": rows,
    }


def speed(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import onnxqa
    from onnxqa.export import ExportConfig, export, random_checkpoint

    pairs = squad_pairs(args.speed_questions)
    peak = matmul_peak("int8")
    out: dict[str, Any] = {
        "machine": machine_facts(),
        "int8_matmul_gops": peak,
        "questions": len(pairs),
        "calibration_pairs": args.speed_calibration_pairs,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "seeds": {},
    }
    for seed in args.seeds:
        ckpt = random_checkpoint(SHARED / "seeds" / seed, tmp / "ckpt" / seed, seed=0)
        base = tmp / "seed" / seed
        export(str(ckpt), base, ExportConfig(precisions=("fp32",), progress=False))
        arch = architecture(ckpt)
        rows = {}
        for name, (builder, calibration, timed) in _variants().items():
            if not timed:
                continue
            model_dir, precision = _build(base, tmp, name, builder, calibration, args.speed_calibration_pairs)
            qa = onnxqa.load(model_dir, device="cpu", precision=precision)
            lengths = qa.window_lengths(pairs, max_seq_len=384, doc_stride=128, max_question_len=64)
            flops = sum(window_flops(arch, n) for n in lengths)
            qa.batch(pairs[:8])
            t0 = time.perf_counter()
            qa.batch(pairs)
            seconds = time.perf_counter() - t0
            rows[name] = {"questions_per_s": len(pairs) / seconds, "gops": flops / seconds / 1e9}
            rows[name]["of_int8_peak"] = rows[name]["gops"] / peak
            qa.close()  # one live session at a time: earlier ones must not share the cores or the caches
            del qa
            print(f"{seed} {name}: {rows[name]['questions_per_s']:.1f} q/s", file=sys.stderr, flush=True)
        out["seeds"][seed] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=5795, help="held-out questions for F1 (default: all)")
    ap.add_argument("--invariance-questions", type=int, default=1000)
    ap.add_argument("--speed-questions", type=int, default=200)
    ap.add_argument(
        "--speed-calibration-pairs",
        type=int,
        default=200,
        help="calibration pairs of the static variants timed for speed (default 200; the scales they find "
        "do not change the kernels' work, so fewer give the same speed in less time)",
    )
    ap.add_argument("--seeds", nargs="+", default=list(SEEDS))
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "int8-variants.json"))
    ap.add_argument("--tables", action="store_true", help="print the tables of the saved results; measure nothing")
    args = ap.parse_args()
    output = Path(args.output)
    if args.tables:
        print_tables(json.loads(output.read_text()))
        return
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="using the int8 variant")  # variants built here have no check

    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_accuracy:
            result["accuracy"] = accuracy(args, Path(tmp))
        if not args.no_speed:
            result["speed"] = speed(args, Path(tmp))
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():  # a run of one part keeps the other part's earlier results
        result = {**json.loads(output.read_text()), **result}
    output.write_text(json.dumps(result, indent=2))
    print_tables(result)


def print_tables(result: dict[str, Any]) -> None:
    if "accuracy" in result:
        acc = result["accuracy"]
        ref = acc["variants"]["fp32 (reference)"]["f1"]
        print(f"| variant ({acc['questions']} held-out questions) | EM | F1 | ΔF1 vs fp32 | bs 64 = bs 1 | ops run |")
        print("|---|---:|---:|---:|---:|---|")
        for name, r in acc["variants"].items():
            ops = ", ".join(f"{k} {v}" for k, v in r["ops"].items())
            print(
                f"| {name} | {r['exact']:.2f} | {r['f1']:.2f} | {r['f1'] - ref:+.2f} | "
                f"{r['batch_invariance']:.1%} | {ops} |"
            )
    if "speed" in result:
        sp = result["speed"]
        print(f"\nint8 MatMul limit: {sp['int8_matmul_gops']:.1f} GOP/s; {sp['questions']} SQuAD 2.0 dev questions")
        print("| seed | variant | questions/s | × fp32 | × `--int8 dynamic` | eff. GOP/s | % of int8 limit |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for seed, rows in sp["seeds"].items():
            fp32 = rows["fp32 (reference)"]["questions_per_s"]
            dynamic = next(r["questions_per_s"] for name, r in rows.items() if "--int8 dynamic" in name)
            for name, r in rows.items():
                print(
                    f"| {seed} | {name} | {r['questions_per_s']:.1f} | {r['questions_per_s'] / fp32:.2f} | "
                    f"{r['questions_per_s'] / dynamic:.2f} | {r['gops']:.1f} | {r['of_int8_peak']:.0%} |"
                )


if __name__ == "__main__":
    main()
