"""``onnxqa eval``: run a model over a SQuAD file and score it with the official metric."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._errors import InputError
from ._paths import check_not_overlapping, write_text_atomic
from ._progress import bar as progress_bar
from .squad import evaluate, load_squad, restrict, squad_version

__all__ = ["predict", "run_eval"]


def predict(
    qa: Any, questions: list[Any], *, v2: bool, batch_size: int | None = None, progress: bool = True
) -> tuple[dict[str, str], dict[str, float]]:
    """Official-format predictions (id -> text) and no-answer probabilities (id -> null score)."""
    preds: dict[str, str] = {}
    na_probs: dict[str, float] = {}
    bar = progress_bar(len(questions), "answering", enabled=progress)
    step = 256
    for first in range(0, len(questions), step):
        part = questions[first : first + step]
        out = qa.batch_with_null(
            [(q.question, q.context) for q in part], handle_impossible_answer=v2, batch_size=batch_size
        )
        for q, (answers, null) in zip(part, out):
            preds[q.id] = answers[0].text if answers else ""
            na_probs[q.id] = null
        bar.update(len(part))
    bar.close()
    return preds, na_probs


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from exc


def run_eval(
    paths: Sequence[str],
    *,
    score: str | None = None,
    na_prob: str | None = None,
    limit: int | None = None,
    predictions: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a model (``paths = [MODEL_DIR, DATA.json]``) or, with ``score``, a predictions file
    (``paths = [DATA.json]``) on a SQuAD file with the official metric.

    Raises:
        InputError: bad arguments or unreadable files; ModelLoadError / ProviderError from loading.
    """
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    if score:
        if len(paths) != 1:
            raise InputError("with --score pass only the SQuAD file: onnxqa eval DATA.json --score PREDICTIONS.json")
        dataset, questions = load_squad(paths[0])
        if limit is not None:
            dataset = restrict(dataset, {q.id for q in questions[:limit]})
        preds = _read_json(score, "predictions file")
        na_probs = _read_json(na_prob, "no-answer probabilities file") if na_prob else None
        if not isinstance(preds, dict):
            raise InputError(f"{score} must map question ids to answer texts")
        return {
            "data": paths[0],
            "version": squad_version(dataset),
            "predictions": score,
            "scores": evaluate(dataset, preds, na_probs),
        }

    if len(paths) != 2:
        raise InputError("pass a model directory and a SQuAD file: onnxqa eval MODEL_DIR DATA.json")
    model_dir, data = paths
    if predictions:
        inputs = [("the model directory", Path(model_dir)), ("the SQuAD file", Path(data))]
        check_not_overlapping(Path(predictions), inputs, InputError)
    dataset, questions = load_squad(data)
    version = squad_version(dataset)
    if limit is not None:
        questions = questions[:limit]
        dataset = restrict(dataset, {q.id for q in questions})
    from .runtime import load

    qa = load(model_dir, device=device, precision=precision, threads=threads)
    t0 = time.perf_counter()
    preds, na_probs = predict(qa, questions, v2=version == "2.0", batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - t0
    if predictions:
        write_text_atomic(Path(predictions), json.dumps(preds, ensure_ascii=False, indent=1))
    scores = evaluate(dataset, preds, na_probs if version == "2.0" else None, version)
    return {
        "model_dir": model_dir,
        "data": data,
        "version": version,
        "questions": len(questions),
        "device": qa.device,
        "precision": qa.precision,
        "seconds": seconds,
        "questions_per_s": len(questions) / seconds,
        "scores": scores,
    }
