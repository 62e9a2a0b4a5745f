"""Shape buckets: which windows share an inference call, and the shape that call is padded to.

Without buckets, windows sorted by length are cut into batches of ``batch_size`` and each batch is
padded to its longest window: every call may have a new shape. With buckets, a window's width is
rounded up to one of a few fixed widths and a batch's row count up to a power of two (at most
``batch_size``), so the session sees a handful of shapes again and again: what CUDA graphs need
(one graph per shape, captured once, replayed) and what keeps the GPU's kernel choice stable.
Padding never changes an answer: padded tokens are masked, padded rows are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import InputError

__all__ = ["DEFAULT_WIDTHS", "Batch", "Buckets", "plan_batches", "resolve_buckets"]

DEFAULT_WIDTHS = (64, 128, 192, 256, 384)
_STEP = 64  # windows longer than the widest bucket are padded to a multiple of this


@dataclass(frozen=True)
class Buckets:
    """Fixed widths (tokens) windows are padded to; row counts are powers of two."""

    widths: tuple[int, ...] = DEFAULT_WIDTHS

    def __post_init__(self) -> None:
        if not self.widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths):
            raise InputError(f"bucket widths must be positive integers, got {self.widths!r}")
        if list(self.widths) != sorted(set(self.widths)):
            raise InputError(f"bucket widths must be increasing, got {self.widths!r}")

    def width(self, tokens: int) -> int:
        """The smallest bucket width holding ``tokens``; past the widest, a multiple of 64."""
        for w in self.widths:
            if tokens <= w:
                return w
        return -(-tokens // _STEP) * _STEP

    @staticmethod
    def rows(windows: int, batch_size: int) -> int:
        """``windows`` rounded up to a power of two, at most ``batch_size``."""
        return min(1 << (windows - 1).bit_length(), batch_size)


def resolve_buckets(value: object, device: str, max_positions: int) -> Buckets | None:
    """The load option ``buckets``: ``None`` (on for CUDA, off for CPU), ``True``/``False``, or
    the widths themselves.

    Raises:
        InputError: ``value`` is none of these, or a width exceeds the model's positions.
    """
    if value is None:
        value = device == "cuda"
    if value is False:
        return None
    if value is True:
        widths = tuple(w for w in DEFAULT_WIDTHS if w <= max_positions) or (max_positions,)
        return Buckets(widths)
    if isinstance(value, Buckets):
        buckets = value
    elif isinstance(value, (tuple, list)):
        buckets = Buckets(tuple(value))
    else:
        raise InputError(f"buckets must be True, False, None or a sequence of widths, got {value!r}")
    if buckets.widths[-1] > max_positions:
        raise InputError(
            f"bucket width {buckets.widths[-1]} exceeds the model's {max_positions} positions; "
            f"use widths <= {max_positions}"
        )
    return buckets


@dataclass(frozen=True)
class Batch:
    """One inference call: the windows it holds (indices, shortest first) and its padded shape."""

    windows: list[int]
    rows: int
    width: int


def plan_batches(
    lengths: Sequence[int], batch_size: int, buckets: Buckets | None, max_width: int | None = None
) -> list[Batch]:
    """Windows (by their token counts) sorted by length and cut into inference calls.

    Without ``buckets`` a call holds up to ``batch_size`` windows and is padded to its longest one.
    With ``buckets`` a call holds windows of one bucket width only and its rows are padded to a
    power of two. ``max_width`` caps a padded width (the model's positions).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out: list[Batch] = []
    if buckets is None:
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            out.append(Batch(rows, len(rows), max(lengths[i] for i in rows)))
        return out
    group: list[int] = []
    group_width = 0
    for i in order:
        width = buckets.width(lengths[i])
        if max_width is not None:
            width = max(min(width, max_width), lengths[i])
        if group and (width != group_width or len(group) == batch_size):
            out.append(Batch(group, Buckets.rows(len(group), batch_size), group_width))
            group = []
        group.append(i)
        group_width = width
    if group:
        out.append(Batch(group, Buckets.rows(len(group), batch_size), group_width))
    return out
