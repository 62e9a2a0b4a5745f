"""`onnxqa serve` in a subprocess on 127.0.0.1, for the tests that need a real HTTP server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from conftest import ROOT

__all__ = ["free_port", "running_server", "server_env", "start_server", "stop_server", "wait_ready"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server subprocess: this checkout's sources first on the path."""
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def start_server(
    model_dir: Path, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "onnxqa.cli", "serve", str(model_dir), "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=server_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen[str], base: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the server did not become ready")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen[str], seconds: float = 60) -> int:
    """SIGTERM, then the exit code (killed, and the test failed, if it takes longer than ``seconds``)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the server did not stop within its graceful-shutdown time") from None


@contextlib.contextmanager
def running_server(model_dir: Path, args: Sequence[str] = (), env: dict[str, str] | None = None) -> Iterator[str]:
    """A ready server's base URL; stopped (SIGTERM) at the end."""
    proc, base = start_server(model_dir, args, env)
    try:
        wait_ready(proc, base)
        yield base
    finally:
        if proc.poll() is None:
            stop_server(proc)
