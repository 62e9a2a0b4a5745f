"""Embedded throughput by batch size: ``qa.batch()`` questions/s over SQuAD 2.0 dev questions.

    python benchmarks/batch_sizes.py MODEL_DIR [--precision int8] [--batch-size 1,2,4,8,16] [--output FILE]

Each batch size is timed ``--rounds`` times, the sizes interleaved round by round so that a slow
spell of the machine falls on all of them alike; reports the median and the spread (min–max) per
size, and the share of questions whose answers (spans, scores to 1e-4) equal those of the first
size. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import onnxqa
from common import squad_pairs
from onnxqa.bench import machine_facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--batch-size", default="1,2,4,8,16")
    ap.add_argument("--questions", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--output", help="also write the JSON here")
    args = ap.parse_args()

    sizes = [int(b) for b in args.batch_size.split(",")]
    pairs = squad_pairs(args.questions)
    qa = onnxqa.load(args.model_dir, device="cpu", precision=args.precision)
    qa.batch(pairs[:64])
    rates: dict[int, list[float]] = {b: [] for b in sizes}
    answers = {}
    for _ in range(args.rounds):
        for b in sizes:
            t = time.perf_counter()
            got = qa.batch(pairs, batch_size=b)
            rates[b].append(len(pairs) / (time.perf_counter() - t))
            answers[b] = [[(a.text, a.start, a.end, round(a.score, 4)) for a in ans] for ans in got]
    same = {b: sum(x == y for x, y in zip(answers[b], answers[sizes[0]])) / len(pairs) for b in sizes}
    result = {
        "machine": machine_facts(),
        "model_dir": str(args.model_dir),
        "precision": qa.precision,
        "questions": len(pairs),
        "rounds": args.rounds,
        "questions_per_s": {
            b: {"median": round(statistics.median(r), 1), "min": round(min(r), 1), "max": round(max(r), 1)}
            for b, r in rates.items()
        },
        f"answers_equal_to_batch_size_{sizes[0]}": same,
    }
    text = json.dumps(result, indent=1)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
