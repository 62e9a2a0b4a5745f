"""Loading executes nothing from a model directory, reads nothing outside it, and the CLI writes
only where it is told to."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import onnxqa
from onnxqa import ModelLoadError
from onnxqa._manifest import sha256_bytes

RUNTIME_SOURCES = [p for p in (Path(onnxqa.__file__).parent).rglob("*.py") if "export" not in p.parts]


def test_runtime_source_has_no_code_loading():
    """No import of pickle / torch / transformers and no eval, exec, __import__, torch.load or
    trust_remote_code anywhere in the runtime's code (read as syntax trees, not as text, so that
    an error message may still tell the user to `import torch`)."""
    banned_modules = {"pickle", "torch", "transformers", "marshal", "dill"}
    banned_names = {"eval", "exec", "__import__", "trust_remote_code"}
    for path in RUNTIME_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            elif isinstance(node, ast.Name):
                names = {node.id} & banned_names
            elif isinstance(node, ast.keyword):
                names = {node.arg or ""} & banned_names
            elif isinstance(node, ast.Attribute):
                names = ({ast.unparse(node)} & {"torch.load"}) | ({node.attr} & banned_names)
            else:
                continue
            found = names & (banned_modules | banned_names | {"torch.load"})
            assert not found, f"{path.name}:{node.lineno} uses {found}"


def test_the_code_scan_finds_what_it_bans(tmp_path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n")
    monkeypatch.setattr(sys.modules[__name__], "RUNTIME_SOURCES", [bad])
    with pytest.raises(AssertionError, match="torch"):
        test_runtime_source_has_no_code_loading()
    bad.write_text("x = eval('1')\n")
    with pytest.raises(AssertionError, match="eval"):
        test_runtime_source_has_no_code_loading()


class WritesFile:
    """A pickle payload: unpickling it creates ``path`` (the proof that it was executed)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_the_pickle_payload_really_executes(tmp_path):
    sentinel = tmp_path / "executed"
    pickle.loads(pickle.dumps(WritesFile(sentinel)))
    assert sentinel.exists()  # so its absence below means it was never unpickled


def test_loading_ignores_code_in_the_directory(tiny, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    sentinel = tmp_path / "sentinel"
    (model / "__init__.py").write_text(f"open({str(sentinel)!r}, 'w').write('x')\n")
    (model / "modeling_evil.py").write_text(f"open({str(sentinel)!r}, 'w').write('x')\n")
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(WritesFile(sentinel)))
    (model / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "modeling_evil.Evil"}}))
    qa = onnxqa.load(model, device="cpu")
    assert qa("Who?", "Ada wrote it.")
    assert not sentinel.exists()


def _graph_with_external_data(location: str) -> bytes:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # what onnxruntime reads; onnx writes a newer one by default
    return model.SerializeToString()


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "../../outside/weights.bin"])
def test_external_data_outside_the_directory_is_refused(tiny, tmp_path, location):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    graph = _graph_with_external_data(location)
    (model / "model.fp32.onnx").write_bytes(graph)
    manifest = json.loads((model / "onnxqa.json").read_text())
    manifest["variants"]["fp32"]["sha256"] = sha256_bytes(graph)
    (model / "onnxqa.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="outside the model directory"):
        onnxqa.load(model, device="cpu", precision="fp32")


def test_manifest_file_names_cannot_leave_the_directory(tiny, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    manifest = json.loads((model / "onnxqa.json").read_text())
    manifest["variants"]["fp32"]["file"] = "../../etc/passwd"
    (model / "onnxqa.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="not a plain file name"):
        onnxqa.load(model, device="cpu", precision="fp32")


def _tree(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")}


def test_cli_writes_only_where_told(tiny, tmp_path):
    from conftest import shared_path

    data = shared_path("data", "squad", "dev-v2.0.json")
    work = tmp_path / "work"
    work.mkdir()
    before_model, before_work = _tree(tiny), _tree(work)
    cli = [sys.executable, "-m", "onnxqa.cli"]
    subprocess.run(
        cli + ["ask", str(tiny), "-q", "Who?", "-c", "Ada wrote it.", "--json"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    assert _tree(work) == before_work
    preds = tmp_path / "preds.json"
    subprocess.run(
        cli + ["eval", str(tiny), str(data), "--limit", "20", "--predictions", str(preds), "--quiet"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    assert _tree(work) == before_work and _tree(tiny) == before_model
    assert len(json.loads(preds.read_text())) == 20
    bad = subprocess.run(
        cli + ["eval", str(tiny), str(data), "--limit", "5", "--predictions", str(tiny / "p.json")],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "model directory" in bad.stderr and _tree(tiny) == before_model
