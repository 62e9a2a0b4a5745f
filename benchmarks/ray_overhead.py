"""The overhead of Ray Data against in-process `onnxqa batch`, on the same machine and threads.

    python benchmarks/ray_overhead.py [--limit N] [--model-dir DIR] [--precision auto]
                                      [--actors 2] [--threads-per-actor 1] [--repeats 1]

Writes every question of the SQuAD 2.0 dev set (11,873; ``--limit`` for fewer) as JSONL, then
answers it with the in-process job (``threads = actors x threads_per_actor`` onnxruntime threads)
and with ``onnxqa batch --ray`` on a local Ray of ``actors x threads_per_actor`` CPUs (actors of
``threads_per_actor`` threads), alternating ``--repeats`` times. Both include loading the model;
Ray's own start-up (``ray.init``) is reported apart. The two outputs must be byte-identical: every
row's answer, score and offsets. Writes ``benchmarks/results/ray-overhead.json`` and prints a
markdown table. The model defaults to bert-tiny with random weights, exported into a temporary
directory (``--model-dir`` to choose another).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnxqa
from common import ROOT, SHARED, SQUAD_DEV
from onnxqa.batch import InProcess, OnRay, run_batch
from onnxqa.bench import machine_facts


def export_tiny(work: Path) -> Path:
    from onnxqa.export import ExportConfig, export, random_checkpoint

    checkpoint = random_checkpoint(SHARED / "seeds" / "bert-tiny-finetuned-squadv2", work / "ckpt", seed=0)
    out = work / "bert-tiny"
    export(str(checkpoint), out, ExportConfig(precisions=("fp32", "int8"), progress=False))
    return out


def write_questions(data: Path, limit: int | None, path: Path) -> int:
    squad = json.loads(data.read_text(encoding="utf-8"))
    rows = [
        {"id": q["id"], "question": q["question"], "context": p["context"]}
        for a in squad["data"]
        for p in a["paragraphs"]
        for q in p["qas"]
    ][:limit]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def differing_rows(a: Path, b: Path) -> int:
    keys = ("id", "answer", "score", "start", "end", "is_impossible", "error")
    left = [json.loads(line) for line in a.read_text(encoding="utf-8").splitlines()]
    right = [json.loads(line) for line in b.read_text(encoding="utf-8").splitlines()]
    if len(left) != len(right):
        return abs(len(left) - len(right)) + sum(1 for x, y in zip(left, right) if x != y)
    return sum(1 for x, y in zip(left, right) if any(x.get(k) != y.get(k) for k in keys))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SQUAD_DEV)
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions (default: all)")
    ap.add_argument("--model-dir", type=Path, default=None, help="default: bert-tiny, random weights, exported here")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--threads-per-actor", type=int, default=1)
    ap.add_argument("--chunk-rows", type=int, default=256, help="rows per chunk (in-process) and per Ray batch")
    ap.add_argument("--repeats", type=int, default=1, help="alternating runs of each engine (default: 1)")
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "ray-overhead.json")
    args = ap.parse_args()

    import ray

    threads = args.actors * args.threads_per_actor
    with tempfile.TemporaryDirectory(prefix="onnxqa-ray-bench-") as tmp:
        work = Path(tmp)
        model_dir = args.model_dir or export_tiny(work)
        source = work / "questions.jsonl"
        rows = write_questions(args.data, args.limit, source)
        qa = onnxqa.load(model_dir, device="cpu", precision=args.precision)
        precision = qa.precision
        del qa
        common = {"chunk_rows": args.chunk_rows, "progress": False, "options": {"handle_impossible_answer": True}}
        local_backend = InProcess(device="cpu", precision=precision, threads=threads)
        ray_backend = OnRay(
            actors=args.actors, threads_per_actor=args.threads_per_actor, device="cpu", precision=precision
        )

        t0 = time.perf_counter()
        ray.init(num_cpus=threads, include_dashboard=False, configure_logging=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
        runs: dict[str, list[float]] = {"in-process": [], "ray": []}
        try:
            for r in range(args.repeats):
                local = run_batch(model_dir, source, work / f"local-{r}.jsonl", backend=local_backend, **common)
                runs["in-process"].append(local.seconds)
                print(f"in-process run {r + 1}: {local.seconds:.1f} s", file=sys.stderr)
                remote = run_batch(model_dir, source, work / f"ray-{r}.jsonl", backend=ray_backend, **common)
                runs["ray"].append(remote.seconds)
                print(f"Ray run {r + 1}: {remote.seconds:.1f} s", file=sys.stderr)
                assert local.answered == remote.answered == rows
        finally:
            ray.shutdown()
        different = [differing_rows(work / f"local-{r}.jsonl", work / f"ray-{r}.jsonl") for r in range(args.repeats)]
        identical = all(
            (work / f"local-{r}.jsonl").read_bytes() == (work / f"ray-{r}.jsonl").read_bytes()
            for r in range(args.repeats)
        )

    local_s, ray_s = statistics.median(runs["in-process"]), statistics.median(runs["ray"])
    cpu = machine_facts()["cpu"]
    result = {
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": __import__("onnxruntime").__version__,
            "ray": ray.__version__,
        },
        "model_dir": str(args.model_dir) if args.model_dir else "bert-tiny-finetuned-squadv2 (random weights)",
        "precision": precision,
        "questions": rows,
        "actors": args.actors,
        "threads_per_actor": args.threads_per_actor,
        "in_process_threads": threads,
        "chunk_rows": args.chunk_rows,
        "ray_start_s": ray_start,
        "seconds": runs,
        "questions_per_s": {"in-process": rows / local_s, "ray": rows / ray_s},
        "per_actor_questions_per_s": rows / ray_s / args.actors,
        "overhead": ray_s / local_s - 1,
        "target_overhead": 0.15,
        "identical_outputs": identical,
        "rows_differing": different,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{cpu}, {os.cpu_count()} cores; {rows} questions, {precision}; raw: {args.output}")
    print()
    print("| engine | threads | seconds (median) | questions/s | overhead vs in-process | rows differing |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| in-process `onnxqa batch` | {threads} | {local_s:.1f} | {rows / local_s:.1f} | – | – |")
    print(
        f"| Ray Data, {args.actors} actors × {args.threads_per_actor} | {threads} | {ray_s:.1f} | "
        f"{rows / ray_s:.1f} | {100 * result['overhead']:+.1f}% | {max(different)} |"
    )
    print(f"\nRay start-up (ray.init, not in the times above): {ray_start:.1f} s")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
