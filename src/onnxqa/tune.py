"""``onnxqa tune MODEL_DIR``: measure, on this machine, which CPU variant (onnxruntime's fp32 and
int8, OpenVINO's int8 where the directory has it and the openvino extra is installed), thread count
and windows per call answer fastest, and keep the winner beside the model for :func:`onnxqa.load` and
``onnxqa serve``.

The choice is written to ``MODEL_DIR/onnxqa.tuning.json`` with the machine it was measured on (CPU
model, logical cores, onnxruntime, OpenVINO and onnxqa versions) and the hashes of the variants measured.
``load()`` uses it only on that machine, for those files, and only for what the caller left open:
``precision="auto"``, ``threads=None`` (and no ``ONNXQA_THREADS``), no ``batch_size``. Anywhere
else, or without tuning, the defaults are as before. What is measured is throughput: questions per
second of ``batch()`` over 32 generated question/context pairs whose windows are as long and as
unequal as real questions' (the same each time), or over the caller's own questions, after a
warm-up call.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._errors import InputError, ModelLoadError
from ._manifest import BACKENDS, read_manifest, variant_status
from ._paths import write_text_atomic
from .runtime import TUNING, TUNING_FORMAT, machine_key, variant_identity

__all__ = ["BATCH_SIZES", "CLOSE", "LEADERS", "TUNING", "tune"]

BATCH_SIZES = (1, 4, 16)
LEADERS = 2  # variants timed at every windows per call and thread count after the first round
MARGIN = 0.03  # a setting must beat the defaults by this much to be chosen over them (timed apart)
# the decision: each variant's fastest setting other than the defaults, where it was timed at
# least 1 - CLOSE times the defaults' rate, is timed in turns with them, TURNS passes each; a host
# whose speed drifts by a fifth within seconds cannot rank settings timed one after the other
CLOSE = 0.10
TURNS = 3
IN_TURNS_MARGIN = 0.01
IN_TURNS_SHARE = 4  # of ``seconds``: as much as that many settings' timings, kept for the passes in turns
PAUSE = 0.05  # seconds before each pass in turns: longer than the other's idle thread pool spins
# after each variant's first timing, a setting is left out if it would end later than this many
# times ``seconds`` from the start (its duration estimated from that variant's first timing): on
# a large model, loading and one pass over the pairs can each outgrow the share of ``seconds``
LIMIT = 1.8
_clock = time.perf_counter


def _thread_counts() -> list[int]:
    cores = os.cpu_count() or 1
    counts = {1, cores}
    n = 2
    while n < cores:
        counts.add(n)
        n *= 2
    return sorted(counts)


def _longest(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The four longest pairs: a warm-up of the thread pool and of memory for the longest windows."""
    return sorted(pairs, key=lambda p: len(p[0]) + len(p[1]))[-4:]


def _measure(qa: Any, pairs: list[tuple[str, str]], batch_size: int, seconds: float) -> float:
    """Questions per second of ``qa.batch(pairs)`` with ``batch_size``: the whole number of passes
    nearest to ``seconds`` (at least one)."""
    qa.batch(_longest(pairs), batch_size=batch_size)  # warm-up, at this call size
    passes, start = 0, time.perf_counter()
    while True:
        qa.batch(pairs, batch_size=batch_size)
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed + elapsed / passes / 2 >= seconds:  # another pass would end further from it
            return passes * len(pairs) / elapsed


