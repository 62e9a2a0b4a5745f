"""The command line on a freshly exported model: ask, eval, bench."""

from __future__ import annotations

import json

from onnxqa.cli import main

from conftest import shared_path


def test_ask_text_and_json(tiny, capsys, tmp_path):
    context = "The Harlow Bridge was designed by Margaret Ellison and opened in 1931."
    assert main(["ask", str(tiny), "-q", "Who designed it?", "-c", context, "--top-k", "2", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 2 and all(context[a["start"] : a["end"]] == a["answer"] for a in answers)
    (tmp_path / "c.txt").write_text(context)
    assert main(["ask", str(tiny), "-q", "Who?", "--context-file", str(tmp_path / "c.txt")]) == 0
    assert "[" in capsys.readouterr().out
    assert main(["ask", str(tiny), "-q", "Who?", "--context-file", str(tmp_path / "missing.txt")]) == 2
    assert main(["ask", str(tmp_path), "-q", "Who?", "-c", context]) == 2
    assert "onnxqa.json" in capsys.readouterr().err


def test_eval_on_a_model(tiny, capsys, tmp_path):
    data = shared_path("data", "squad", "dev-v2.0.json")
    preds = tmp_path / "preds.json"
    args = ["eval", str(tiny), str(data), "--limit", "25", "--json", "--quiet", "--predictions", str(preds)]
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


def test_bench(tiny, capsys, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny), "-n", "12", "--json", "--output", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == result
    assert {r["precision"] for r in result["runs"]} == {"fp32", "int8"}
    for r in result["runs"]:
        assert r["device"] == "cpu" and r["questions_per_s"] > 0
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"]
    assert result["machine"]["onnxruntime"] and result["machine"]["logical_cores"] >= 1
