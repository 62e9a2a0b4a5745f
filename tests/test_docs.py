"""The documentation site builds strictly, and its examples and facts stay true.

Building needs the ``docs`` extra (mkdocs, mkdocs-material, mkdocstrings); it is part of the
development install. Code blocks marked ``<!-- test:NAME -->`` run in the tests that name them
(here, in ``test_readme.py`` and ``test_serve.py``): :func:`test_every_marked_block_is_run_by_a_test`
keeps it so.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

import onnxqa
from test_readme import DOCS, markdown_block, markdown_files, markers

from conftest import ROOT


def _need_mkdocs() -> None:
    if importlib.util.find_spec("mkdocs") is None:
        reason = 'mkdocs is not installed: pip install -e ".[docs]"'
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)


def test_docs_build_strictly(tmp_path):
    """``mkdocs build --strict``: any warning (a broken link or anchor, a docstring mkdocstrings
    cannot render, a page left out of the nav) fails the build."""
    _need_mkdocs()
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-5000:]
    assert (site / "index.html").is_file()
    reference = (site / "reference" / "onnxqa" / "index.html").read_text(encoding="utf-8")
    for name in ("onnxqa.load", "onnxqa.QuestionAnswerer", "onnxqa.QAOptions", "onnxqa.BatchSettings"):
        assert f'id="{name}"' in reference, f"{name} missing from the API reference"
    serve = (site / "reference" / "serve" / "index.html").read_text(encoding="utf-8")
    assert 'id="onnxqa.serve.create_app"' in serve, "create_app missing from the API reference"


def test_every_marked_block_is_run_by_a_test():
    """Each ``<!-- test:NAME -->`` marks one code block, once in README.md and docs/, and some test
    asks for ``"test:NAME"``."""
    found: dict[str, list[str]] = {}
    for path in markdown_files():
        for marker in markers(path):
            found.setdefault(marker, []).append(str(path.relative_to(ROOT)))
            markdown_block(marker, path)  # followed by a code block
    assert {"ci:install", "ci:test"} <= found.keys()
    assert not {m: p for m, p in found.items() if len(p) > 1}, "markers must be unique"
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py"))
    unused = sorted(m for m in found if m.startswith("test:") and f'"{m}"' not in tests)
    assert not unused, f"marked blocks no test runs: {unused}"


def test_docs_home_repeats_the_readme_quick_start():
    assert markdown_block("test:index-cli", "docs/index.md") == markdown_block("test:readme-cli", "README.md")
    assert markdown_block("test:index-python", "docs/index.md") == markdown_block("test:readme-python", "README.md")
    development = (DOCS / "development.md").read_text(encoding="utf-8")
    for block in ("ci:install", "ci:test"):
        assert markdown_block(block, "README.md") in development


def test_docs_chart_is_the_benchmark_chart():
    """mkdocs only serves files under docs/: its copy of the chart must be the benchmark's own."""
    original = ROOT / "benchmarks" / "results" / "amd-epyc-2c.png"
    assert (DOCS / "assets" / "amd-epyc-2c.png").read_bytes() == original.read_bytes(), (
        "docs/assets/amd-epyc-2c.png differs from benchmarks/results/amd-epyc-2c.png: copy it again"
    )


def test_readme_links_point_at_files():
    """mkdocs checks the links of docs/; the README's are checked here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing


def test_version_is_written_once():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "onnxqa.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(\S*)", onnxqa.__version__)


def test_changelog_has_one_heading_per_kind():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    unreleased = text.split("## Unreleased", 1)[1].split("\n## ", 1)[0]
    kinds = re.findall(r"^### (.+)$", unreleased, re.MULTILINE)
    assert len(kinds) == len(set(kinds)), kinds
    assert set(kinds) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds


def test_async_example_runs_as_written(tmp_path, tiny):
    shutil.copytree(tiny, tmp_path / "out" / "my-model")
    run = subprocess.run(
        [sys.executable, "-c", markdown_block("test:async-api", "docs/serving.md")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(run.stdout.strip().splitlines()) == 2, run.stdout
