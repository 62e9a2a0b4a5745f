"""SQuAD v1.1 / v2.0 files and the official evaluation metric, reimplemented without dependencies.

The normalization, EM/F1 and the v2.0 best no-answer threshold search follow the official
``evaluate-v1.1.py`` and ``evaluate-v2.0.py`` scripts line for line; the tests check them against
published scores of reference prediction files.
"""

from __future__ import annotations

import collections
import json
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import InputError

__all__ = ["Question", "evaluate", "load_squad", "squad_version"]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    context: str
    answers: tuple[str, ...]  # gold texts; empty for unanswerable questions


def load_squad(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Question]]:
    """The parsed file and its questions, in file order."""
    try:
        dataset = json.loads(Path(path).read_text(encoding="utf-8"))
        questions = [
            Question(qa["id"], qa["question"], paragraph["context"], tuple(a["text"] for a in qa["answers"]))
            for article in dataset["data"]
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a readable SQuAD file: {type(exc).__name__}: {exc}") from exc
    return dataset, questions


def squad_version(dataset: Mapping[str, Any]) -> str:
    """``"2.0"`` when the file has unanswerable questions or says so, else ``"1.1"``."""
    if str(dataset.get("version", "")).startswith("v2"):
        return "2.0"
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if qa.get("is_impossible"):
                    return "2.0"
    return "1.1"


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _f1_v11(prediction: str, truth: str) -> float:
    pred_toks, truth_toks = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((collections.Counter(pred_toks) & collections.Counter(truth_toks)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(truth_toks)
    return (2 * precision * recall) / (precision + recall)


def _f1_v20(prediction: str, truth: str) -> float:
    pred_toks, truth_toks = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((collections.Counter(pred_toks) & collections.Counter(truth_toks)).values())
    if len(truth_toks) == 0 or len(pred_toks) == 0:
        return float(truth_toks == pred_toks)
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(truth_toks)
    return (2 * precision * recall) / (precision + recall)


def _evaluate_v11(dataset: Mapping[str, Any], predictions: Mapping[str, str]) -> dict[str, Any]:
    f1 = exact = total = 0.0
    missing = 0
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    missing += 1
                    continue
                truths = [a["text"] for a in qa["answers"]]
                pred = predictions[qa["id"]]
                exact += max(float(normalize_answer(pred) == normalize_answer(t)) for t in truths)
                f1 += max(_f1_v11(pred, t) for t in truths)
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total, "total": int(total), "missing": missing}


def _best_thresh(
    preds: Mapping[str, str], scores: Mapping[str, float], na_probs: Mapping[str, float], has_ans: Mapping[str, bool]
) -> tuple[float, float]:
    num_no_ans = sum(1 for k in has_ans if not has_ans[k])
    cur = best = float(num_no_ans)
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1.0 if preds[qid] else 0.0
        cur += diff
        if cur > best:
            best, best_thresh = cur, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


def _evaluate_v20(
    dataset: Mapping[str, Any],
    preds: Mapping[str, str],
    na_probs: Mapping[str, float] | None,
    na_prob_thresh: float = 1.0,
) -> dict[str, Any]:
    has_ans: dict[str, bool] = {}
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qid = qa["id"]
                has_ans[qid] = bool(qa["answers"])
                golds = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])] or [""]
                if qid not in preds:
                    raise InputError(
                        f"no prediction for question {qid}: the v2.0 metric needs one for every question "
                        "(score a subset with --limit N)"
                    )
                pred = preds[qid]
                exact_raw[qid] = max(float(normalize_answer(a) == normalize_answer(pred)) for a in golds)
                f1_raw[qid] = max(_f1_v20(pred, a) for a in golds)
    probs = na_probs if na_probs is not None else {k: 0.0 for k in preds}

    def thresholded(raw: Mapping[str, float]) -> dict[str, float]:
        return {q: (float(not has_ans[q]) if probs[q] > na_prob_thresh else s) for q, s in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)

    def block(qids: list[str]) -> dict[str, float]:
        n = len(qids)
        return {
            "exact": 100.0 * sum(exact[k] for k in qids) / n,
            "f1": 100.0 * sum(f1[k] for k in qids) / n,
            "total": n,
        }

    out: dict[str, Any] = block(list(exact))
    for name, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [k for k, v in has_ans.items() if v is wanted]
        if qids:
            for key, value in block(qids).items():
                out[f"{name}_{key}"] = value
    if na_probs is not None:
        out["best_exact"], out["best_exact_thresh"] = _best_thresh(preds, exact_raw, na_probs, has_ans)
        out["best_f1"], out["best_f1_thresh"] = _best_thresh(preds, f1_raw, na_probs, has_ans)
    return out


def evaluate(
    dataset: Mapping[str, Any],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """Official SQuAD scores of ``predictions`` (question id -> answer text) on ``dataset``.

    v1.1: ``exact_match`` and ``f1``. v2.0: ``exact``, ``f1``, ``HasAns_*``, ``NoAns_*``, and with
    ``na_probs`` (question id -> no-answer probability) the best-threshold figures.
    """
    version = version or squad_version(dataset)
    if version == "1.1":
        return _evaluate_v11(dataset, predictions)
    return _evaluate_v20(dataset, predictions, na_probs)


def restrict(dataset: Mapping[str, Any], ids: set[str]) -> dict[str, Any]:
    """A copy of ``dataset`` with only the questions in ``ids``."""
    data = []
    for article in dataset["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = [qa for qa in paragraph["qas"] if qa["id"] in ids]
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            data.append({**article, "paragraphs": paragraphs})
    return {**dataset, "data": data}
