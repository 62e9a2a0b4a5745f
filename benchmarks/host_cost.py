"""Host-side cost per question: where a question's CPU time goes besides the model.

    python benchmarks/host_cost.py MODEL_DIR [--precision fp32] [--questions 2000] [--batch-size 1,16]

Runs the runtime's own stages one after the other over the first N questions of SQuAD 2.0 dev,
with one onnxruntime thread and the tokenizer's parallelism off, and reports the CPU time of each
(``time.process_time``: CPU seconds of this process, so a busy machine inflates it less than wall
time) per question: tokenize and cut windows, pad and run the model, decode spans (the vectorized
span search and the token -> character mapping), merge answers. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import onnxqa  # noqa: E402
from onnxqa.runtime._decode import best_spans_batch, spans_to_chars  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def squad_pairs(n: int) -> list[tuple[str, str]]:
    data = json.loads((SHARED / "data" / "squad" / "dev-v2.0.json").read_text(encoding="utf-8"))
    pairs = [(q["question"], p["context"]) for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]
    return pairs[:n]


def host_cost(qa: Any, pairs: list[tuple[str, str]], batch_size: int) -> dict[str, Any]:
    """CPU milliseconds per question of each stage, and the wall-clock questions/s of all of them."""
    opts = qa._options({"batch_size": batch_size})
    k = opts.top_k * 2 + 10
    spent = dict.fromkeys(("tokenize", "model", "decode_spans", "decode_chars", "merge"), 0.0)
    wall = time.perf_counter()
    for first in range(0, len(pairs), 256):
        t = time.process_time()
        request = qa._prepare_pairs(pairs[first : first + 256], opts)
        spent["tokenize"] += time.process_time() - t
        windows = request.windows
        order = sorted(range(len(windows)), key=lambda i: windows[i].input_ids.shape[0])
        decoded: list[Any] = [None] * len(windows)
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            t = time.process_time()
            start, end, allowed = qa._run([windows[i] for i in rows])
            t2 = time.process_time()
            spans = best_spans_batch(start, end, allowed, k=k, max_answer_len=opts.max_answer_len)
            t3 = time.process_time()
            for i, found in zip(rows, spans):
                chars = spans_to_chars(windows[i].encoding, found.starts, found.ends, align_to_words=True)
                decoded[i] = (chars, found.scores, found.null_score)
            t4 = time.process_time()
            spent["model"] += t2 - t
            spent["decode_spans"] += t3 - t2
            spent["decode_chars"] += t4 - t3
        t = time.process_time()
        qa._assemble(request, decoded)
        spent["merge"] += time.process_time() - t
    wall = time.perf_counter() - wall
    per_question = {stage: round(1000 * seconds / len(pairs), 4) for stage, seconds in spent.items()}
    host = sum(v for stage, v in per_question.items() if stage != "model")
    return {
        "batch_size": batch_size,
        "cpu_ms_per_question": per_question,
        "host_cpu_ms_per_question": round(host, 4),
        "host_share": round(host / (host + per_question["model"]), 3),
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
