"""Each CPU backend's answers on the trained reference model: accuracy and batch invariance.

    python benchmarks/backends.py                  # all 5,795 held-out questions (about 15 minutes on 2 cores)
    python benchmarks/backends.py --questions 500
    python benchmarks/backends.py --int8 static-ffn-fp32 --precisions fp32 int8   # another int8 recipe

The reference model is exported as a user would (`--precision fp32,int8,openvino-int8`, int8 of
both backends calibrated on the bundled generated pairs, the default). For each variant: EM / F1
with the official SQuAD 2.0 metric (``handle_impossible_answer=True``) on the first N held-out
questions, answered one window per call, and batch invariance: the share of those questions whose
answers (every span, with its score, and the no-answer score) are identical with 64 windows per
call. Writes benchmarks/results/backends-<machine>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import HELDOUT, REFERENCE, RESULTS, log, machine_name, squad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=None, help="held-out questions (default: all)")
    ap.add_argument(
        "--int8", default="static", choices=("static", "static-ffn-fp32", "dynamic"), help="the exporter's int8 method"
    )
    ap.add_argument(
        "--precisions", nargs="+", default=["fp32", "int8", "openvino-int8"], help="variants to export and score"
    )
    args = ap.parse_args()
    if "fp32" not in args.precisions:
        ap.error("--precisions must include fp32: every variant is compared with it")

    import onnxqa
    from onnxqa.bench import machine_facts
    from onnxqa.export import ExportConfig, export
    from onnxqa.squad import evaluate, restrict

    dataset, questions = squad(HELDOUT, args.questions)
    dataset = restrict(dataset, {q.id for q in questions})
    pairs = [(q.question, q.context) for q in questions]
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="onnxqa-backends-") as tmp:
        model = Path(tmp) / "reference"
        log(f"exporting the reference model: {', '.join(args.precisions)} (int8: {args.int8})")
        config = ExportConfig(precisions=tuple(args.precisions), int8=args.int8, progress=False)
        export(str(REFERENCE), model, config)
        checks = json.loads((model / "onnxqa.json").read_text())["variants"]
        for precision in args.precisions:
            with onnxqa.load(model, device="cpu", precision=precision) as qa:
                t0 = time.perf_counter()
                one = qa.batch_with_null(pairs, batch_size=1, handle_impossible_answer=True)
                seconds = time.perf_counter() - t0
                many = qa.batch_with_null(pairs, batch_size=64, handle_impossible_answer=True)
            preds = {q.id: (answers[0].text if answers else "") for q, (answers, _) in zip(questions, one)}
            scores = evaluate(dataset, preds)
            same = sum(a == b for a, b in zip(one, many))
            rows[precision] = {
                "exact": scores["exact"],
                "f1": scores["f1"],
                "batch_invariant": same / len(pairs),
                "questions_per_s": len(pairs) / seconds,
                "check": {k: checks[precision]["validation"].get(k) for k in ("status", "agreement", "mean_rel_diff")},
            }
            log(
                f"{precision}: EM {scores['exact']:.2f} F1 {scores['f1']:.2f}, "
                f"identical with 64 per call {same}/{len(pairs)}"
            )
    result = {
        "machine": machine_facts(),
        "date": time.strftime("%Y-%m-%d"),
        "questions": len(pairs),
        "int8": args.int8,
        "variants": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.int8 == "static" else f"-{args.int8}"
    path = RESULTS / f"backends-{machine_name(result['machine'])}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    fp32 = rows["fp32"]["f1"]
    print("| variant | EM | F1 | ΔF1 vs fp32 | answers identical, 64 windows per call vs 1 |", file=sys.stdout)
    print("|---|---:|---:|---:|---:|")
    for precision, r in rows.items():
        print(
            f"| {precision} | {r['exact']:.2f} | {r['f1']:.2f} | {r['f1'] - fp32:+.2f} | {r['batch_invariant']:.2%} |"
        )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
