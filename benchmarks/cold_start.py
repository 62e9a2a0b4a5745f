"""Cold start, file sizes and memory of exported model directories, each in fresh processes.

    python benchmarks/cold_start.py MODEL_DIR [MODEL_DIR ...] [--runs 11] [--precision int8]

For each directory and precision: ``--runs`` fresh Python processes (after one unmeasured run, so
the files are in the OS cache, as for a restarted server) each time ``import onnxqa``, then
``onnxqa.load()``, then the first answer, and report the median and range of each; the load split
into reading and hashing the files, parsing the tokenizer and creating the onnxruntime session (a
separate process, timing the same steps by hand); the variant's file size against fp32's; resident
memory (RSS) after the first answer; with ``--serve-workers N``, also the summed RSS of
``onnxqa serve --workers N`` (the server and its worker processes) after one answered request.
Writes ``benchmarks/results/cold-start-<machine>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path

from common import RESULTS, Connection, free_port, log, machine_name, start_server, wait_ready

_ONE_RUN = r"""
import json, sys, time
t0 = time.perf_counter()
import onnxqa
t1 = time.perf_counter()
qa = onnxqa.load(sys.argv[1], device="cpu", precision=sys.argv[2])
t2 = time.perf_counter()
qa("Who wrote the report?", "The report was written by Ada Lovelace in 1843 for the society.")
t3 = time.perf_counter()
rss = 0
with open("/proc/self/status") as f:
    for line in f:
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first_answer": t3 - t2, "load_and_first": t3 - t1,
                  "rss_bytes": rss}))
"""

_PARTS = r"""
import hashlib, json, sys, time
from pathlib import Path
import onnxruntime as ort
import tokenizers
d, precision = Path(sys.argv[1]), sys.argv[2]
manifest = json.loads((d / "onnxqa.json").read_text())
t0 = time.perf_counter()
data = (d / manifest["variants"][precision]["file"]).read_bytes()
t1 = time.perf_counter()
hashlib.sha256(data).hexdigest()
t2 = time.perf_counter()
tokenizers.Tokenizer.from_str((d / manifest["tokenizer"]["file"]).read_text(encoding="utf-8"))
t3 = time.perf_counter()
options = ort.SessionOptions()
options.inter_op_num_threads = 1
options.enable_mem_pattern = False
ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
t4 = time.perf_counter()
print(json.dumps({"read_graph": t1 - t0, "hash_graph": t2 - t1, "parse_tokenizer": t3 - t2, "create_session": t4 - t3}))
"""


def _runs(code: str, model_dir: Path, precision: str, runs: int) -> list[dict[str, float]]:
    out = []
    for i in range(runs + 1):
        done = subprocess.run(
            [sys.executable, "-c", code, str(model_dir), precision], capture_output=True, text=True, check=True
        )
        if i:  # the first run brings the files into the OS cache
            out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def _summary(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        key: {
            "median": statistics.median(r[key] for r in runs),
            "min": min(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in runs[0]
    }


def _served_rss(model_dir: Path, precision: str, workers: int) -> float:
    """Bytes resident in ``onnxqa serve --workers N`` (all its processes) after one answer."""
    import psutil

    port = free_port()
    proc = start_server(model_dir, precision, port, ["--workers", str(workers)])
    try:
        asyncio.run(wait_ready(port, proc))

        async def ask() -> int:
            conn = await Connection.open("127.0.0.1", port)
            body = json.dumps({"question": "Who wrote it?", "context": "It was written by Ada Lovelace."})
            status, _ = await conn.request("POST", "/v1/answer", body.encode())
            conn.close()
            return status

        for _ in range(2 * workers):  # so that each worker has answered, most likely
            assert asyncio.run(ask()) == 200
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        return float(sum(p.memory_info().rss for p in tree))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("--precision", nargs="+", default=["int8"])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--serve-workers", type=int, default=0, help="also measure onnxqa serve --workers N")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from onnxqa.bench import machine_facts

    facts = machine_facts()
    results = []
    for model_dir in args.model_dirs:
        manifest = json.loads((model_dir / "onnxqa.json").read_text())
        variants = manifest["variants"]
        fp32_bytes = variants["fp32"]["bytes"] if "fp32" in variants else None
        for precision in args.precision:
            log(f"{model_dir.name} {precision}: {args.runs} fresh processes")
            variant = variants[precision]
            size = variant["bytes"] + sum(part["bytes"] for part in variant.get("external_data", []))
            entry = {
                "model": model_dir.name,
                "precision": precision,
                "bytes": size,  # graph and weights files
                "bytes_vs_fp32": size / fp32_bytes if fp32_bytes else None,
                "seconds": _summary(_runs(_ONE_RUN, model_dir, precision, args.runs)),
            }
            if "backend" not in variant:  # the parts of an onnxruntime load
                entry["load_parts"] = _summary(_runs(_PARTS, model_dir, precision, max(3, args.runs // 2)))
            if args.serve_workers:
                entry["serve_workers"] = args.serve_workers
                entry["serve_rss_bytes"] = _served_rss(model_dir, precision, args.serve_workers)
            s = entry["seconds"]
            log(
                f"  load + first answer {s['load_and_first']['median'] * 1000:.0f} ms (median; "
                f"{s['load_and_first']['min'] * 1000:.0f}-{s['load_and_first']['max'] * 1000:.0f}), "
                f"import {s['import']['median'] * 1000:.0f} ms, RSS {s['rss_bytes']['median'] / 2**20:.0f} MiB, "
                f"file {entry['bytes'] / 1e6:.1f} MB"
                + (f" = {entry['bytes_vs_fp32']:.3f}x fp32" if entry["bytes_vs_fp32"] else "")
                + (
                    f"; serve --workers {args.serve_workers}: {entry['serve_rss_bytes'] / 2**20:.0f} MiB"
                    if args.serve_workers
                    else ""
                )
            )
            results.append(entry)
    out = args.out or RESULTS / f"cold-start-{machine_name(facts, 3)}.json"
    out.write_text(json.dumps({"machine": facts, "runs": args.runs, "results": results}, indent=2) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
