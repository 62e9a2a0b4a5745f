"""On a machine with the CUDA execution provider: fp16 export validation and CUDA-vs-CPU answers.

Skipped, saying why, where onnxruntime offers no CUDAExecutionProvider (CI never has a GPU).
"""

from __future__ import annotations

import json

import pytest

import onnxqa
from onnxqa.runtime import cuda_available

from parity_cases import parity_pairs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda_available(), reason="onnxruntime here offers no CUDAExecutionProvider"),
]


@pytest.fixture(scope="module")
def gpu_model(store, tmp_path_factory):
    from onnxqa.export import ExportConfig, export

    out = tmp_path_factory.mktemp("gpu") / "ref"
    export(str(store.checkpoint("minilm-l6-squad-ref")), out, ExportConfig(precisions=("fp32", "fp16"), progress=False))
    return out


def test_fp16_validated_at_export(gpu_model):
    fp16 = json.loads((gpu_model / "onnxqa.json").read_text())["variants"]["fp16"]
    validation = fp16["validation"]
    assert validation["status"] == "passed", validation
    assert validation["device"] == "cuda" and validation["finite"]
    assert validation["agreement"] >= validation["limits"]["min_agreement"]
    assert validation["mean_rel_diff"] <= validation["limits"]["max_rel_diff"]


def test_cuda_is_really_used_and_agrees_with_cpu(gpu_model, squad_v2):
    cuda = onnxqa.load(gpu_model, device="cuda", precision="fp32")
    assert cuda.device == "cuda"
    assert cuda._engine.session.get_providers()[0] == "CUDAExecutionProvider"
    assert onnxqa.load(gpu_model, device="auto").device == "cuda"
    cpu = onnxqa.load(gpu_model, device="cpu", precision="fp32")
    pairs = parity_pairs(squad_v2)
    for a, b in zip(cuda.batch(pairs), cpu.batch(pairs)):
        assert (a[0].text, a[0].start, a[0].end) == (b[0].text, b[0].start, b[0].end)
        assert a[0].score == pytest.approx(b[0].score, abs=1e-3)
    fp16 = onnxqa.load(gpu_model, device="cuda", precision="fp16")
    same = sum(a[0].start == b[0].start and a[0].end == b[0].end for a, b in zip(fp16.batch(pairs), cpu.batch(pairs)))
    assert same >= 0.9 * len(pairs)


def test_int8_refused_on_cuda(gpu_model):
    with pytest.raises(onnxqa.ProviderError):
        onnxqa.load(gpu_model, device="cuda", precision="int8")


def _spans(results):
    return [[(a.text, a.start, a.end) for a in answers] for answers, _ in results]


def test_buckets_are_on_by_default_on_cuda(gpu_model):
    assert onnxqa.load(gpu_model, device="cuda", precision="fp32").buckets is not None
    assert onnxqa.load(gpu_model, device="cuda", precision="fp32", buckets=False).buckets is None


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graphs_give_the_answers_of_plain_runs(gpu_model, squad_v2, precision):
    pairs = parity_pairs(squad_v2)
    plain = onnxqa.load(gpu_model, device="cuda", precision=precision, buckets=False)
    graphs = onnxqa.load(gpu_model, device="cuda", precision=precision, cuda_graph=True)
    expected = plain.batch_with_null(pairs, batch_size=16, handle_impossible_answer=True)
    for _ in range(3):  # captured on the first runs of each shape, replayed after
        got = graphs.batch_with_null(pairs, batch_size=16, handle_impossible_answer=True)
        same = sum(a == b for a, b in zip(_spans(got), _spans(expected)))
        assert same >= (len(pairs) if precision == "fp32" else 0.98 * len(pairs))
    engine = graphs._engine
    widths = set(graphs.buckets.widths)
    assert engine.shapes and all(rows in (1, 2, 4, 8, 16) and width in widths for rows, width in engine.shapes)
    assert max(slot.runs for slot in engine._slots.values()) >= 3
    # single questions (rows = 1) replay too, with new inputs each time
    alone = [_spans([(graphs(q, c), 0.0)]) == _spans([(plain(q, c), 0.0)]) for q, c in pairs[:20]]
    assert sum(alone) >= (20 if precision == "fp32" else 19)


@pytest.mark.parametrize("seed", ["tinyroberta-squad2", "distilbert-base-cased-distilled-squad"])
def test_cuda_graphs_on_graphs_that_compute_shapes(store, tmp_path, squad_v2, seed):
    """RoBERTa and DistilBERT exports compute position ids / masks from shapes, which onnxruntime
    would run on the CPU: capture is refused for the dynamic graph, and a session per shape (its
    dimensions fixed, so the shape computations fold away) takes over."""
    from onnxqa.export import ExportConfig, export

    out = tmp_path / seed
    export(str(store.checkpoint(seed)), out, ExportConfig(precisions=("fp32", "fp16"), check_pairs=30, progress=False))
    pairs = parity_pairs(squad_v2)[:40]
    plain = onnxqa.load(out, device="cuda", precision="fp16", buckets=False)
    graphs = onnxqa.load(out, device="cuda", precision="fp16", cuda_graph=True)
    expected = _spans(plain.batch_with_null(pairs, batch_size=8))
    for _ in range(3):
        got = _spans(graphs.batch_with_null(pairs, batch_size=8))
        assert sum(a == b for a, b in zip(got, expected)) >= 0.95 * len(pairs)
    print(f"{seed}: shape_sessions={graphs._engine.shape_sessions}, shapes={graphs._engine.shapes}")
