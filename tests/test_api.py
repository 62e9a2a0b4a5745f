"""The public surface: an explicit, sorted, complete ``__all__``; frozen results; typed options."""

from __future__ import annotations

import dataclasses

import pytest

import onnxqa


def test_all_is_sorted_and_complete():
    assert onnxqa.__all__ == sorted(onnxqa.__all__)
    public = {n for n in dir(onnxqa) if not n.startswith("_")} - {
        "runtime",
        "export",
        "cli",
        "squad",
        "evaluation",
        "bench",
        "tune",
        "batch",
        "serve",  # subpackages of optional extras, present once imported
        "haystack",
        "ray",
    }
    assert public <= set(onnxqa.__all__)
    for name in onnxqa.__all__:
        assert hasattr(onnxqa, name)


def test_error_hierarchy():
    for cls in (onnxqa.InputError, onnxqa.ModelLoadError, onnxqa.ProviderError, onnxqa.ExportError):
        assert issubclass(cls, onnxqa.OnnxQAError)
    assert issubclass(onnxqa.ValidationError, onnxqa.ExportError)


def test_answer_is_frozen():
    a = onnxqa.Answer(text="x", score=0.5, start=0, end=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.text = "y"  # type: ignore[misc]
    assert not a.is_impossible and onnxqa.Answer("", 0.1, 0, 0).is_impossible


@pytest.mark.parametrize(
    "options",
    [
        {"top_k": 0},
        {"max_answer_len": 0},
        {"doc_stride": 200, "max_seq_len": 128},
        {"top_k": 1.5},
        {"max_seq_len": -1},
        {"batch_size": 0},
        {"handle_impossible_answer": "yes"},
    ],
)
def test_bad_options_raise_input_error(options):
    with pytest.raises(onnxqa.InputError):
        onnxqa.QAOptions(**options)


def test_zero_doc_stride_is_a_legitimate_value():
    assert onnxqa.QAOptions(doc_stride=0).doc_stride == 0
