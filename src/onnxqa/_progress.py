"""Minimal progress reporting on stderr (no dependency): numbered steps and a counter bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Bar", "Steps"]


class Steps:
    """Prints ``[i/n] label ... done in 1.2s`` for each step of a long job."""

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.stream = stream if stream is not None else sys.stderr

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.done += 1
        if self.enabled:
            print(f"[{self.done}/{self.total}] {label} ...", file=self.stream, flush=True)
        t0 = time.perf_counter()
        yield
        if self.enabled:
            print(f"      done in {time.perf_counter() - t0:.1f}s", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"      {text}", file=self.stream, flush=True)


class Bar:
    """A counter bar ``label  340/1000 [34%] 12.3/s`` redrawn in place at most 10 times a second."""

    def __init__(self, total: int, label: str, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total, self.label, self.n, self.enabled = total, label, 0, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = self._last = time.perf_counter()

    def update(self, n: int) -> None:
        self.n += n
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.n >= self.total):
            self._last = now
            rate = self.n / max(now - self.t0, 1e-9)
            pct = 100 * self.n // max(self.total, 1)
            self.stream.write(f"\r{self.label}  {self.n}/{self.total} [{pct}%] {rate:.1f}/s")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
