"""Graphs over 2 GB (XLM-R large is 2.2 GB in fp32) are written with their tensors in an
external-data file beside the graph: hashed in the manifest like every file, loaded from verified
bytes, refused when missing or altered; ``--force`` and the atomic directory rules hold.

The size at which a graph goes external is lowered for these tests (a 2 GB export does not fit a
test run): the same code writes, hashes and loads them as it would a real large graph.
"""

from __future__ import annotations

import json
import os

import pytest

import onnxqa
from onnxqa.export import ExportConfig, export

from conftest import SEEDS

SEED = SEEDS[-1]  # bert-tiny
QUESTIONS = [
    ("Who designed the bridge?", "The Harlow Bridge was designed by Margaret Ellison and opened in 1931."),
    ("When did it open?", "The Harlow Bridge was designed by Margaret Ellison and opened in 1931."),
]


@pytest.fixture(scope="module")
def large(store, tmp_path_factory):
    """bert-tiny exported as if it were over 2 GB (its tensors, ~17 MB fp32, over a 1 MB limit)."""
    from onnxqa.export import _io

    limit = _io.EXTERNAL_DATA_BYTES
    _io.EXTERNAL_DATA_BYTES = 1_000_000
    try:
        out = tmp_path_factory.mktemp("external") / "model"
        export(str(store.checkpoint(SEED)), out, ExportConfig(check_pairs=40, calibration_pairs=16, progress=False))
    finally:
        _io.EXTERNAL_DATA_BYTES = limit
    return out


def test_every_variant_has_its_tensors_beside_it_hashed(large):
    from onnxqa._manifest import sha256_file

    manifest = json.loads((large / "onnxqa.json").read_text())
    for precision in ("fp32", "int8"):
        variant = manifest["variants"][precision]
        assert variant["validation"]["status"] == "passed"
        (part,) = variant["external_data"]
        assert part["file"] == variant["file"] + ".data"
        assert part["sha256"] == sha256_file(large / part["file"]) and part["bytes"] > 1_000_000
        assert (large / variant["file"]).stat().st_size < 1_000_000  # the graph without its tensors
    assert sorted(p.name for p in large.iterdir()) == sorted(
        [
            "onnxqa.json",
            "tokenizer.json",
            "model.fp32.onnx",
            "model.fp32.onnx.data",
            "model.int8.onnx",
            "model.int8.onnx.data",
        ]
    )


def test_answers_equal_the_single_file_export(large, store):
    for precision in ("fp32", "int8"):
        ours = onnxqa.load(large, device="cpu", precision=precision).batch(QUESTIONS, top_k=2)
        if precision == "fp32":  # same checkpoint, same graph: the same answers as the one-file export
            theirs = onnxqa.load(store.exported(SEED), device="cpu", precision="fp32").batch(QUESTIONS, top_k=2)
            assert ours == theirs
        assert all(answers for answers in ours)


@pytest.mark.parametrize("damage", ["altered", "missing", "swapped"])
def test_a_missing_or_altered_data_file_is_refused(large, tmp_path, damage):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(large, copy)
    data = copy / "model.int8.onnx.data"
    if damage == "altered":
        with open(data, "r+b") as f:
            f.seek(os.path.getsize(data) // 2)
            f.write(b"\x01\x02\x03\x04")
    elif damage == "missing":
        data.unlink()
    else:  # the fp32 tensors in place of the int8 ones
        shutil.copy(copy / "model.fp32.onnx.data", data)
    with pytest.raises(onnxqa.ModelLoadError, match="missing|does not match the hash"):
        onnxqa.load(copy, device="cpu", precision="int8")
    onnxqa.load(copy, device="cpu", precision="fp32")  # the other variant is untouched


def test_a_graph_naming_an_unlisted_data_file_is_refused(large, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(large, copy)
    manifest = json.loads((copy / "onnxqa.json").read_text())
    del manifest["variants"]["fp32"]["external_data"]
    (copy / "onnxqa.json").write_text(json.dumps(manifest))
    with pytest.raises(onnxqa.ModelLoadError, match="manifest does not list"):
        onnxqa.load(copy, device="cpu", precision="fp32")


def test_force_replaces_a_multi_file_directory_whole(large, store, tmp_path):
    import shutil

    out = tmp_path / "model"
    shutil.copytree(large, out)
    (out / "model.int8.onnx.data").write_bytes(b"stale")
    with pytest.raises(onnxqa.ExportError, match="already exists"):
        export(str(store.checkpoint(SEED)), out, ExportConfig(check_pairs=20, calibration_pairs=8, progress=False))
    export(
        str(store.checkpoint(SEED)), out, ExportConfig(check_pairs=20, calibration_pairs=8, force=True, progress=False)
    )
    # a single-file export now: no data file of the old one is left behind
    assert sorted(p.name for p in out.iterdir()) == [
        "model.fp32.onnx",
        "model.int8.onnx",
        "onnxqa.json",
        "tokenizer.json",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no partial or old directory beside it
    onnxqa.load(out, device="cpu").batch(QUESTIONS)
