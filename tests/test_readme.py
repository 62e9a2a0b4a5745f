"""The README's and the docs' examples run as written, against a local checkpoint.

A code block preceded by a line ``<!-- test:NAME -->`` (in README.md or a page under docs/) is run
by a test that asks for it by name: :func:`markdown_block` reads it from any of those files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, make_checkpoint, shared_path

DOCS = ROOT / "docs"
MARKER = re.compile(r"^<!-- ((?:test|ci):[\w-]+) -->$")


def markdown_files() -> list[Path]:
    """README.md, then every page of the documentation."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def markers(path: Path) -> list[str]:
    """The block markers (``test:NAME``, ``ci:NAME``) of one markdown file, in order."""
    return [m.group(1) for line in path.read_text(encoding="utf-8").splitlines() if (m := MARKER.match(line))]


def markdown_block(marker: str, path: str | Path | None = None) -> str:
    """The fenced code block right after the line ``<!-- marker -->``.

    ``path`` (relative to the repository root, or absolute) names the file; without it README.md
    is searched first, then docs/.
    """
    paths = [ROOT / path] if path is not None else markdown_files()
    for file in paths:
        lines = file.read_text(encoding="utf-8").splitlines()
        if f"<!-- {marker} -->" not in lines:
            continue
        start = lines.index(f"<!-- {marker} -->") + 1
        assert lines[start].startswith("```"), f"{file.name}: <!-- {marker} --> is not followed by a code block"
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
        return "\n".join(lines[start + 1 : end])
    raise LookupError(f"no block marked <!-- {marker} --> in {', '.join(str(p.relative_to(ROOT)) for p in paths)}")


def readme_block(marker: str) -> str:
    """The block marked ``<!-- marker -->`` in README.md or, failing that, in docs/."""
    return markdown_block(marker)


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_quickstart_and_python_api_run_as_written(tmp_path):
    make_checkpoint(shared_path("seeds", "bert-tiny-finetuned-squadv2"), tmp_path / "my-checkpoint")
    env = _env()
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


def test_readme_quick_start_runs_as_written(tmp_path):
    """The README's first commands, with a local checkpoint for the hub id (no network in tests)."""
    make_checkpoint(shared_path("seeds", "bert-tiny-finetuned-squadv2"), tmp_path / "my-checkpoint")
    cli = readme_block("test:readme-cli")
    assert "deepset/tinyroberta-squad2" in cli
    shell = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", cli.replace("deepset/tinyroberta-squad2", "./my-checkpoint")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert shell.returncode == 0, shell.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "my-model" / "onnxqa.json").read_text())
    assert set(manifest["variants"]) == {"fp32", "int8"}  # the default precisions

    python = subprocess.run(
        [sys.executable, "-c", readme_block("test:readme-python")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert python.returncode == 0, python.stderr[-3000:]
    text, score, start, end = python.stdout.strip().splitlines()[-1].rsplit(" ", 3)
    context = "The Harlow Bridge was designed by Margaret Ellison and opened to traffic in 1931."
    assert context[int(start) : int(end)] == text and 0 <= float(score) <= 1


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
    install = markdown_block("ci:install", "README.md")
    assert "torch==2.13.0" in install
    # the docs build runs in the test suite; the OpenVINO backend is tested too
    assert ".[export,openvino,serve,haystack,ray,docs,dev]" in install
    assert "pytest" in markdown_block("ci:test", "README.md")


def test_readme_is_a_front_door():
    """Short; the user install and both quick starts on the first screen; development at the end."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, len(lines)
    first = {
        "pip install": next(i for i, line in enumerate(lines) if line.startswith("pip install onnxqa")),
        "command": next(i for i, line in enumerate(lines) if line.startswith("onnxqa ")),
        "import": lines.index("import onnxqa"),
    }
    assert all(i < 80 for i in first.values()), first
    development = lines.index("<!-- ci:install -->")
    assert development > max(first.values()) and lines.index("<!-- ci:test -->") > development
    assert "pip install -e" not in "\n".join(lines[:development])  # the user install comes first