def _time_settings(
    model_dir: Path,
    precision: str,
    threads: int,
    batch_sizes: Sequence[int],
    pairs: list[tuple[str, str]],
    seconds: float,
    progress: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    """Questions per second of one variant at one thread count, at each of ``batch_sizes``."""
    from .runtime import load

    out = []
    with load(model_dir, device="cpu", precision=precision, threads=threads) as qa:
        # OpenVINO compiles kernels for each new window shape: every shape seen once before the
        # clock, as a long-running process has long done (onnxruntime's warm-up is _measure's)
        if precision in BACKENDS:
            qa.batch(pairs)
        for batch_size in batch_sizes:
            rate = _measure(qa, pairs, batch_size, seconds)
            out.append({"precision": precision, "threads": threads, "batch_size": batch_size, "questions_per_s": rate})
            if progress:
                what = f"{precision:>13}, {threads} thread(s), {batch_size:>2} windows per call"
                progress(f"{what}: {rate:.1f} questions/s")
    return out


def _search(
    model_dir: Path,
    precisions: list[str],
    threads: list[int],
    sizes: tuple[int, ...],
    untuned: tuple[str, int, int],
    pairs: list[tuple[str, str]],
    seconds: float,
    progress: Callable[[str], None] | None,
    start: float,
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]], float]:
    """tune's timings since ``start`` (``_clock()``): (measured, the defaults' entry, the settings
    left out, seconds per setting)."""
    first = [(p, threads[-1]) for p in precisions]
    leading = min(LEADERS, len(first))
    # timings: each variant once, the leaders' at every size and thread count, the defaults' again,
    # and the time the last word in turns takes (about IN_TURNS_SHARE timings' worth)
    each = seconds / (len(first) + leading * (len(sizes) + len(threads) - 1) + 1 + IN_TURNS_SHARE)
    took: dict[str, float] = {}
    measured = []
    for p, n in first:
        t0 = _clock()
        measured += _time_settings(model_dir, p, n, sizes[:1], pairs, each, progress)
        took[p] = _clock() - t0
    default = next(m for m in measured if (m["precision"], m["threads"], m["batch_size"]) == untuned)
    leaders = sorted(measured, key=lambda m: m["questions_per_s"], reverse=True)[:leading]
    skipped: list[dict[str, Any]] = []

    def timed(precision: str, n: int, batch_sizes: Sequence[int]) -> list[dict[str, Any]]:
        """The setting's timings, or none if it would end past the limit (then listed as skipped)."""
        rate = next(m["questions_per_s"] for m in measured if m["precision"] == precision)
        one_more = max(each, len(pairs) / rate) * 1.2  # another size: at least one pass, and a warm-up
        if _clock() - start + took[precision] + (len(batch_sizes) - 1) * one_more > LIMIT * seconds:
            skipped.append({"precision": precision, "threads": n, "batch_sizes": list(batch_sizes)})
            if progress:
                progress(f"{precision:>13}, {n} thread(s): left out, it would end past {LIMIT * seconds:.0f} s")
            return []
        return _time_settings(model_dir, precision, n, batch_sizes, pairs, each, progress)

    # the defaults are timed twice as well, so that a leader is not favoured by its second chance
    second = [*leaders, *([default] if default not in leaders else [])]
    for m in second:
        again = timed(m["precision"], m["threads"], sizes if m in leaders else sizes[:1])
        m["questions_per_s"] = max([m["questions_per_s"], *(a["questions_per_s"] for a in again[:1])])
        measured += again[1:]
    for m in leaders:
        for n in threads[:-1]:
            measured += timed(m["precision"], n, sizes[:1])
    return measured, default, skipped, each


def _in_turns(
    model_dir: Path, settings: list[dict[str, Any]], pairs: list[tuple[str, str]], deadline: float
) -> list[float] | None:
    """Seconds each of ``settings`` took to answer ``pairs`` ``TURNS`` times, timed in turns: all
    loaded at once, each warmed (OpenVINO by a whole pass, onnxruntime by the longest pairs), then
    a pass of each in turn (the order rotated each round), so that a slow moment of the host falls
    on all of them. None, with nothing timed, where the passes would end past ``deadline``
    (``_clock()``)."""
    from contextlib import ExitStack

    from .runtime import load

    def one_pass(qa: Any, setting: dict[str, Any]) -> float:
        time.sleep(PAUSE)
        t0 = _clock()
        qa.batch(pairs, batch_size=setting["batch_size"])
        return _clock() - t0

    one = [len(pairs) / s["questions_per_s"] * 1.2 for s in settings]  # a pass of each, with room
    # OpenVINO compiles kernels for each new window shape: a whole pass first; onnxruntime, the longest pairs
    warm = [pairs if s["precision"] in BACKENDS else _longest(pairs) for s in settings]
    warming = sum(t * len(w) / len(pairs) for t, w in zip(one, warm))
    passes = TURNS * (sum(one) + len(settings) * PAUSE)
    if _clock() + warming + passes > deadline:
        return None
    with ExitStack() as stack:
        answerers = [
            stack.enter_context(load(model_dir, device="cpu", precision=s["precision"], threads=s["threads"]))
            for s in settings
        ]
        for qa, setting, first in zip(answerers, settings, warm):
            qa.batch(first, batch_size=setting["batch_size"])  # warm-up: thread pools, memory, kernels
        if _clock() + passes > deadline:
            return None
        spent = [0.0] * len(settings)
        for turn in range(TURNS):
            for k in range(len(settings)):
                i = (k + turn) % len(settings)
                spent[i] += one_pass(answerers[i], settings[i])
    return spent


def _contenders(measured: list[dict[str, Any]], default: dict[str, Any]) -> list[dict[str, Any]]:
    """The settings to time in turns with the defaults: each variant's fastest other setting timed
    at least ``1 - CLOSE`` times the defaults' rate, the ``LEADERS`` fastest of those."""
    best: dict[str, dict[str, Any]] = {}
    for m in measured:
        if m is not default and m["questions_per_s"] >= (1 - CLOSE) * default["questions_per_s"]:
            if m["precision"] not in best or m["questions_per_s"] > best[m["precision"]]["questions_per_s"]:
                best[m["precision"]] = m
    return sorted(best.values(), key=lambda m: m["questions_per_s"], reverse=True)[:LEADERS]


