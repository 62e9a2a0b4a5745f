"""On a machine with the CUDA execution provider: fp16 export validation and CUDA-vs-CPU answers.

Skipped, saying why, where onnxruntime offers no CUDAExecutionProvider (CI never has a GPU).
"""

from __future__ import annotations

import json

import pytest

import onnxqa
from onnxqa.runtime._session import cuda_available

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
