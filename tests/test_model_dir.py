"""Broken, tampered or mismatched model directories give ModelLoadError, never a crash."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import onnxqa
from onnxqa import ModelLoadError
from onnxqa._manifest import open_verifying, sha256_file


@pytest.fixture
def copy(tiny, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(tiny, dst)
    return dst


def manifest(path):
    return json.loads((path / "onnxqa.json").read_text())


def write_manifest(path, data):
    (path / "onnxqa.json").write_text(json.dumps(data))


def load(path, **kw):
    return onnxqa.load(path, device="cpu", **kw)


def test_not_a_directory_or_no_manifest(tmp_path):
    with pytest.raises(ModelLoadError, match="not a directory"):
        load(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="onnxqa.json"):
        load(tmp_path)


@pytest.mark.parametrize("name", ["model.fp32.onnx", "tokenizer.json"])
def test_missing_file(copy, name):
    (copy / name).unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        load(copy, precision="fp32")


def test_truncated_onnx_file(copy):
    path = copy / "model.int8.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="does not match the hash"):
        load(copy, precision="int8")


def test_corrupted_onnx_with_matching_hash(copy):
    # even if the manifest is rewritten to match, onnxruntime's refusal becomes ModelLoadError
    path = copy / "model.int8.onnx"
    path.write_bytes(b"\x08\x07garbage" * 100)
    data = manifest(copy)
    data["variants"]["int8"]["sha256"] = sha256_file(path)
    write_manifest(copy, data)
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        load(copy, precision="int8")


def test_swapped_files_detected(copy):
    (copy / "model.fp32.onnx").write_bytes((copy / "model.int8.onnx").read_bytes())
    with pytest.raises(ModelLoadError, match="does not match the hash"):
        load(copy, precision="fp32")


def test_a_graph_rewritten_while_it_loads_is_refused(copy):
    """onnxruntime reads the graph from its path while a thread hashes it: a file replaced or
    rewritten in between (new inode, or new modification time) is refused even when its bytes
    hash right, and a truncated one is refused as such, not as onnxruntime saw it."""
    variant = manifest(copy)["variants"]["int8"]
    path, verify = open_verifying(copy, variant["file"], variant["sha256"])
    verify()  # untouched: accepted
    data = path.read_bytes()
    path, verify = open_verifying(copy, variant["file"], variant["sha256"])
    path.unlink()
    path.write_bytes(data)  # the same bytes, another file
    with pytest.raises(ModelLoadError, match="does not match the hash"):
        verify()
    path, verify = open_verifying(copy, variant["file"], variant["sha256"])
    os.utime(path, ns=(0, 0))
    with pytest.raises(ModelLoadError, match="does not match the hash"):
        verify()


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.pop("variants"),
        lambda m: m.update(format=99),
        lambda m: m["architecture"].update(max_positions="512"),
        lambda m: m.update(variants={}),
        lambda m: m["variants"].update(int4={"file": "x", "sha256": "y"}),
        lambda m: m["tokenizer"].pop("sha256"),
    ],
)
def test_inconsistent_manifest(copy, edit):
    data = manifest(copy)
    edit(data)
    write_manifest(copy, data)
    with pytest.raises(ModelLoadError):
        load(copy)


def test_manifest_not_json(copy):
    (copy / "onnxqa.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load(copy)


def test_missing_precision(copy):
    data = manifest(copy)
    del data["variants"]["int8"]
    write_manifest(copy, data)
    with pytest.raises(ModelLoadError, match="no int8 variant"):
        load(copy, precision="int8")
    assert load(copy).precision == "fp32"  # auto falls back to what exists


def test_tokenizer_that_does_not_fit_the_model(copy, store):
    # a RoBERTa tokenizer (50k tokens) beside a BERT-tiny graph (30k embeddings)
    roberta = store.checkpoint("tinyroberta-squad2") / "tokenizer.json"
    shutil.copy(roberta, copy / "tokenizer.json")
    data = manifest(copy)
    data["tokenizer"]["sha256"] = sha256_file(copy / "tokenizer.json")
    write_manifest(copy, data)
    with pytest.raises(ModelLoadError, match="do not belong together"):
        load(copy)


def test_broken_tokenizer_json(copy):
    (copy / "tokenizer.json").write_text('{"model": 1}')
    data = manifest(copy)
    data["tokenizer"]["sha256"] = sha256_file(copy / "tokenizer.json")
    write_manifest(copy, data)
    with pytest.raises(ModelLoadError, match="tokenizer"):
        load(copy)
