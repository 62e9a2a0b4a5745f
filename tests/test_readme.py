"""The README's quick start and Python API run as written, against a local checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, make_checkpoint, shared_path


def readme_block(marker: str) -> str:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(f"<!-- {marker} -->") + 1
    assert lines[start].startswith("```")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    return "\n".join(lines[start + 1 : end])


def test_quickstart_and_python_api_run_as_written(tmp_path):
    make_checkpoint(shared_path("seeds", "bert-tiny-finetuned-squadv2"), tmp_path / "my-checkpoint")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    shell = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block("test:quickstart-local")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert shell.returncode == 0, shell.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "my-model" / "onnxqa.json").read_text())
    assert set(manifest["variants"]) == {"fp32", "int8"}
    answers = json.loads(shell.stdout[shell.stdout.index("\n[\n") :])  # the --json output
    context = (tmp_path / "context.txt").read_text()
    assert 1 <= len(answers) <= 3
    assert all(context[a["start"] : a["end"]] == a["answer"] for a in answers)

    python = subprocess.run(
        [sys.executable, "-c", readme_block("test:python-api")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert python.returncode == 0, python.stderr[-3000:]
    assert "cpu int8" in python.stdout


def test_many_documents_and_haystack_examples_run_as_written(tmp_path, tiny):
    shutil.copytree(tiny, tmp_path / "out" / "my-model")
    for marker in ("test:documents-api", "test:haystack"):
        run = subprocess.run([sys.executable, "-c", readme_block(marker)], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0, f"{marker}: {run.stderr[-3000:]}"
        lines = run.stdout.strip().splitlines()
        assert len(lines) == 4, run.stdout  # 3 answers and the no-answer entry


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "block ci:install" in ci and "block ci:test" in ci
    assert "torch==2.13.0" in readme_block("ci:install")
    assert "pytest" in readme_block("ci:test")
