"""Soak test: many calls of varied length on one QuestionAnswerer; resident memory must stay flat.

    python benchmarks/soak.py MODEL_DIR [--calls 20000] [--arena on|off] [--huge]

Reports resident memory (RSS) after warm-up and every 2,000 calls, and with --huge also the
time and peak memory of single 1 MB and 10 MB contexts. Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import sys
import time

import psutil

import onnxqa
from common import SQUAD_DEV


def rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--arena", choices=["on", "off"], default="on")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--huge", action="store_true", help="also answer over 1 MB and 10 MB contexts")
    args = ap.parse_args()

    data = json.loads(SQUAD_DEV.read_text())
    qs = [(qa["question"], p["context"]) for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]]
    rng = random.Random(0)
    contexts = [c for _, c in qs]

    def pair(i: int) -> tuple[str, str]:
        q, c = qs[i % len(qs)]
        kind = i % 10
        if kind == 0:  # several paragraphs: multi-window
            c = " ".join(rng.sample(contexts, 4))
        elif kind == 1:  # a short snippet
            c = c[: rng.randint(20, 120)] or c
        return q, c

    qa = onnxqa.load(args.model_dir, device="cpu", precision=args.precision, arena=args.arena == "on")
    t0 = time.perf_counter()
    for i in range(500):
        qa(*pair(i))
    gc.collect()
    base = rss_mb()
    samples = [(0, base)]
    print(f"after 500 warm-up calls: RSS {base:.1f} MiB", file=sys.stderr)
    errors = 0
    for i in range(args.calls):
        try:
            answers = qa(*pair(i + 500), top_k=1 + i % 3, handle_impossible_answer=bool(i % 2))
            assert answers
        except Exception as exc:  # a soak counts errors instead of stopping
            errors += 1
            print(f"call {i}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if (i + 1) % 2000 == 0:
            gc.collect()
            samples.append((i + 1, rss_mb()))
            print(f"{i + 1:>6} calls: RSS {samples[-1][1]:.1f} MiB", file=sys.stderr)
    seconds = time.perf_counter() - t0
    result = {
        "model_dir": args.model_dir,
        "precision": args.precision,
        "arena": args.arena,
        "calls": args.calls,
        "errors": errors,
        "seconds": round(seconds, 1),
        "rss_after_warmup_mb": round(base, 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "growth_mb": round(samples[-1][1] - base, 1),
        "growth_second_half_mb": round(samples[-1][1] - samples[len(samples) // 2][1], 1),
        "samples": samples,
    }
    if args.huge:
        sentence = "The Harlow Bridge, designed by Margaret Ellison, opened in 1931 and spans 412 metres. "
        for mb in (1, 10):
            context = sentence * (mb * 1_000_000 // len(sentence))
            t = time.perf_counter()
            answers = qa("Who designed the bridge?", context)
            assert context[answers[0].start : answers[0].end] == answers[0].text
            result[f"context_{mb}mb_seconds"] = round(time.perf_counter() - t, 1)
            result[f"context_{mb}mb_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
