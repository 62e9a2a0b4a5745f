"""Load test: `onnxqa serve` under 1, 8 and 64 concurrent clients, next to the embedded API.

    python benchmarks/serve_load.py                       # the full run (see BENCHMARKS.md)
    python benchmarks/serve_load.py --runs bert-tiny-finetuned-squadv2:fp32 --requests 100,200,300 --seconds 20
    python benchmarks/serve_load.py --model-dir out/my-model --runs my-model:int8 --requests 200,400,400

For each run (``SEED:PRECISION``; seeds are exported with random weights into a temporary
directory, or ``--model-dir`` names an exported directory), in one process on one machine:
  1. embedded: ``qa(question, context)`` one at a time (latency p50/p90/p99) and ``qa.batch()``
     over the same questions (questions/s; ``--rounds`` rounds, and as many again after the
     server's phases, the median of all of them the yardstick: this machine's speed drifts from
     minute to minute); its answers are the reference;
  2. `onnxqa serve` started on 127.0.0.1 as a subprocess; for 1, 8 and 64 clients (each phase
     bounded by a request count and a time limit) every client sends POST /v1/answer over one
     keep-alive connection; every answer is compared with the embedded one; the server's resident
     memory (RSS, with its worker processes summed) is sampled throughout.
Reports latency, requests/s, errors, answers not identical to the embedded API's, and server RSS
at the start, the end and its growth over the second half. One client's latency is compared with
the embedded call's over the same questions (SQuAD's contexts grow longer along the file, so p50s
over different questions would differ by the text, not by the server). Writes a JSON file
(--output) and prints a markdown table. Clients are a few lines of asyncio (HTTP/1.1, keep-alive),
and compare the answers only once a phase is over, so that they take little of the CPU the server
needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from common import RESULTS, SHARED, Connection, free_port, log, squad_pairs, start_server, wait_ready

DEFAULT_RUNS = "bert-tiny-finetuned-squadv2:fp32,bert-tiny-finetuned-squadv2:int8,tinyroberta-squad2:int8"


def server_stack() -> dict[str, str | None]:
    """Versions of the HTTP stack; uvicorn uses uvloop and httptools when they are installed."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in ("fastapi", "uvicorn", "uvloop", "httptools"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    a = np.asarray(ms)
    return {f"p{q}": round(float(np.percentile(a, q)), 3) for q in (50, 90, 99)}


def as_dicts(answers: list[Any]) -> list[dict[str, Any]]:
    return [{"text": a.text, "score": a.score, "start": a.start, "end": a.end} for a in answers]


# ---------------------------------------------------------------- embedded


def embedded(qa: Any, pairs: list[tuple[str, str]], n_latency: int, rounds: int) -> dict[str, Any]:
    for q, c in pairs[:20]:
        qa(q, c)
    times = []
    for q, c in pairs[:n_latency]:
        t = time.perf_counter()
        qa(q, c)
        times.append((time.perf_counter() - t) * 1000)
    qa.batch(pairs[:16])
    answers, per_s = batch_rounds(qa, pairs, rounds)
    return {
        "latency_ms": percentiles(times),
        "latency_by_question": times,
        "latency_calls": len(times),
        "batch_questions": len(pairs),
        "batch_rounds_before_per_s": per_s,
        "answers": [as_dicts(a) for a in answers],
    }


def batch_rounds(qa: Any, pairs: list[tuple[str, str]], rounds: int) -> tuple[list[Any], list[float]]:
    """``qa.batch(pairs)`` ``rounds`` times: the last answers, and questions/s of each round."""
    per_s, answers = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        answers = qa.batch(pairs)
        per_s.append(round(len(pairs) / (time.perf_counter() - t), 1))
    return answers, per_s


# ---------------------------------------------------------------- the server and its clients


