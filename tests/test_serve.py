"""The HTTP contract of `onnxqa serve`: status codes, answers equal to the embedded API's,
metrics, mounting, overload, timeouts, and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

import onnxqa

from conftest import ROOT
from serving import free_port, server_env, start_server, wait_ready

pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from onnxqa.serve import create_app  # noqa: E402

CONTEXT = "The Harlow Bridge was designed by Margaret Ellison and opened to traffic in 1931."


@pytest.fixture(scope="module")
def qa(tiny):
    qa = onnxqa.load(tiny, device="cpu", precision="fp32")
    yield qa
    qa.close()


@pytest.fixture(scope="module")
def client(qa):
    with TestClient(create_app(qa, max_body_bytes=65536)) as c:
        deadline = time.monotonic() + 30
        while c.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield c


def _dicts(answers):
    return [{"text": a.text, "score": a.score, "start": a.start, "end": a.end} for a in answers]


def test_answers_equal_the_embedded_api(client, qa, squad_v2):
    pairs = [(q["question"], q["context"]) for q in squad_v2[:12]]
    for options in ({}, {"top_k": 3, "handle_impossible_answer": True, "max_answer_len": 5}):
        for (question, context), embedded in zip(pairs, qa.batch(pairs, **options)):
            r = client.post("/v1/answer", json={"question": question, "context": context, **options})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["answers"] == _dicts(embedded)
            assert (body["precision"], body["device"]) == ("fp32", "cpu") and body["model"]
    r = client.post("/v1/answer/batch", json={"pairs": [{"question": q, "context": c} for q, c in pairs], "top_k": 2})
    assert r.status_code == 200
    assert r.json()["results"] == [_dicts(a) for a in qa.batch(pairs, top_k=2)]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 422, "JSON"),
        (b"[1, 2]", 422, ""),
        (b'{"question": 1, "context": "x"}', 422, "question"),
        (b'{"question": "Who?"}', 422, "context"),
        (b'{"question": " ", "context": "x"}', 422, "question"),
        (b'{"question": "Who?", "context": ""}', 422, "context"),
        (b'{"question": "Who?", "context": "\\u3000\\n"}', 422, "context"),
        (b'{"question": "Who?", "context": "x", "top_k": 0}', 422, "top_k"),
        (b'{"question": "Who?", "context": "x", "top_k": "3"}', 422, "top_k"),
        (b'{"question": "Who?", "context": "x", "max_seq_len": 100000}', 422, "max_seq_len"),
        (b'{"question": "Who?", "context": "x", "handle_impossible_answer": "yes"}', 422, "handle_impossible"),
        (b'{"question": "Who?", "context": "x", "batch_size": 4}', 422, "batch_size"),
        (b'{"question": "Who?", "context": "x", "timeout": -1}', 422, "timeout"),
        (b'{"question": "Who?", "context": "x", "timeout": 5e-324}', 422, "timeout"),
        (b'{"question": "Who?", "context": "x", "doc_stride": 400}', 422, "doc_stride"),
        (b'{"question": "Who?", "context": "' + b"x" * 70000 + b'"}', 413, "limit"),
    ],
)
def test_bad_requests_get_4xx_with_the_reason(client, body, status, needle):
    r = client.post("/v1/answer", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["message"] and needle in r.json()["message"]


def test_bad_batch_requests(client):
    assert client.post("/v1/answer/batch", json={"pairs": []}).status_code == 422
    r = client.post("/v1/answer/batch", json={"pairs": [{"question": "Who?", "context": "x"}, {"question": ""}]})
    assert r.status_code == 422


def test_chunked_body_over_the_limit_is_refused(client):
    def chunks():
        for _ in range(10):
            yield b"x" * 10000

    r = client.post("/v1/answer", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_health_ready_metrics_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["precision"] == "fp32"
    client.post("/v1/answer", json={"question": "Who designed it?", "context": CONTEXT})
    client.post("/v1/answer", content=b"{", headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    for name in (
        'onnxqa_requests_total{code="200",endpoint="/v1/answer"}',
        'onnxqa_errors_total{kind="invalid_request"}',
        "onnxqa_request_duration_seconds_bucket",
        "onnxqa_batch_windows_bucket",
        "onnxqa_batch_requests_bucket",
        "onnxqa_queue_depth",
        "onnxqa_model_info",
    ):
        assert name in text, name
    assert "/v1/answer" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


class _HeldEngine:
    """Wraps a loaded model's engine: every inference call waits until ``release`` is set."""

    def __init__(self, engine) -> None:
        self.engine, self.release, self.calls = engine, threading.Event(), 0

    def run(self, *args):
        self.calls += 1
        assert self.release.wait(10)
        return self.engine.run(*args)


