"""Large requests beside small ones: `onnxqa serve` stays fair, stops abandoned work, refuses readably.

    python benchmarks/serve_large.py                      # tinyroberta int8, the issue's scenario
    python benchmarks/serve_large.py --model-dir out/my-model --precision int8

In one run on one machine (the seed exported with random weights unless --model-dir is given):
  1. `onnxqa serve` started on 127.0.0.1; one client asks small SQuAD questions one at a time:
     the idle p50;
  2. the scenario: ``--large`` requests with ``--large-chars`` of context and ``"timeout":
     --timeout``, one request with ``--medium-chars`` of context (no timeout), and one client
     sending small questions one after another for ``--seconds``, all at once. Every small answer
     and the medium one are compared with the embedded API's (the same model loaded here,
     afterwards); small latency is counted from the start, while the large contexts are still
     being tokenized;
  3. idle again: the server's CPU time over one second, starting one second after the large
     requests got their 504;
  4. a client that sends a large request and goes away after half a second: the server's CPU
     time over one second, starting one second after it left;
  5. a body of ``--oversize-mb`` sent whole before reading the answer (``urllib``): its status.
Writes a JSON file (--output) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from common import RESULTS, SHARED, SQUAD_DEV, free_port, log, start_server


def squad() -> tuple[list[tuple[str, str]], str]:
    """SQuAD 2.0 dev (question, context) pairs, and all of its paragraphs joined (the large text)."""
    data = json.loads(SQUAD_DEV.read_text(encoding="utf-8"))
    paragraphs = [p for a in data["data"] for p in a["paragraphs"]]
    pairs = [(q["question"], p["context"]) for p in paragraphs for q in p["qas"]]
    return pairs, "\n\n".join(p["context"] for p in paragraphs)


def as_dicts(answers: list[Any]) -> list[dict[str, Any]]:
    return [{"text": a.text, "score": a.score, "start": a.start, "end": a.end} for a in answers]


class Server:
    """`onnxqa serve` in a subprocess, on 127.0.0.1."""

    def __init__(self, model_dir: Path, precision: str, extra: list[str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = start_server(model_dir, precision, self.port, extra)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def cpu_per_second(self, after: float, span: float = 1.0) -> float:
        """CPU seconds per second the server used over ``span`` seconds, starting ``after`` seconds from now."""
        time.sleep(after)
        c0 = self.cpu_seconds()
        time.sleep(span)
        return round((self.cpu_seconds() - c0) / span, 3)

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def percentiles(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1000
    return {f"p{q}": round(float(np.percentile(a, q)), 2) for q in (50, 90, 99)} | {"max": round(float(a.max()), 2)}


def idle_p50(server: Server, pairs: list[tuple[str, str]]) -> float:
    times = []
    with httpx.Client(base_url=server.base, timeout=30) as client:
        for question, context in pairs:
            t = time.perf_counter()
            client.post("/v1/answer", json={"question": question, "context": context}).raise_for_status()
            times.append(time.perf_counter() - t)
    return float(np.median(times[5:] if len(times) > 10 else times))


def scenario(server: Server, args: argparse.Namespace, pairs: list[tuple[str, str]], text: str) -> dict[str, Any]:
    large_context = (text * (1 + args.large_chars // len(text)))[: args.large_chars]
    medium_context = text[: args.medium_chars]
    large: list[dict[str, Any]] = []
    medium: dict[str, Any] = {}

    def ask_large(i: int) -> None:
        body = {"question": "Who designed the bridge?", "context": large_context, "timeout": args.timeout}
        t = time.perf_counter()
        r = httpx.post(f"{server.base}/v1/answer", json=body, timeout=args.timeout + 60)
        large.append({"status": r.status_code, "seconds": round(time.perf_counter() - t, 3), "ended": time.monotonic()})

    def ask_medium() -> None:
        t = time.perf_counter()
        r = httpx.post(f"{server.base}/v1/answer", json={"question": "Who?", "context": medium_context}, timeout=120)
        medium.update(status=r.status_code, seconds=round(time.perf_counter() - t, 3), answers=r.json().get("answers"))

    threads = [threading.Thread(target=ask_large, args=(i,)) for i in range(args.large)]
    threads.append(threading.Thread(target=ask_medium))
    small: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    with httpx.Client(base_url=server.base, timeout=60) as client:
        i = 0
        while time.perf_counter() - t0 < args.seconds:
            question, context = pairs[i % len(pairs)]
            t = time.perf_counter()
            r = client.post("/v1/answer", json={"question": question, "context": context})
            small.append(
                {
                    "pair": i % len(pairs),
                    "at": round(t - t0, 3),
                    "seconds": time.perf_counter() - t,
                    "status": r.status_code,
                    "answers": r.json().get("answers") if r.status_code == 200 else None,
                }
            )
            i += 1
    for t in threads:
        t.join(args.timeout + 120)
    last_large = max((x["ended"] for x in large), default=time.monotonic())
    idle = server.cpu_per_second(max(0.0, last_large + 1.0 - time.monotonic()))
    return {"large": large, "medium": medium, "small": small, "idle_cpu_per_s_1s_after_timeouts": idle}


def disconnect(server: Server, text: str, chars: int) -> dict[str, Any]:
    context = (text * (1 + chars // len(text)))[:chars]
    t = time.perf_counter()
    try:
        httpx.post(f"{server.base}/v1/answer", json={"question": "Who?", "context": context}, timeout=0.5)
        outcome = "answered"
    except httpx.TimeoutException:
        outcome = "client left"
    left = time.perf_counter() - t
    busy = server.cpu_per_second(0.0, 0.5)
    idle = server.cpu_per_second(0.5)
    metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
    closed = [line for line in metrics.splitlines() if line.startswith('onnxqa_requests_total{code="499"')]
    return {
        "outcome": outcome,
        "left_after_s": round(left, 3),
        "cpu_per_s_first_half_second": busy,
        "idle_cpu_per_s_1s_after_leaving": idle,
        "counted_499": closed,
    }


def oversize(server: Server, megabytes: float) -> dict[str, Any]:
    body = b'{"question": "Who?", "context": "' + b"x" * int(megabytes * 1024 * 1024) + b'"}'
    request = urllib.request.Request(
        f"{server.base}/v1/answer", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return {"status": r.status, "error": None}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "error": None, "body": exc.read().decode()[:200]}
    except OSError as exc:  # a reset instead of a status
        return {"status": None, "error": f"{type(exc).__name__}: {exc}"}


def summarize(result: dict[str, Any], p50: float) -> dict[str, Any]:
    small = result["small"]
    ok = [s for s in small if s["status"] == 200]
    bound = 24 * p50 + 0.25
    summary = {
        "idle_p50_ms": round(p50 * 1000, 2),
        "small_requests": len(small),
        "small_failed": len(small) - len(ok),
        "small_not_identical": sum(1 for s in ok if not s["identical"]),
        "small_latency_ms": percentiles([s["seconds"] for s in small]) if small else None,
        "small_p99_bound_ms": round(bound * 1000, 1),
        "large": [(x["status"], x["seconds"]) for x in result["large"]],
        "medium": {k: result["medium"].get(k) for k in ("status", "seconds", "identical")},
        "idle_cpu_per_s_1s_after_timeouts": result["idle_cpu_per_s_1s_after_timeouts"],
    }
    summary["small_p99_within_bound"] = bool(small) and summary["small_latency_ms"]["p99"] <= bound * 1000
    return summary


def compare_with_embedded(
    result: dict[str, Any], model_dir: Path, precision: str, pairs: list[tuple[str, str]], text: str, medium_chars: int
) -> None:  # noqa: E501
    import onnxqa

    with onnxqa.load(model_dir, device="cpu", precision=precision) as qa:
        expected: dict[int, list[dict[str, Any]]] = {}
        for s in result["small"]:
            if s["status"] != 200:
                s["identical"] = False
                continue
            if s["pair"] not in expected:
                expected[s["pair"]] = as_dicts(qa(*pairs[s["pair"]]))
            s["identical"] = s["answers"] == expected[s["pair"]]
            del s["answers"]
        medium = result["medium"]
        if medium.get("status") == 200:
            medium["identical"] = medium.pop("answers") == as_dicts(qa("Who?", text[:medium_chars]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", help="an exported directory (default: export the seed with random weights)")
    ap.add_argument("--seed", default="tinyroberta-squad2", help="seed exported when --model-dir is not given")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--large", type=int, default=2, help="concurrent large requests (default: 2)")
    ap.add_argument("--large-chars", type=int, default=1_200_000, help="characters of each large context")
    ap.add_argument("--timeout", type=float, default=4.0, help="the large requests' own timeout, seconds")
    ap.add_argument("--medium-chars", type=int, default=120_000, help="characters of the medium context")
    ap.add_argument("--seconds", type=float, default=12.0, help="how long the small client asks")
    ap.add_argument("--questions", type=int, default=400, help="small SQuAD questions cycled through")
    ap.add_argument("--idle-calls", type=int, default=100, help="small questions timed one at a time, idle")
    ap.add_argument("--disconnect-chars", type=int, default=1_200_000, help="context of the request abandoned")
    ap.add_argument("--oversize-mb", type=float, default=5.0, help="body sent whole to get a 413")
    ap.add_argument("--server-args", default="", help="more `onnxqa serve` flags, space-separated")
    ap.add_argument("--output", type=Path, default=RESULTS / "serve-large.json")
    args = ap.parse_args()

    pairs, text = squad()
    pairs = pairs[: args.questions]
    with tempfile.TemporaryDirectory(prefix="onnxqa-large-") as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else export_seed(args.seed, Path(tmp))
        log(f"serving {model_dir} ({args.precision})")
        server = Server(model_dir, args.precision, args.server_args.split())
        try:
            p50 = idle_p50(server, pairs[: args.idle_calls])
            log(f"idle p50 {p50 * 1000:.2f} ms; scenario for {args.seconds:g} s")
            result = scenario(server, args, pairs, text)
            log("disconnect")
            result["disconnect"] = disconnect(server, text, args.disconnect_chars)
            log("oversized body")
            result["oversize"] = oversize(server, args.oversize_mb)
        finally:
            result_exit = server.stop()
        compare_with_embedded(result, model_dir, args.precision, pairs, text, args.medium_chars)
    from onnxqa.bench import machine_facts

    out = {
        "machine": machine_facts(),
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model_dir or f"{args.seed} (random weights)",
        "precision": args.precision,
        "settings": {k: v for k, v in vars(args).items() if k != "output"} | {"output": str(args.output)},
        "summary": summarize(result, p50),
        "disconnect": result["disconnect"],
        "oversize": result["oversize"],
        "server_exit_code": result_exit,
        "small": result["small"],
        "large": result["large"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(json.dumps(out["summary"] | {"disconnect": out["disconnect"], "oversize": out["oversize"]}, indent=2))


def export_seed(seed: str, tmp: Path) -> Path:
    from onnxqa.export import ExportConfig, export, random_checkpoint

    log(f"exporting {seed} (random weights)")
    checkpoint = random_checkpoint(SHARED / "seeds" / seed, tmp / "ckpt")
    export(str(checkpoint), tmp / "onnx", ExportConfig(precisions=("fp32", "int8"), progress=False))
    return tmp / "onnx"


if __name__ == "__main__":
    main()