async def load_phase(
    port: int,
    clients: int,
    requests: int,
    seconds: float,
    bodies: list[bytes],
    expected: list[list[dict[str, Any]]],
    sample_rss: Any,
) -> dict[str, Any]:
    """``clients`` concurrent clients send up to ``requests`` requests within ``seconds``."""
    latencies: list[float] = []
    by_question: dict[int, float] = {}  # one client: latency of each question's first request
    errors: dict[str, int] = {}
    stats = {"not_identical": 0, "span_mismatches": 0, "max_score_diff": 0.0}
    sent = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal sent
        conn = await Connection.open("127.0.0.1", port)
        try:
            while sent < requests and time.monotonic() < deadline:
                i = sent
                sent += 1
                t = time.perf_counter()
                try:
                    status, body = await conn.request("POST", "/v1/answer", bodies[i % len(bodies)])
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    conn.close()
                    conn = await Connection.open("127.0.0.1", port)
                    continue
                latencies.append((time.perf_counter() - t) * 1000)
                if status != 200:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                    continue
                if clients == 1:
                    by_question.setdefault(i % len(bodies), latencies[-1])
                answered.append((i, body))  # compared once the phase is over: the client stays light
                if len(latencies) % 1000 == 0:
                    sample_rss()
        finally:
            conn.close()

    answered: list[tuple[int, bytes]] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    for i, body in answered:
        got, want = json.loads(body)["answers"], expected[i % len(expected)]
        if got != want:
            stats["not_identical"] += 1
            spans = [(a["text"], a["start"], a["end"]) for a in got]
            if spans != [(a["text"], a["start"], a["end"]) for a in want]:
                stats["span_mismatches"] += 1
            else:
                diff = max(abs(a["score"] - b["score"]) for a, b in zip(got, want))
                stats["max_score_diff"] = max(stats["max_score_diff"], diff)
    return {
        "clients": clients,
        "requests": len(latencies) + sum(v for k, v in errors.items() if not k.isdigit()),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": percentiles(latencies),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        **stats,
        "latency_by_question": by_question,
    }


