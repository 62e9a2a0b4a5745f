"""The IO-binding path (used on CUDA) gives the plain path's logits; checked here on the CPU."""

from __future__ import annotations

import json

import numpy as np

from onnxqa._manifest import read_verified
from onnxqa.runtime._session import Engine, SessionSettings


def test_io_binding_equals_plain_run(tiny):
    manifest = json.loads((tiny / "onnxqa.json").read_text())
    variant = manifest["variants"]["fp32"]
    model = read_verified(tiny, variant["file"], variant["sha256"])
    plain = Engine(model, "cpu", SessionSettings(io_binding=False))
    bound = Engine(model, "cpu", SessionSettings(io_binding=True))
    rng = np.random.default_rng(0)
    for batch, width in [(1, 20), (3, 50), (3, 50), (2, 7)]:  # a repeated shape reuses the buffers
        ids = rng.integers(1000, 2000, (batch, width)).astype(np.int64)
        types = np.zeros_like(ids)
        mask = np.ones_like(ids)
        mask[-1, width // 2 :] = 0
        a, b = plain.run(ids, types, mask), bound.run(ids, types, mask)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        # the returned arrays are copies: the next call must not overwrite them
        kept = b[0].copy()
        bound.run((ids + 7) % 2000, types, mask)
        np.testing.assert_array_equal(kept, b[0])
