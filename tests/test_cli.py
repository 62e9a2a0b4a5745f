"""The command line: ask, eval and bench on a torch-free model; serve's and batch's flags reach the
functions they configure (those functions stubbed), and flags that do not apply are refused."""

from __future__ import annotations

import importlib
import json
import shutil
import sys

import pytest

import onnxqa
import onnxqa.batch
import onnxqa.serve
from onnxqa import BatchSettings
from onnxqa.batch import BatchReport, InProcess, OnRay
from onnxqa.cli import build_parser, main

from conftest import shared_path


def test_ask_text_and_json(fake_model, capsys, tmp_path):
    context = "The Harlow Bridge was designed by Margaret Ellison and opened in 1931."
    assert main(["ask", str(fake_model), "-q", "Who designed it?", "-c", context, "--top-k", "2", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 2 and all(context[a["start"] : a["end"]] == a["answer"] for a in answers)
    (tmp_path / "c.txt").write_text(context)
    assert main(["ask", str(fake_model), "-q", "Who?", "--context-file", str(tmp_path / "c.txt")]) == 0
    assert "[" in capsys.readouterr().out
    assert main(["ask", str(fake_model), "-q", "Who?", "--context-file", str(tmp_path / "missing.txt")]) == 2
    assert main(["ask", str(tmp_path), "-q", "Who?", "-c", context]) == 2
    assert "onnxqa.json" in capsys.readouterr().err


def test_eval_on_a_model(fake_model, capsys, tmp_path):
    data = shared_path("data", "squad", "dev-v2.0.json")
    preds = tmp_path / "preds.json"
    args = ["eval", str(fake_model), str(data), "--limit", "25", "--json", "--quiet", "--predictions", str(preds)]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["version"] == "2.0" and result["questions"] == 25
    for key in ("exact", "f1", "HasAns_exact", "NoAns_exact", "best_f1", "best_f1_thresh"):
        assert key in result["scores"]
    # the written predictions score the same through the model-free path
    assert main(["eval", str(data), "--score", str(preds), "--limit", "25", "--json"]) == 0
    rescored = json.loads(capsys.readouterr().out)["scores"]
    assert rescored["exact"] == result["scores"]["exact"] and rescored["f1"] == result["scores"]["f1"]
    # without --limit the v2.0 metric needs every question: a clear error
    assert main(["eval", str(data), "--score", str(preds)]) == 2
    assert "--limit" in capsys.readouterr().err


def test_bench(fake_model_dynamic, capsys, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", str(fake_model_dynamic), "-n", "12", "--json", "--output", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == result
    assert [r["precision"] for r in result["runs"]] == ["fp32", "int8"]
    for r in result["runs"]:
        assert r["device"] == "cpu" and r["questions_per_s"] > 0
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"]
    assert result["machine"]["onnxruntime"] and result["machine"]["logical_cores"] >= 1


def test_bench_on_an_int8_only_directory(fake_model_dynamic, capsys, tmp_path):
    """``bench`` measures whichever variants the directory has: here only int8."""
    model = tmp_path / "int8-only"
    shutil.copytree(fake_model_dynamic, model)
    manifest = json.loads((model / "onnxqa.json").read_text())
    (model / manifest["variants"].pop("fp32")["file"]).unlink()
    (model / "onnxqa.json").write_text(json.dumps(manifest))
    assert main(["bench", str(model), "-n", "5", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["precision"], r["questions"]) for r in runs] == [("int8", 5)]


def test_every_command_has_help_with_the_sources_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag
    for command in ("export", "ask", "eval", "bench", "serve", "batch"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
    text = capsys.readouterr().out
    assert f"(default: {BatchSettings().max_queue_windows})" in text
    assert f"(default: {onnxqa.batch.DEFAULT_CHUNK_ROWS})" in text
    serve = build_parser().parse_args(["serve", "m"])
    assert (serve.max_queue, serve.max_queue_windows) == (BatchSettings().max_queue, BatchSettings().max_queue_windows)
    assert (serve.max_body_bytes, serve.request_timeout, serve.max_documents) == (
        onnxqa.serve.DEFAULT_MAX_BODY_BYTES,
        onnxqa.serve.DEFAULT_REQUEST_TIMEOUT,
        onnxqa.serve.DEFAULT_MAX_DOCUMENTS,
    )


# ---------------------------------------------------------------- serve and batch: flags reach their functions


@pytest.fixture
def calls(monkeypatch):
    """Stand-ins for the functions ``serve`` and ``batch`` call: each records its arguments."""
    seen: dict[str, tuple] = {}

    def recorder(name, result):
        def record(*args, **kwargs):
            seen[name] = (args, kwargs)
            return result

        return record

    report = BatchReport(output="out.jsonl", rows=1, answered=1, skipped=0, seconds=1.0, engine="x")
    # set in the modules' dicts: getattr would load the lazy attributes (and FastAPI, Ray Serve)
    monkeypatch.setitem(vars(onnxqa.serve), "run_server", recorder("run_server", 0))
    monkeypatch.setattr(onnxqa.batch, "run_batch", recorder("run_batch", report))
    ray_side = sys.modules.get("onnxqa.ray") or importlib.import_module("onnxqa.ray")
    monkeypatch.setitem(vars(ray_side), "serve_until_stopped", recorder("serve_until_stopped", 0))
    return seen


KEY_A, KEY_B = "a" * 16, "b" * 16
SERVE_FLAGS = [
    "--host", "0.0.0.0", "--port", "9000", "--max-body-bytes", "1000", "--request-timeout", "5",
    "--max-batch-windows", "8", "--max-call-ms", "20", "--max-wait-ms", "1.5", "--max-queue", "10",
    "--max-queue-windows", "100",
    "--max-request-windows", "50", "--max-documents", "7", "--api-key", KEY_A, "--api-key", KEY_B,
    "--api-key-file", "keys.txt", "--protect-metrics", "--no-memory-arena",
    "--device", "cpu", "--precision", "fp32", "--threads", "2",
]  # fmt: skip
BATCHING = BatchSettings(
    max_windows=8, max_call_ms=20.0, max_wait_ms=1.5, max_queue=10, max_queue_windows=100, max_request_windows=50
)
COMMON = {
    "host": "0.0.0.0",
    "port": 9000,
    "device": "cpu",
    "precision": "fp32",
    "threads": 2,
    "batching": BATCHING,
    "max_body_bytes": 1000,
    "request_timeout": 5.0,
    "arena": False,
    "api_keys": [KEY_A, KEY_B],
    "api_key_file": "keys.txt",
    "protect_metrics": True,
    "max_documents": 7,
}


def test_serve_flags_reach_run_server(calls):
    assert main(["serve", "m", *SERVE_FLAGS, "--log-level", "info", "--workers", "3"]) == 0
    args, kwargs = calls["run_server"]
    assert args == ("m",) and kwargs == {**COMMON, "log_level": "info", "workers": 3}
    assert main(["serve", "m"]) == 0
    _, kwargs = calls["run_server"]
    assert kwargs["batching"] == BatchSettings() and kwargs["api_keys"] == [] and kwargs["api_key_file"] is None
    assert (kwargs["host"], kwargs["port"], kwargs["workers"], kwargs["log_level"]) == ("127.0.0.1", 8000, 1, "warning")
    assert kwargs["arena"] is True and kwargs["protect_metrics"] is False


def test_serve_ray_flags_reach_serve_until_stopped(calls):
    pytest.importorskip("ray")
    ray_flags = ["--replicas", "3", "--num-cpus", "2", "--num-gpus", "0.5"]
    assert main(["serve", "m", "--ray", "10.0.0.1:6379", *SERVE_FLAGS, *ray_flags]) == 0
    args, kwargs = calls["serve_until_stopped"]
    assert args == ("m",)
    assert kwargs == {**COMMON, "address": "10.0.0.1:6379", "replicas": 3, "num_cpus": 2.0, "num_gpus": 0.5}
    assert main(["serve", "m", "--ray", "--log-level", "warning", "--workers", "1"]) == 0  # the defaults, said
    _, kwargs = calls["serve_until_stopped"]
    assert kwargs["address"] is None and kwargs["batching"] == BatchSettings() and kwargs["replicas"] == 1
    assert "run_server" not in calls


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["serve", "m", "--ray", "--workers", "2"], "--workers does not apply with --ray"),
        (["serve", "m", "--ray", "--log-level", "debug"], "--log-level does not apply with --ray"),
        (["serve", "m", "--ray", "--workers", "4", "--log-level", "info"], "--workers and --log-level do not apply"),
        (["batch", "m", "in.jsonl", "out.jsonl", "--ray", "--threads", "2"], "--threads does not apply with --ray"),
        (["batch", "m", "in.jsonl", "out.jsonl", "--actors", "3"], "--actors does not apply without --ray"),
        (["batch", "m", "in.jsonl", "out.jsonl", "--threads-per-actor", "1"], "--threads-per-actor does not apply"),
    ],
)
def test_flags_that_do_not_apply_are_refused(calls, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith(f"onnxqa {argv[0]}: error:")
    assert not calls


def test_batch_flags_reach_run_batch(calls):
    pytest.importorskip("ray")
    argv = ["batch", "m", "in.jsonl", "out.jsonl", "--precision", "int8", "--chunk-rows", "16", "--quiet"]
    assert main([*argv, "--threads", "3", "--max-answer-len", "4", "--handle-impossible-answer"]) == 0
    args, kwargs = calls["run_batch"]
    assert args == ("m", "in.jsonl", "out.jsonl")
    assert kwargs["backend"] == InProcess(precision="int8", threads=3)
    assert kwargs["options"] == {"handle_impossible_answer": True, "max_answer_len": 4}
    assert (kwargs["chunk_rows"], kwargs["progress"], kwargs["resume"], kwargs["force"]) == (16, False, False, False)
    assert main([*argv, "--ray", "--threads-per-actor", "2"]) == 0
    assert calls["run_batch"][1]["backend"] == OnRay(threads_per_actor=2, precision="int8")
    assert main([*argv, "--ray", "10.0.0.1:6379", "--actors", "5"]) == 0
    assert calls["run_batch"][1]["backend"] == OnRay(address="10.0.0.1:6379", actors=5, precision="int8")
