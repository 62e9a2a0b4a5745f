"""Progress on stderr: counter bars from tqdm, and numbered step lines for the exporter.

Counter bars (how many questions or rows of a known total are done, and how fast) are tqdm's.
The exporter's steps are not a counter: each is a line of its own, ``[2/5] optimizing ...``
followed by ``done in 3.1s`` and notes (fused-operator counts, validation results) that must
stay in the terminal's scrollback and read the same in a CI log. A tqdm bar redraws one line in
place and would overwrite them, so :class:`Steps` stays a ten-line printer.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["Steps", "bar"]


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


def bar(total: int | None, label: str, *, unit: str = "question", enabled: bool = True, initial: int = 0) -> tqdm:
    """A tqdm counter bar on stderr (``update(n)``, ``close()``); draws nothing when not ``enabled``."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=label, unit=f" {unit}s", initial=initial, disable=not enabled, file=sys.stderr, smoothing=0.1
    )