def served(
    model_dir: Path,
    precision: str,
    pairs: list[tuple[str, str]],
    expected: list[list[dict[str, Any]]],
    phases: list[tuple[int, int]],
    seconds: float,
    server_args: list[str],
) -> dict[str, Any]:
    port = free_port()
    proc = start_server(model_dir, precision, port, server_args)
    server = psutil.Process(proc.pid)
    rss: list[tuple[float, float]] = []
    t0 = time.monotonic()

    def sample_rss() -> None:
        # the server and its worker processes (--workers), each one's resident set summed
        tree = [server, *server.children(recursive=True)]
        total = 0
        for process in tree:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        rss.append((round(time.monotonic() - t0, 2), round(total / 2**20, 2)))

    bodies = [json.dumps({"question": q, "context": c}).encode() for q, c in pairs]
    try:
        asyncio.run(wait_ready(port, proc))
        sample_rss()
        results = []
        for clients, requests in phases:
            log(f"  {clients} clients, up to {requests} requests / {seconds:g} s")
            results.append(asyncio.run(load_phase(port, clients, requests, seconds, bodies, expected, sample_rss)))
            sample_rss()
            log(
                f"    {results[-1]['requests_per_s']} requests/s, p50 {results[-1]['latency_ms']['p50']} ms, "
                f"errors {results[-1]['errors']}, not identical {results[-1]['not_identical']}"
            )
    finally:
        proc.terminate()
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    half = rss[len(rss) // 2][1] if rss else float("nan")
    return {
        "phases": results,
        "server_exit_code": code,
        "rss_mb": {
            "start": rss[0][1],
            "end": rss[-1][1],
            "growth_second_half": round(rss[-1][1] - half, 2),
            "samples": rss,
        },
    }


def same_questions(emb: dict[str, Any], srv: dict[str, Any]) -> dict[str, Any] | None:
    """One client against the embedded call, p50 over the questions both timed (contexts differ in
    length along SQuAD, so p50s over different questions are not comparable)."""
    alone = emb.pop("latency_by_question")
    timed: dict[int, float] = {}
    for ph in srv["phases"]:
        by_question = ph.pop("latency_by_question")
        if ph["clients"] == 1:
            timed = by_question
    common = sorted(i for i in timed if i < len(alone))
    if not common:
        return None
    http = statistics.median(timed[i] for i in common)
    embedded_p50 = statistics.median(alone[i] for i in common)
    return {
        "questions": len(common),
        "embedded_p50_ms": round(embedded_p50, 3),
        "http_p50_ms": round(http, 3),
        "delta_p50_ms": round(http - embedded_p50, 3),
    }


# ---------------------------------------------------------------- report


def report(result: dict[str, Any]) -> str:
    lines = [
        "| model | precision | clients | requests | errors | not identical | p50 ms | p90 ms | p99 ms "
        "| requests/s | vs embedded batch() | HTTP p50 − embedded p50 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        emb = run["embedded"]
        lat = emb["latency_ms"]
        same = run.get("one_client_same_questions")
        lines.append(
            f"| {run['model']} | {run['precision']} | embedded | {emb['latency_calls']} / {emb['batch_questions']} "
            f"| – | – | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {emb['batch_questions_per_s']:.1f} "
            "| 1.00 | – |"
        )
        for ph in run["served"]["phases"]:
            ratio = ph["requests_per_s"] / emb["batch_questions_per_s"]
            extra = f"{same['delta_p50_ms']:+.2f} ms" if ph["clients"] == 1 and same else "–"
            lines.append(
                f"| {run['model']} | {run['precision']} | {ph['clients']} | {ph['requests']} | {ph['errors']} "
                f"| {ph['not_identical']} | {ph['latency_ms']['p50']:.2f} | {ph['latency_ms']['p90']:.2f} "
                f"| {ph['latency_ms']['p99']:.2f} | {ph['requests_per_s']:.1f} | {ratio:.2f} | {extra} |"
            )
    lines += [
        "",
        "| model | precision | server RSS at start | at the end | growth, second half | exit code after SIGTERM |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        r = run["served"]["rss_mb"]
        lines.append(
            f"| {run['model']} | {run['precision']} | {r['start']:.1f} MiB | {r['end']:.1f} MiB "
            f"| {r['growth_second_half']:+.1f} MiB | {run['served']['server_exit_code']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=DEFAULT_RUNS, help=f"SEED:PRECISION,... (default: {DEFAULT_RUNS})")
    ap.add_argument("--model-dir", help="an exported directory to use instead of exporting the seed")
    ap.add_argument("--clients", default="1,8,64", help="concurrent clients per phase (default: 1,8,64)")
    ap.add_argument("--requests", default="2000,8000,10000", help="requests per phase (default: 2000,8000,10000)")
    ap.add_argument("--seconds", type=float, default=120.0, help="time limit per phase (default: 120)")
    ap.add_argument("--questions", type=int, default=2000, help="distinct SQuAD 2.0 dev questions (default: 2000)")
    ap.add_argument(
        "--latency-calls", type=int, default=0, help="embedded one-at-a-time calls (default 0: every question)"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="embedded batch() rounds before and again after the server (the median of all is the yardstick)",
    )
    ap.add_argument("--server-args", default="", help="extra `onnxqa serve` flags, e.g. '--max-batch-windows 32'")
    ap.add_argument("--output", help="JSON results (default: benchmarks/results/serve-load.json)")
    ap.add_argument("--json", action="store_true", help="print the JSON result instead of the table")
    args = ap.parse_args()

    import onnxqa
    from onnxqa.bench import machine_facts

    clients = [int(c) for c in args.clients.split(",")]
    counts = [int(c) for c in args.requests.split(",")]
    if len(clients) != len(counts):
        ap.error("--clients and --requests need as many values")
    pairs = squad_pairs(args.questions)
    result: dict[str, Any] = {
        "machine": machine_facts(),
        "server_stack": server_stack(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "settings": vars(args),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="onnxqa-serve-load-") as tmp:
        exported: dict[str, Path] = {}
        for spec in args.runs.split(","):
            seed, _, precision = spec.partition(":")
            if args.model_dir:
                model_dir = Path(args.model_dir)
            elif seed not in exported:
                from onnxqa.export import ExportConfig, export, random_checkpoint

                log(f"exporting {seed} (random weights)")
                checkpoint = random_checkpoint(SHARED / "seeds" / seed, Path(tmp) / seed / "checkpoint")
                export(str(checkpoint), Path(tmp) / seed / "onnx", ExportConfig(progress=False))
                model_dir = exported[seed] = Path(tmp) / seed / "onnx"
            else:
                model_dir = exported[seed]
            log(f"{seed} {precision}: embedded")
            qa = onnxqa.load(model_dir, device="cpu", precision=precision)
            emb = embedded(qa, pairs, min(args.latency_calls or len(pairs), len(pairs)), args.rounds)
            expected = emb.pop("answers")
            del qa
            log(
                f"  p50 {emb['latency_ms']['p50']} ms, batch() {emb['batch_rounds_before_per_s']} questions/s; "
                f"{seed} {precision}: served"
            )
            phases = list(zip(clients, counts))
            srv = served(model_dir, precision, pairs, expected, phases, args.seconds, args.server_args.split())
            # the machine's speed drifts: batch() again after the server, and the median of all rounds
            qa = onnxqa.load(model_dir, device="cpu", precision=precision)
            qa.batch(pairs[:16])
            emb["batch_rounds_after_per_s"] = batch_rounds(qa, pairs, args.rounds)[1]
            del qa
            emb["batch_questions_per_s"] = statistics.median(
                emb["batch_rounds_before_per_s"] + emb["batch_rounds_after_per_s"]
            )
            run = {"model": seed, "precision": precision, "embedded": emb, "served": srv}
            run["one_client_same_questions"] = same_questions(emb, srv)
            result["runs"].append(run)
    total = sum(ph["requests"] for run in result["runs"] for ph in run["served"]["phases"])
    errors = sum(ph["errors"] for run in result["runs"] for ph in run["served"]["phases"])
    result["total_requests"], result["total_errors"] = total, errors
    out = Path(args.output) if args.output else RESULTS / "serve-load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    log(f"{total} requests, {errors} errors; results in {out}")
    print(json.dumps(result, indent=1) if args.json else report(result))


if __name__ == "__main__":
    main()
