"""An export over 2 GB, end to end: XLM-RoBERTa large's published architecture (24 layers, hidden
1024, 250,002 pieces: 560M parameters, 2.2 GB in fp32) with random weights, exported with fp32 and
int8, then loaded and asked a question; corrupting the external-data file must make loading fail.

    python benchmarks/large_export.py                      # ~6 minutes and ~20 GB of memory on 2 cores
    python benchmarks/large_export.py --check-pairs 20 --calibration-pairs 20

Writes benchmarks/results/large-export.json (files, sizes, seconds, peak memory).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, SHARED, log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-pairs", type=int, default=20, help="generated pairs of the int8 check (default 20)")
    ap.add_argument("--calibration-pairs", type=int, default=20, help="int8 calibration pairs (default 20)")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the benchmark needs the SQuAD data for the tokenizer in ../shared")
    sys.path.insert(0, str(ROOT / "tests"))
    import onnxqa
    from onnxqa.bench import machine_facts
    from onnxqa.export import ExportConfig, export

    from families import CONFIGS, build_checkpoint

    CONFIGS["xlm-roberta-large"] = {
        **CONFIGS["xlm-roberta-base"],
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
    }
    result: dict = {"machine": machine_facts(), "date": time.strftime("%Y-%m-%d"), "settings": vars(args)}
    with tempfile.TemporaryDirectory(prefix="onnxqa-large-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        checkpoint = build_checkpoint(
            "xlm-roberta", SHARED, work / "ckpt", layers=None, full_vocab=True, config_name="xlm-roberta-large"
        )
        result["checkpoint_seconds"] = time.perf_counter() - t0
        log(f"checkpoint in {result['checkpoint_seconds']:.0f} s")
        t0 = time.perf_counter()
        config = ExportConfig(check_pairs=args.check_pairs, calibration_pairs=args.calibration_pairs)
        manifest = export(str(checkpoint), work / "model", config)
        result["export_seconds"] = time.perf_counter() - t0
        result["files"] = {p.name: p.stat().st_size for p in sorted((work / "model").iterdir())}
        result["variants"] = {
            name: {
                "external_data": v.get("external_data"),
                "validation": {k: v["validation"].get(k) for k in ("status", "max_abs_diff", "agreement")},
            }
            for name, v in manifest["variants"].items()
        }
        result["rejected"] = manifest.get("rejected", {})  # variants that failed their check, and why
        log(json.dumps(result["files"]))
        t0 = time.perf_counter()
        qa = onnxqa.load(work / "model", device="cpu")
        best = qa("Who designed the bridge?", "The Harlow Bridge was designed by Margaret Ellison in 1931.")[0]
        result["load_and_answer_seconds"] = time.perf_counter() - t0
        result["answer"] = {"text": best.text, "start": best.start, "end": best.end, "precision": qa.precision}
        qa.close()
        data = work / "model" / manifest["variants"]["fp32"]["external_data"][0]["file"]
        with open(data, "r+b") as f:
            f.seek(data.stat().st_size // 2)
            f.write(b"\xff\xfe\xfd\xfc")
        try:
            onnxqa.load(work / "model", device="cpu", precision="fp32")
            result["altered_data_refused"] = False
        except onnxqa.ModelLoadError as exc:
            result["altered_data_refused"] = str(exc)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "large-export.json").write_text(json.dumps(result, indent=2))
    log(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