def _decide(
    model_dir: Path,
    measured: list[dict[str, Any]],
    default: dict[str, Any],
    pairs: list[tuple[str, str]],
    deadline: float,
    progress: Callable[[str], None] | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The setting to keep, and how it was decided in turns (None: no setting came close enough to
    be). The defaults and their contenders (:func:`_contenders`) are timed in turns
    (:func:`_in_turns`); the fastest there is kept, a contender only if ``IN_TURNS_MARGIN`` faster
    than the defaults. Where that does not fit before ``deadline``, or they cannot all be loaded at
    once (memory), the fastest setting timed apart is kept if it beat the defaults by ``MARGIN``
    (``times_faster`` None, ``passes`` 0)."""
    contenders = _contenders(measured, default)
    if not contenders:
        return default, None
    settings = [default, *contenders]
    named = [{k: m[k] for k in ("precision", "threads", "batch_size")} for m in settings]
    try:
        spent = _in_turns(model_dir, settings, pairs, deadline)
    except (ModelLoadError, MemoryError) as exc:  # each loaded alone before; together they may not fit
        if progress:
            progress(f"the defaults and their contenders cannot be loaded together ({exc})")
        spent = None
    if spent is None:
        if progress:
            progress(f"not timed in turns; the {MARGIN:.0%} margin over the settings timed apart decides")
        fastest = max(measured, key=lambda m: m["questions_per_s"])
        kept = fastest if fastest["questions_per_s"] >= default["questions_per_s"] * (1 + MARGIN) else default
        return kept, {"settings": named, "times_faster": None, "passes": 0}
    faster = [spent[0] / max(t, 1e-9) for t in spent]  # than the defaults
    i = max(range(len(settings)), key=lambda k: faster[k])
    kept = settings[i] if faster[i] >= 1 + IN_TURNS_MARGIN else default
    if progress:
        for setting, x in zip(settings[1:], faster[1:]):
            what = f"{setting['precision']}, {setting['threads']} thread(s), {setting['batch_size']} per call"
            progress(f"in turns with the defaults: {what}: {x:.3f}x as fast")
    return kept, {"settings": named, "times_faster": [round(x, 4) for x in faster], "passes": TURNS}


def tune(
    model_dir: str | os.PathLike[str],
    *,
    seconds: float = 30.0,
    write: bool = True,
    progress: Callable[[str], None] | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Measure each validated CPU variant of ``model_dir`` with every core, and the ``LEADERS``
    fastest of those at each of ``BATCH_SIZES`` windows per call and at each other thread count (1,
    powers of two), in about ``seconds`` (loading the variants adds to it; after the first round a
    setting that would end past ``LIMIT`` times ``seconds`` is left out and listed); return the
    measurements and the fastest configuration: the defaults, or a setting close to them or
    faster that beat them when the few such were timed in turns with them (:func:`_decide`). With
    ``write`` keep it in
    ``model_dir/onnxqa.tuning.json``. ``pairs``: the (question, context) pairs to time, such as a
    sample of this deployment's own questions (default: :func:`onnxqa.export.tuning_pairs`).

    Raises:
        ModelLoadError: the directory is not a model directory or has no CPU variant.
        InputError: ``seconds`` is not positive, or ``pairs`` is given and empty.
    """
    from .export import tuning_pairs
    from .runtime import AUTO_PRECISION, QAOptions, suited_precisions

    if not seconds > 0:
        raise InputError(f"seconds must be positive, got {seconds!r}")
    source = "given" if pairs is not None else "generated (bundled with onnxqa)"
    pairs = list(tuning_pairs() if pairs is None else pairs)
    if not pairs:
        raise InputError("no question/context pairs to tune on")
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    variants = manifest["variants"]
    # each CPU variant that did not fail its check, whose backend is installed (openvino-int8: the openvino extra)
    precisions = [p for p in suited_precisions(model_dir, "cpu") if variant_status(variants[p]) != "failed"]
    if not precisions:
        raise ModelLoadError(f"{model_dir} has no CPU variant that passed its check at export; nothing to tune")
    # what load() does untuned: int8 where it passed its check, a thread per core, its batch size
    threads, batch = _thread_counts(), QAOptions().resolved(512, 512, "cpu").batch_size
    untuned = (next(p for p in (*AUTO_PRECISION["cpu"], *precisions) if p in precisions), threads[-1], batch)
    # first each variant with every core at the untuned windows per call; then the LEADERS fastest
    # of those at every windows per call (that first rate timed again, the better kept) and at every
    # other thread count: what cannot win is timed once, and one slow moment of the host does not decide
    start = _clock()
    measured, default, skipped, each = _search(
        model_dir,
        precisions,
        threads,
        (batch, *(b for b in BATCH_SIZES if b != batch)),
        untuned,
        pairs,
        seconds,
        progress,
        start,
    )
    best, close_call = _decide(model_dir, measured, default, pairs, start + LIMIT * seconds, progress)
    result = {
        "format": TUNING_FORMAT,
        "machine": machine_key(openvino=any(p in BACKENDS for p in precisions)),
        "variants": {p: variant_identity(variants[p]) for p in precisions},
        "chosen": {k: best[k] for k in ("precision", "threads", "batch_size")},
        "questions_per_s": best["questions_per_s"],
        "measured": measured,
        "pairs": {"count": len(pairs), "source": source},
        "seconds_per_setting": each,
        "skipped": skipped,
        "in_turns": close_call,
        "seconds": round(_clock() - start, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if write:
        write_text_atomic(model_dir / TUNING, json.dumps(result, indent=2) + "\n")
    return result
