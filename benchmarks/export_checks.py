"""What the export's int8 check measures on the five seed architectures and the reference model.

    python benchmarks/export_checks.py                 # all (a few minutes on 2 cores)
    python benchmarks/export_checks.py --models bert-tiny-finetuned-squadv2

Exports each model (seeds with random weights, QA head std 1.0; the trained reference model as
it is) with the default check (the bundled pairs plus 200 generated ones) and prints the
manifest's int8 validation: answer agreement with fp32, mean and max relative logit difference,
against the limits in ``onnxqa.export._checks.LIMITS``. Writes benchmarks/results/export-checks.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

from common import ROOT, SEEDS, SHARED

REFERENCE = "minilm-l6-squad-ref"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=[*SEEDS, REFERENCE])
    args = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: the seeds and the reference model live in ../shared beside the repository")
    from onnxqa.export import ExportConfig, export, random_checkpoint

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            if name == REFERENCE:
                checkpoint = SHARED / "models" / REFERENCE
            else:
                checkpoint = random_checkpoint(SHARED / "seeds" / name, Path(tmp) / "ck" / name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                manifest = export(str(checkpoint), Path(tmp) / name, ExportConfig(progress=False))
            check = (manifest["variants"].get("int8") or manifest["rejected"]["int8"])["validation"]
            rows.append({"model": name, **check})
            print(f"{name}: {check['status']}", file=sys.stderr, flush=True)
    out = ROOT / "benchmarks" / "results" / "export-checks.json"
    out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print("| model | pairs | int8 answers = fp32 | mean rel. logit diff | max rel. logit diff | status |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['pairs']} | {r['answers_equal']} ({r['agreement']:.1%}) | "
            f"{r['mean_rel_diff']:.4f} | {r['max_rel_diff']:.3f} | {r['status']} |"
        )
    limits = rows[0]["limits"]
    print(f"\nlimits: agreement >= {limits['min_agreement']:.0%}, mean relative difference <= {limits['max_rel_diff']}")


if __name__ == "__main__":
    main()
