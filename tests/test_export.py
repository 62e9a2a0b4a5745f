"""The exporter: fused graphs, fp32 logits against PyTorch, int8 variant, manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxqa._manifest import sha256_file

from conftest import SEEDS


@pytest.mark.parametrize("seed", SEEDS)
def test_export_fp32_int8_and_logits_match_pytorch(seed, store):
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    out = store.exported(seed)
    manifest = json.loads((out / "onnxqa.json").read_text())
    fp32, int8 = manifest["variants"]["fp32"], manifest["variants"]["int8"]

    # the CPU optimizer fused attention and layer norm for every architecture; onnxqa's passes then
    # took the skip layer norms apart again (onnxruntime's fused CPU kernel is the slower), and
    # both CPU variants say which onnxruntime optimizers must not fuse them back
    fused, layers = fp32["fused_ops"], manifest["architecture"]["num_layers"]
    assert fused.get("Attention", 0) == layers
    assert manifest["graph_passes"]["unfuse_skip_layer_norm"] >= layers and "SkipLayerNormalization" not in fused
    assert fused["LayerNormalization"] >= 2 * layers and "BiasGelu" not in fused and fused["Gelu"] == layers
    for variant in (fp32, int8):
        assert variant["disabled_optimizers"] == ["SkipLayerNormFusion", "BiasGeluFusion"]
    assert int8["fused_ops"].get("QAttention", 0) + int8["fused_ops"].get("MatMulInteger", 0) > 0
    assert fp32["validation"]["status"] == "passed" and fp32["validation"]["max_abs_diff"] <= 1e-4
    assert int8["validation"]["status"] == "passed", int8["validation"]
    for variant in (fp32, int8):
        assert sha256_file(out / variant["file"]) == variant["sha256"]
    assert sha256_file(out / "tokenizer.json") == manifest["tokenizer"]["sha256"]

    # independent check: PyTorch logits vs the fp32 graph on real text, tokenized by transformers
    checkpoint = store.checkpoint(seed)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
    session = ort.InferenceSession(str(out / fp32["file"]), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert ("token_type_ids" in names) == manifest["architecture"]["uses_token_type_ids"]
    assert ("token_type_ids" in names) == (manifest["architecture"]["model_type"] == "bert")
    enc = tokenizer(
        ["Who designed the bridge?", "What year was it opened?"],
        ["The bridge over the Vessa was designed by Margaret Ellison and opened in 1931."] * 2,
        padding=True,
        return_tensors="np",
    )
    feed = {k: enc[k].astype(np.int64) for k in names}
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
    start, end = session.run(["start_logits", "end_logits"], feed)
    mask = enc["attention_mask"].astype(bool)
    assert np.abs(start - ref.start_logits.numpy())[mask].max() <= 1e-4
    assert np.abs(end - ref.end_logits.numpy())[mask].max() <= 1e-4
