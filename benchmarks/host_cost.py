"""Host-side cost per question: where a question's time goes besides the model.

    python benchmarks/host_cost.py MODEL_DIR [--precision fp32] [--questions 2000] [--batch-size 1,16]

Runs ``qa.batch()`` over the first N questions of SQuAD 2.0 dev with one onnxruntime thread and the
tokenizer's parallelism off, so that every stage runs on this one thread, and reports the wall time
of each of the runtime's stages per question, as its stage listener reports them (see
``onnxqa.runtime.STAGES``): tokenize and cut windows, pad a call's inputs, the model, decode spans
(span search and the token -> character mapping), assemble each pair's answers. Also the CPU time
of the whole run (``time.process_time``: this process's CPU seconds, which a busy machine inflates
less than wall time) and the wall-clock questions/s. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import onnxqa  # noqa: E402
from common import squad_pairs, stage_seconds  # noqa: E402


def host_cost(qa: Any, pairs: list[tuple[str, str]], batch_size: int) -> dict[str, Any]:
    """Wall milliseconds per question of each stage, the CPU milliseconds per question of the whole
    run, and the wall-clock questions/s."""
    wall, cpu = time.perf_counter(), time.process_time()
    with stage_seconds(qa) as spent:
        qa.batch(pairs, batch_size=batch_size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per_question = {stage: round(1000 * seconds / len(pairs), 4) for stage, seconds in spent.items()}
    host = sum(v for stage, v in per_question.items() if stage != "model")
    return {
        "batch_size": batch_size,
        "wall_ms_per_question": per_question,
        "host_wall_ms_per_question": round(host, 4),
        "host_share": round(host / (host + per_question["model"]), 3),
        "cpu_ms_per_question": round(1000 * cpu / len(pairs), 4),
        "questions_per_s_wall": round(len(pairs) / wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--questions", type=int, default=2000)
    ap.add_argument("--batch-size", default="1,16", help="comma-separated windows per inference call")
    args = ap.parse_args()
    pairs = squad_pairs(args.questions)
    qa = onnxqa.load(args.model_dir, device="cpu", precision=args.precision, threads=1)
    qa.batch(pairs[:32])
    runs = [host_cost(qa, pairs, int(b)) for b in args.batch_size.split(",")]
    result = {"model_dir": args.model_dir, "precision": qa.precision, "questions": len(pairs), "runs": runs}
    print(json.dumps(result, indent=2))
    print("", file=sys.stderr)


if __name__ == "__main__":
    main()
