"""`onnxqa batch` in-process: answers equal the embedded API's, failed rows reported by id while
the run goes on, atomic output, resume after an interruption, JSONL and Parquet; the answer columns
of :mod:`onnxqa._rows` (grouping by options, an error of its own for each row).

On the torch-free ``fake_model``: the job's answers are compared with the same model's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import onnxqa
from onnxqa.batch import ANSWER_COLUMNS, InProcess, OnRay, answer_columns, run_batch
from onnxqa.runtime import QuestionAnswerer

from conftest import ROOT

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ROWS = 60


FP32 = InProcess(device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def model(fake_model):
    """A model directory built without torch."""
    return fake_model


@pytest.fixture(scope="module")
def qa(model):
    return onnxqa.load(model, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def rows(squad_v2):
    out = [{"id": q["id"], "question": q["question"], "context": q["context"]} for q in squad_v2[:ROWS]]
    out[3]["handle_impossible_answer"] = True
    out[4]["max_answer_len"] = 3
    out[5]["question"] = "   "  # fails: empty question
    out[7]["max_answer_len"] = 0  # fails: bad option
    out[9]["max_seq_len"] = 100_000  # fails: longer than the model's positions (found by qa.batch)
    return out


def expected(qa, row):
    """The embedded API's best answer for a row, or None when it raises."""
    options = {k: row[k] for k in ("handle_impossible_answer", "max_answer_len", "max_seq_len") if k in row}
    try:
        answers = qa(row["question"], row["context"], **options)
    except onnxqa.InputError:
        return None
    best = answers[0]
    return {"answer": best.text, "score": best.score, "start": best.start, "end": best.end, "is_impossible": False}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def columns(rows):
    """Rows with every key (None where absent), as a Parquet table needs them."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])


def without_nulls(rows):
    return [{k: v for k, v in r.items() if v is not None or k in ANSWER_COLUMNS} for r in rows]


def check(qa, rows, out_rows):
    assert [r["id"] for r in out_rows] == [r["id"] for r in rows]
    for row, out in zip(rows, out_rows):
        want = expected(qa, row)
        if want is None:
            assert out["error"] and out["answer"] is None, out
        else:
            assert out["error"] is None, out
            assert {k: out[k] for k in want} == want
            assert {k: out[k] for k in row} == row  # input columns kept


def test_jsonl_answers_equal_the_embedded_api(qa, model, rows, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, rows)
    report = run_batch(model, src, out, backend=FP32, chunk_rows=16, progress=False)
    check(qa, rows, read_jsonl(out))
    assert sorted(i for i, _ in report.failed) == sorted(rows[i]["id"] for i in (5, 7, 9))
    assert (report.rows, report.answered, report.skipped) == (ROWS, ROWS, 0)
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_parquet_keeps_the_schema_and_answers_equal(qa, model, rows, tmp_path):
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    table = columns(rows)
    pq.write_table(table, src, row_group_size=25)
    report = run_batch(model, src, out, backend=FP32, chunk_rows=16, progress=False)
    result = pq.read_table(out)
    assert result.schema.names == table.schema.names + list(ANSWER_COLUMNS)
    assert result.schema.field("score").type == pa.float64()
    check(qa, rows, without_nulls(result.to_pylist()))
    assert len(report.failed) == 3


def test_broken_lines_fail_alone(qa, model, rows, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [json.dumps(r) for r in rows[:4]]
    lines.insert(2, "{not json")
    lines.insert(3, "[1, 2]")
    src.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    report = run_batch(model, src, out, backend=FP32, progress=False)
    got = read_jsonl(out)
    assert len(got) == 6 and [r["error"] is not None for r in got] == [False, False, True, True, False, False]
    assert "line 3 is not valid JSON" in got[2]["error"] and "line 4 is not a JSON object" in got[3]["error"]
    assert [label for label, _ in report.failed] == ["row 2", "row 3"]
    assert got[5]["answer"] == expected(qa, rows[3])["answer"]


def test_interrupted_run_leaves_no_output_and_resumes(qa, model, rows, tmp_path, monkeypatch):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, rows)
    original = QuestionAnswerer.batch

    def fail_later(self, pairs, **options):
        pairs = list(pairs)
        if (rows[40]["question"], rows[40]["context"]) in pairs:  # the third chunk of 16
            raise RuntimeError("injected failure")
        return original(self, pairs, **options)

    monkeypatch.setattr(QuestionAnswerer, "batch", fail_later)
    with pytest.raises(RuntimeError, match="injected"):
        run_batch(model, src, out, backend=FP32, chunk_rows=16, progress=False)
    assert not out.exists()
    partial = tmp_path / "out.jsonl.partial"
    written = sum(len(read_jsonl(p)) for p in partial.glob("part-*.jsonl"))
    assert written == 32
    monkeypatch.setattr(QuestionAnswerer, "batch", original)

    with pytest.raises(onnxqa.InputError, match="--resume"):
        run_batch(model, src, out, backend=FP32, progress=False)
    report = run_batch(model, src, out, backend=FP32, chunk_rows=16, resume=True, progress=False)
    assert (report.skipped, report.answered, report.rows) == (written, ROWS - written, ROWS)
    check(qa, rows, read_jsonl(out))
    assert not partial.exists()


def test_resume_answers_only_new_rows(qa, model, rows, tmp_path):
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pq.write_table(columns(rows[:20]), src)
    run_batch(model, src, out, backend=FP32, progress=False)
    with pytest.raises(onnxqa.InputError, match="exists"):
        run_batch(model, src, out, backend=FP32, progress=False)
    pq.write_table(columns(rows[:30]), src)
    report = run_batch(model, src, out, backend=FP32, resume=True, progress=False)
    assert (report.skipped, report.answered, report.rows) == (20, 10, 30)
    result = pq.read_table(out).to_pylist()
    check(qa, rows[:30], without_nulls(result))


def test_outputs_never_overwrite_inputs(model, rows, tmp_path):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, rows[:2])
    for output, needle in ((src, "never writes over"), (model / "x.jsonl", "never writes over")):
        with pytest.raises(onnxqa.InputError, match=needle):
            run_batch(model, src, output, progress=False)
    with pytest.raises(onnxqa.InputError, match="format"):
        run_batch(model, src, tmp_path / "out.parquet", progress=False)
    with pytest.raises(onnxqa.InputError, match="top_k"):
        run_batch(model, src, tmp_path / "out.jsonl", options={"top_k": 2}, progress=False)
    assert src.read_text(encoding="utf-8").count("\n") == 2


def test_cli_reports_failed_rows_and_exits_1(qa, model, rows, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, rows[:8])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "onnxqa", "batch", str(model), str(src), str(out), "--precision", "fp32", "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "8 rows answered" in result.stderr and "2 failed" in result.stderr
    assert f"failed: {rows[5]['id']}: question is empty" in result.stderr
    assert "answering" not in result.stderr  # --quiet: no bar
    check(qa, rows[:8], read_jsonl(out))


def test_backends_are_checked(model, rows, tmp_path):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, rows[:2])
    with pytest.raises(onnxqa.InputError, match="backend"):
        run_batch(model, src, tmp_path / "out.jsonl", backend="ray", progress=False)
    for bad in ({"actors": 0}, {"threads_per_actor": True}, {"actors": 1.5}):
        with pytest.raises(onnxqa.InputError, match="integer >= 1"):
            OnRay(**bad)
    assert not (tmp_path / "out.jsonl").exists()


def test_rows_with_the_same_options_share_a_call_and_bad_rows_fail_alone(qa, monkeypatch):
    """One ``qa.batch`` call per group of options; a row its group's call rejects is found and fails
    alone, with the message ``qa`` gives it; rows that cannot be text never join a shared call."""
    questions = ["Who designed it?", "Where is it?", None, "When?", "   ", "What?", "Why?"]
    contexts = ["Ada designed it.", "It is in Paris.", "Text.", "In 1931.", "Text.", "A bridge.", "To cross."]
    options = [{}, {"max_answer_len": 3}, {}, {}, {}, {"max_seq_len": 100_000}, {"max_seq_len": 100_000}]
    calls = []
    batch = qa.batch

    def counting(pairs, **opts):
        calls.append(len(pairs))
        return batch(pairs, **opts)

    monkeypatch.setattr(qa, "batch", counting)
    out = answer_columns(qa, questions, contexts, options)
    monkeypatch.undo()
    assert out["error"][2] == "question must be a str, got NoneType"
    assert out["error"][4] == "question is empty or whitespace only; pass some text"
    assert all("max_seq_len" in out["error"][i] and out["answer"][i] is None for i in (5, 6))
    for i in (0, 1, 3):
        best = qa(questions[i], contexts[i], **options[i])[0]
        assert out["error"][i] is None
        assert (out["answer"][i], out["score"][i], out["start"][i], out["end"][i]) == (
            best.text,
            best.score,
            best.start,
            best.end,
        )
    # rows 0 and 3 together, row 1 alone, rows 5 and 6 together then one by one, rows 2 and 4 alone
    assert sorted(calls) == sorted([2, 1, 2, 1, 1, 1, 1])
