"""Shape buckets and fixed buffers (what CUDA graphs need), checked on the CPU provider with the
torch-free ``fake_model``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onnxqa
from onnxqa._manifest import read_verified
from onnxqa.runtime import _session
from onnxqa.runtime._buckets import Buckets, plan_batches, resolve_buckets
from onnxqa.runtime._session import Engine, SessionSettings


def test_plan_without_buckets_is_sorted_batches_of_batch_size():
    plan = plan_batches([5, 3, 9, 4], 3, None)
    assert [(b.windows, b.rows, b.width) for b in plan] == [([1, 3, 0], 3, 5), ([2], 1, 9)]


def test_plan_with_buckets_pads_to_bucket_widths_and_power_of_two_rows():
    lengths = [20] * 5 + [70] * 2 + [300] + [500]
    plan = plan_batches(lengths, 4, Buckets((64, 128, 384)))
    assert [(len(b.windows), b.rows, b.width) for b in plan] == [
        (4, 4, 64),
        (1, 1, 64),
        (2, 2, 128),
        (1, 1, 384),
        (1, 1, 512),
    ]
    assert sorted(i for b in plan for i in b.windows) == list(range(len(lengths)))
    # rows: powers of two, capped at batch_size; past the widest bucket: multiples of 64, capped
    assert [Buckets.rows(n, 48) for n in (1, 2, 3, 5, 17, 33, 48)] == [1, 2, 4, 8, 32, 48, 48]
    assert plan_batches([500], 4, Buckets((64,)), max_width=510)[0].width == 510


def test_resolve_buckets():
    assert resolve_buckets(None, "cpu", 512) is None
    assert resolve_buckets(None, "cuda", 512) == Buckets()
    assert resolve_buckets(True, "cpu", 256).widths == (64, 128, 192, 256)
    assert resolve_buckets([32, 96], "cuda", 512).widths == (32, 96)
    for bad in ([96, 32], [0], "64", [64, 1024]):
        with pytest.raises(onnxqa.InputError):
            resolve_buckets(bad, "cuda", 512)


@pytest.fixture(scope="module")
def pairs(squad_v2):
    """Short and long contexts (several windows at max_seq_len 96), many pairs."""
    picked = [(q["question"], q["context"]) for q in squad_v2[:400:10]]
    joined = " ".join(q["context"] for q in squad_v2[:60:12])
    return picked + [(squad_v2[1]["question"], joined), ("Who?", "Ada."), ("Where is it?", "It is in Paris, France.")]


@pytest.mark.parametrize("batch_size", [1, 6, 16])
def test_same_answers_with_and_without_buckets(fake_model, pairs, batch_size, record_calls):
    options = dict(top_k=2, max_seq_len=96, doc_stride=32, batch_size=batch_size, handle_impossible_answer=True)
    plain = onnxqa.load(fake_model, device="cpu", precision="fp32", buckets=False)
    bucketed = onnxqa.load(fake_model, device="cpu", precision="fp32", buckets=(32, 64, 96))
    with record_calls(plain) as plain_shapes:
        a = plain.batch_with_null(pairs, **options)
    with record_calls(bucketed) as shapes:
        b = bucketed.batch_with_null(pairs, **options)
    for (x, null_x), (y, null_y) in zip(a, b):
        assert [(s.text, s.start, s.end) for s in x] == [(s.text, s.start, s.end) for s in y]
        assert [s.score for s in x] == pytest.approx([s.score for s in y], rel=1e-4, abs=1e-6)
        assert null_x == pytest.approx(null_y, rel=1e-4, abs=1e-7)
    rows = {r for r in (1, 2, 4, 8, 16, batch_size) if r <= batch_size}
    assert set(shapes) <= {(r, w) for r in rows for w in (32, 64, 96)}
    with record_calls(plain) as one_by_one:  # one window per call, unpadded: the windows' lengths
        plain.batch_with_null(pairs, **{**options, "batch_size": 1})
    lengths = [width for _, width in one_by_one]
    planned = plan_batches(lengths, batch_size, Buckets((32, 64, 96)))
    assert shapes == [(b.rows, b.width) for b in planned]
    assert sum(s[0] for s in plain_shapes) == len(lengths)


def _model(model_dir):
    variant = json.loads((model_dir / "onnxqa.json").read_text())["variants"]["fp32"]
    return read_verified(model_dir, variant["file"], variant["sha256"])


@pytest.mark.parametrize("shape_sessions", [False, True])
def test_fixed_buffers_equal_plain_run(fake_model, shape_sessions):
    model = _model(fake_model)
    plain = Engine(model, "cpu", SessionSettings(io_binding=False))
    fixed = Engine(model, "cpu", SessionSettings(fixed_buffers=True, shape_sessions=shape_sessions))
    assert fixed.shape_sessions is shape_sessions
    rng = np.random.default_rng(0)
    for batch, width in [(2, 64), (4, 32), (2, 64), (2, 64), (4, 32)]:  # repeated shapes refill buffers in place
        ids = rng.integers(1000, 2000, (batch, width)).astype(np.int64)
        types = np.zeros_like(ids)
        mask = np.ones_like(ids)
        mask[-1, width // 3 :] = 0
        a, b = plain.run(ids, types, mask), fixed.run(ids, types, mask)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-5)
        kept = b[0].copy()
        fixed.run((ids + 7) % 2000, types, mask)  # the returned arrays are copies
        np.testing.assert_array_equal(kept, b[0])
    assert sorted(fixed.shapes) == [(2, 64), (4, 32)]
    assert [fixed._slots[s].runs for s in sorted(fixed.shapes)] == [6, 4]


def test_shapes_past_the_limit_run_without_buffers_of_their_own(fake_model, monkeypatch):
    monkeypatch.setattr(_session, "MAX_GRAPHS", 2)
    engine = Engine(_model(fake_model), "cpu", SessionSettings(fixed_buffers=True))
    ids = np.full((1, 8), 1000, dtype=np.int64)
    for width in (8, 16, 24):
        engine.run(ids[:, :1].repeat(width, axis=1), np.zeros((1, width), np.int64), np.ones((1, width), np.int64))
    assert engine.shapes == [(1, 8), (1, 16)]


def test_cuda_graph_needs_cuda_and_buckets(fake_model):
    with pytest.raises(onnxqa.ProviderError, match="cuda"):
        onnxqa.load(fake_model, device="cpu", cuda_graph=True)
    with pytest.raises(onnxqa.ProviderError):
        Engine(_model(fake_model), "cpu", SessionSettings(cuda_graph=True))
    with pytest.raises(onnxqa.InputError):
        onnxqa.load(fake_model, device="cpu", cuda_graph="yes")
    with pytest.raises(onnxqa.InputError):
        onnxqa.load(fake_model, device="cpu", buckets="wide")


# ---------------------------------------------------------------- CUDA provider failures, simulated


class _FakeSession:
    """Stands in for onnxruntime.InferenceSession: runs on ``active`` providers, or raises."""

    def __init__(self, active, error=None):
        self.active, self.error = active, error

    def __call__(self, model, sess_options=None, providers=None):
        self.providers = providers
        if self.error is not None and (not callable(self.error) or self.error(providers)):
            raise RuntimeError(self.error if isinstance(self.error, str) else "graph capture refused")
        return self

    def get_providers(self):
        return self.active

    def get_inputs(self):
        return []

    get_outputs = get_inputs


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(
        _session.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(_session, "_preload_report", ["Failed to load libcudnn.so.9: cannot open shared object file"])
    return monkeypatch


def test_cuda_provider_silently_missing_says_what_to_do(fake_model, fake_cuda):
    fake_cuda.setattr(_session.ort, "InferenceSession", _FakeSession(["CPUExecutionProvider"]))
    with pytest.raises(onnxqa.ProviderError) as err:
        Engine(_model(fake_model), "cuda", SessionSettings())
    message = str(err.value)
    for needed in ("CPUExecutionProvider", "import torch", "nvidia-cudnn-cu", "libcudnn.so.9", "device='cpu'"):
        assert needed in message


def test_cuda_library_error_becomes_provider_error(fake_model, fake_cuda):
    error = "libcublasLt.so.13: cannot open shared object file: No such file or directory"
    fake_cuda.setattr(_session.ort, "InferenceSession", _FakeSession(["CUDAExecutionProvider"], error))
    with pytest.raises(onnxqa.ProviderError, match="libcublasLt.so.13.*import torch"):
        Engine(_model(fake_model), "cuda", SessionSettings())


def test_refused_graph_capture_falls_back_to_a_session_per_shape(fake_model, fake_cuda):
    refused = _FakeSession(["CUDAExecutionProvider"], lambda providers: isinstance(providers[0], tuple))
    fake_cuda.setattr(_session.ort, "InferenceSession", refused)
    with pytest.raises(onnxqa.ModelLoadError, match="not a QA graph"):  # the fake has no inputs
        Engine(_model(fake_model), "cuda", SessionSettings(cuda_graph=True))
    assert refused.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # retried without graphs


def test_preload_runs_once_and_can_be_turned_off(monkeypatch):
    calls = []
    monkeypatch.setattr(
        _session.ort, "preload_dlls", lambda: calls.append(1) or print("Failed to load x.so"), raising=False
    )
    monkeypatch.setattr(_session, "_preload_report", [])
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    monkeypatch.delenv("ONNXQA_PRELOAD_DLLS", raising=False)
    assert _session.preload_cuda_libraries() == "Failed to load x.so"
    assert _session.preload_cuda_libraries() == "Failed to load x.so"
    assert calls == [1]
    monkeypatch.setattr(_session, "_preload_report", [])
    monkeypatch.setenv("ONNXQA_PRELOAD_DLLS", "0")
    assert _session.preload_cuda_libraries() == "" and calls == [1]
