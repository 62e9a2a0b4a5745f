"""schemathesis (every check) against `onnxqa serve`: the OpenAPI description says what the server
enforces. Bounded in examples and time, with a fixed seed; the server runs a fake model (no export)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import ROOT
from serving import running_server

pytest.importorskip("schemathesis")


@pytest.mark.parametrize("keys", [False, True], ids=["open", "with-keys"])
def test_schemathesis_finds_no_failures(fake_model, keys):
    key = "k" * 32
    env = {"ONNXQA_API_KEY": key} if keys else {}
    schemathesis = shutil.which("schemathesis") or str(ROOT / ".venv" / "bin" / "schemathesis")
    with running_server(fake_model, env=env) as base:
        cmd = [schemathesis, "--config-file", str(ROOT / "tests" / "schemathesis.toml"), "run"]
        cmd += [f"{base}/openapi.json", "--checks", "all", "--max-examples", "12", "--seed", "20261202"]
        cmd += ["--max-time", "8" if keys else "15", "--request-timeout", "10", "--no-color"]
        if keys:
            cmd += ["--header", f"Authorization: Bearer {key}"]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout or " passed" in run.stdout, run.stdout[-3000:]