def test_overload_is_503_with_retry_after_and_timeout_is_504(fake_model):
    qa = onnxqa.load(fake_model, batching=onnxqa.BatchSettings(max_queue=1))
    app = create_app(qa)
    app.state.onnxqa.start_warm_up()
    assert app.state.onnxqa.ready.wait(30)
    held = qa._engine = _HeldEngine(qa._engine)
    body = {"question": "Who designed it?", "context": CONTEXT}

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            first = asyncio.ensure_future(c.post("/v1/answer", json=body))
            while not held.calls:
                await asyncio.sleep(0.01)
            timed_out = await c.post("/v1/answer", json={**body, "timeout": 0.05})
            assert qa.queue_depth == 0  # a request that timed out gives its place back at once
            second = asyncio.ensure_future(c.post("/v1/answer", json=body))
            while qa.queue_depth < 1:
                await asyncio.sleep(0.01)
            refused = await c.post("/v1/answer", json=body)
            held.release.set()
            return timed_out, refused, await first, await second

    timed_out, refused, first, second = asyncio.run(scenario())
    assert timed_out.status_code == 504 and "timeout" in timed_out.json()["message"]
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert first.status_code == second.status_code == 200
    assert held.calls == 2, "the timed-out request must never have run"
    qa.close()


def test_mounted_in_another_app(qa):
    outer = FastAPI()
    outer.mount("/qa", create_app(qa))
    with TestClient(outer) as c:
        r = c.post("/qa/v1/answer", json={"question": "Who designed it?", "context": CONTEXT})
        assert r.status_code == 200 and r.json()["answers"] == _dicts(qa("Who designed it?", CONTEXT))
        deadline = time.monotonic() + 30
        while c.get("/qa/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/qa/ready").status_code == 200


def _queue(base: str) -> tuple[float, float]:
    """The server's requests admitted whose windows have not all started, and windows waiting."""
    lines = httpx.get(f"{base}/metrics", timeout=10).text.splitlines()
    value = lambda name: sum(float(x.split()[-1]) for x in lines if x.startswith(name + " "))  # noqa: E731
    return value("onnxqa_queue_depth"), value("onnxqa_queue_windows")


def test_sigterm_finishes_requests_in_flight_and_exits_0(slow_model):
    """SIGTERM while the server still has hundreds of windows to run (read from /metrics, so the test
    does not depend on how fast this CPU is): every request in flight is answered, then exit 0."""
    proc, base = start_server(slow_model)
    try:
        wait_ready(proc, base)
        long_context = " ".join([CONTEXT] * 3000)  # about 180 windows each
        done: list[tuple[int, float]] = []

        def ask() -> None:
            try:
                r = httpx.post(f"{base}/v1/answer", json={"question": "Who?", "context": long_context}, timeout=120)
                done.append((r.status_code, time.monotonic()))
            except httpx.HTTPError as exc:
                done.append((repr(exc), time.monotonic()))

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        # all three admitted, and at least 100 windows still to run
        while (queue := _queue(base))[0] < 3 or queue[1] < 100:
            assert time.monotonic() < deadline and not done, f"the queue never held the requests: {queue}, {done}"
            time.sleep(0.01)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(120)
        assert proc.wait(120) == 0
        assert [status for status, _ in done] == [200, 200, 200]
        assert any(at > stopped_at for _, at in done), "no request was still in flight at SIGTERM"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_reports_load_errors_with_exit_2(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "onnxqa.cli", "serve", str(tmp_path), "--port", str(free_port())],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "onnxqa.json" in out.stderr


def test_short_load_test_has_no_errors_and_identical_answers(tiny, tmp_path):
    """The load benchmark itself, bounded: 8 concurrent clients, a few hundred requests."""
    out = tmp_path / "load.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), "--model-dir", str(tiny)]
    cmd += ["--runs", "tiny:fp32", "--clients", "1,8", "--requests", "50,300", "--seconds", "60"]
    cmd += ["--questions", "150", "--latency-calls", "20", "--output", str(out)]
    run = subprocess.run(cmd, env=server_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    phases = result["runs"][0]["served"]["phases"]
    assert [p["requests"] for p in phases] == [50, 300]
    assert all(p["errors"] == 0 and p["not_identical"] == 0 for p in phases), phases
    assert result["runs"][0]["served"]["server_exit_code"] == 0
    # one client against the embedded call over the same questions: the 20 timed alone
    assert result["runs"][0]["one_client_same_questions"]["questions"] == 20
    assert "| tiny | fp32 | 8 |" in run.stdout


def test_readme_create_app_example_runs(tiny):
    from test_readme import readme_block

    code = readme_block("test:create-app").replace('"out/my-model"', repr(str(tiny)))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    with TestClient(scope["app"]) as c:
        r = c.post("/qa/v1/answer", json={"question": "Who designed it?", "context": CONTEXT})
        assert r.status_code == 200 and r.json()["answers"][0]["text"]


@pytest.mark.parametrize(("flags", "arena"), [([], True), (["--no-memory-arena"], False)])
def test_serve_memory_arena_flag_reaches_the_session(fake_model, monkeypatch, flags, arena):
    """`onnxqa serve --no-memory-arena` loads the model with onnxruntime's CPU arena off."""
    from onnxqa import cli
    from onnxqa.serve import _app

    loaded = []

    def load_then_stop(*args, **kwargs):
        loaded.append(onnxqa.load(*args, **kwargs))
        raise onnxqa.OnnxQAError("loaded; not serving in this test")

    monkeypatch.setattr(_app, "load", load_then_stop)
    assert cli.main(["serve", str(fake_model), "--port", str(free_port()), *flags]) == 2
    assert loaded[0]._engine.session.get_session_options().enable_cpu_mem_arena is arena
    loaded[0].close()
