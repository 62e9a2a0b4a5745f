"""The SQuAD metric reproduces the official scripts' scores of the reference prediction files."""

from __future__ import annotations

import json

import pytest

from onnxqa.cli import main
from onnxqa.squad import evaluate, load_squad, normalize_answer

from conftest import shared_path


def test_v20_bert_single():
    dataset, _ = load_squad(shared_path("data", "squad", "dev-v2.0.json"))
    preds = json.loads(shared_path("data", "squad", "reference-predictions", "dev-v2.0.bert-single.json").read_text())
    s = evaluate(dataset, preds)
    assert round(s["exact"], 4) == 78.7417
    assert round(s["f1"], 4) == 81.7753
    assert round(s["HasAns_exact"], 4) == 74.1059
    assert round(s["HasAns_f1"], 4) == 80.1818
    assert round(s["NoAns_exact"], 4) == 83.3642
    assert s["total"] == 11873 and s["HasAns_total"] == 5928 and s["NoAns_total"] == 5945


def test_v11_bert_ensemble():
    dataset, _ = load_squad(shared_path("data", "squad", "dev-v1.1.json"))
    preds = json.loads(shared_path("data", "squad", "reference-predictions", "dev-v1.1.bert-ensemble.json").read_text())
    s = evaluate(dataset, preds)
    assert round(s["exact_match"], 4) == 86.2062
    assert round(s["f1"], 4) == 92.1956


def test_cli_scores_predictions_file(capsys):
    data = shared_path("data", "squad", "dev-v1.1.json")
    preds = shared_path("data", "squad", "reference-predictions", "dev-v1.1.bert-ensemble.json")
    assert main(["eval", str(data), "--score", str(preds), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["scores"]
    assert round(scores["f1"], 4) == 92.1956


@pytest.mark.parametrize(
    ("text", "norm"),
    [
        ("The  Eiffel Tower!", "eiffel tower"),
        ("an apple, a pear", "apple pear"),
        ("Théâtre", "théâtre"),
    ],
)
def test_normalization(text, norm):
    assert normalize_answer(text) == norm


def test_best_threshold_search():
    dataset = {
        "version": "v2.0",
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "x",
                        "qas": [
                            {"id": "a", "question": "?", "answers": [{"text": "red", "answer_start": 0}]},
                            {"id": "b", "question": "?", "answers": []},
                        ],
                    }
                ]
            }
        ],
    }
    # "b" wrongly answered with a high no-answer probability: a threshold below it fixes it
    s = evaluate(dataset, {"a": "red", "b": "blue"}, na_probs={"a": 0.1, "b": 0.9})
    assert s["exact"] == 50.0 and s["best_exact"] == 100.0 and s["best_exact_thresh"] == 0.1
