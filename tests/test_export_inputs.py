"""What a checkpoint needs, what --force may replace, and the errors a user gets otherwise:
every mistake is an ExportError that says what to do, and nothing of the user's is touched."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import onnxqa
from onnxqa import ExportError
from onnxqa.cli import main
from onnxqa.export import ExportConfig, export

from conftest import ROOT, make_checkpoint, shared_path

SEED = "bert-tiny-finetuned-squadv2"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
QUICK = dict(precisions=("fp32",), progress=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(shared_path("seeds", SEED), tmp_path_factory.mktemp("ck") / "ck")


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _copy(checkpoint: Path, to: Path, skip=()) -> Path:
    shutil.copytree(checkpoint, to, ignore=lambda _d, names: [n for n in names if n in skip])
    return to


# ---------------------------------------------------------------- what --force may replace


def test_force_refuses_a_directory_that_is_not_a_model(checkpoint, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "notes.txt").write_text("my notes")
    (models / "other-model").mkdir()
    (models / "other-model" / "onnxqa.json").write_text('{"format": 1}')
    before = _snapshot(models)
    with pytest.raises(ExportError, match="not an onnxqa model directory"):
        export(str(checkpoint), models, ExportConfig(force=True, **QUICK))
    assert _snapshot(models) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


@pytest.mark.parametrize("where", ["itself", "parent", "inside"])
def test_force_never_touches_the_source_checkpoint(checkpoint, tmp_path, where):
    ck = _copy(checkpoint, tmp_path / "work" / "ck")
    (ck / "onnxqa.json").write_text('{"format": 1}')  # even when it looks like a model directory
    out = {"itself": ck, "parent": ck.parent, "inside": ck / "onnx"}[where]
    before = _snapshot(tmp_path)
    with pytest.raises(ExportError, match="never writes over its own inputs"):
        export(str(ck), out, ExportConfig(force=True, **QUICK))
    assert _snapshot(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["ck"]


def test_cli_force_on_the_checkpoint_is_a_clean_error(checkpoint, tmp_path, capsys):
    ck = _copy(checkpoint, tmp_path / "ck")
    before = _snapshot(ck)
    assert main(["export", str(ck), str(ck), "--force", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "never writes over its own inputs" in err and "Traceback" not in err
    assert _snapshot(ck) == before


def test_eval_and_bench_never_write_over_their_inputs(tiny, tmp_path, capsys):
    data = tmp_path / "data.json"
    shutil.copy(shared_path("data", "squad", "dev-v1.1.json"), data)
    before = data.read_bytes()
    args = ["eval", str(tiny), str(data), "--limit", "2", "--quiet"]
    assert main([*args, "--predictions", str(data)]) == 2
    assert main([*args, "--predictions", str(tiny / "preds.json")]) == 2
    assert main(["bench", str(tiny), "-n", "2", "--output", str(tiny / "bench.json")]) == 2
    assert "never writes over its own inputs" in capsys.readouterr().err
    assert data.read_bytes() == before and not (tiny / "preds.json").exists() and not (tiny / "bench.json").exists()
    assert main([*args, "--predictions", str(tmp_path / "preds.json")]) == 0
    assert len(json.loads((tmp_path / "preds.json").read_text())) == 2


# ---------------------------------------------------------------- what a checkpoint needs


def test_missing_tokenizer_files_say_what_to_do(checkpoint, tmp_path):
    ck = _copy(checkpoint, tmp_path / "ck", skip=TOKENIZER_FILES)
    with pytest.raises(ExportError, match=r"no tokenizer files \(tokenizer.json, or vocab.txt.*--tokenizer"):
        export(str(ck), tmp_path / "m", ExportConfig(**QUICK))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_tokenizer_from_elsewhere(checkpoint, tmp_path, capsys):
    ck = _copy(checkpoint, tmp_path / "ck", skip=TOKENIZER_FILES)
    seed = shared_path("seeds", SEED)
    assert (
        main(["export", str(ck), str(tmp_path / "m"), "--tokenizer", str(seed), "--precision", "fp32", "--quiet"]) == 0
    )
    qa = onnxqa.load(tmp_path / "m", device="cpu")
    assert qa("Who designed the bridge?", "The bridge was designed by Ada Lovelace.")


def test_weights_that_cannot_be_loaded(checkpoint, tmp_path):
    ck = _copy(checkpoint, tmp_path / "ck")
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match="cannot be loaded"):
        export(str(ck), tmp_path / "m", ExportConfig(**QUICK))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


class WritesFile:
    """A pickle payload: unpickling it creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_pickle_weights_refused_by_torch_are_an_export_error(checkpoint, tmp_path):
    sentinel = tmp_path / "executed"
    pickle.loads(pickle.dumps(WritesFile(sentinel)))  # the payload is live ...
    assert sentinel.exists()
    sentinel.unlink()
    ck = _copy(checkpoint, tmp_path / "ck", skip=("model.safetensors",))
    (ck / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": WritesFile(sentinel)}))
    with pytest.raises(ExportError, match="cannot be loaded.*safetensors"):
        export(str(ck), tmp_path / "m", ExportConfig(**QUICK))
    assert not sentinel.exists()  # ... and was never executed


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_sharded_weights_export(tmp_path, safe):
    from transformers import AutoModelForQuestionAnswering

    ck = make_checkpoint(shared_path("seeds", SEED), tmp_path / "whole")
    sharded = tmp_path / "sharded"
    model = AutoModelForQuestionAnswering.from_pretrained(ck)
    model.save_pretrained(sharded, max_shard_size="1MB", safe_serialization=safe)
    for f in TOKENIZER_FILES:
        shutil.copy(ck / f, sharded / f)
    shards = sorted(p.name for p in sharded.iterdir() if "-of-" in p.name)
    assert len(shards) > 1, shards
    manifest = export(str(sharded), tmp_path / "m", ExportConfig(**QUICK))
    assert manifest["variants"]["fp32"]["validation"]["status"] == "passed"
    assert onnxqa.load(tmp_path / "m", device="cpu")("Who designed it?", "It was designed by Ada.")


def test_config_that_is_not_a_qa_model(checkpoint, tmp_path):
    ck = _copy(checkpoint, tmp_path / "ck")
    config = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(ExportError, match="BertForMaskedLM checkpoint, not a question-answering one"):
        export(str(ck), tmp_path / "m", ExportConfig(**QUICK))


def test_weights_without_a_qa_head(tmp_path):
    from transformers import AutoConfig, AutoModel

    seed = shared_path("seeds", SEED)
    ck = tmp_path / "encoder"
    AutoModel.from_config(AutoConfig.from_pretrained(seed)).save_pretrained(ck)
    config = json.loads((ck / "config.json").read_text())
    del config["architectures"]  # nothing in the config says what it is: the weights tell
    (ck / "config.json").write_text(json.dumps(config))
    for f in TOKENIZER_FILES:
        shutil.copy(seed / f, ck / f)
    with pytest.raises(ExportError, match="no trained question-answering head"):
        export(str(ck), tmp_path / "m", ExportConfig(**QUICK))


@pytest.mark.parametrize("content", ["{not json", '{"model_type": 42}'])
def test_unreadable_config(checkpoint, tmp_path, content):
    ck = _copy(checkpoint, tmp_path / "ck")
    (ck / "config.json").write_text(content)
    with pytest.raises(ExportError):
        export(str(ck), tmp_path / "m", ExportConfig(**QUICK))


def test_manifest_names_a_local_source_by_its_directory_name_only(tiny):
    manifest = json.loads((tiny / "onnxqa.json").read_text())
    assert manifest["source"]["id"] == SEED
    text = (tiny / "onnxqa.json").read_text()
    assert str(tiny.parent.parent) not in text and "/tmp" not in text


# ---------------------------------------------------------------- validation that decides


def test_int8_check_records_its_limits(tiny):
    check = json.loads((tiny / "onnxqa.json").read_text())["variants"]["int8"]["validation"]
    assert check["status"] == "passed"
    assert check["pairs"] >= 200 and check["finite"]
    assert check["agreement"] >= check["limits"]["min_agreement"]
    assert check["mean_rel_diff"] <= check["limits"]["max_rel_diff"]


def test_a_failed_variant_is_not_written_and_its_rejection_recorded(checkpoint, tmp_path, monkeypatch):
    from onnxqa.export import _checks

    impossible = _checks.Limits(min_agreement=1.01, max_rel_diff=0.1)  # no int8 can pass this
    monkeypatch.setitem(_checks.LIMITS, "int8", impossible)
    with pytest.warns(UserWarning, match="int8 variant failed its check.*not written"):
        manifest = export(str(checkpoint), tmp_path / "m", ExportConfig(check_pairs=20, progress=False))
    assert "int8" not in manifest["variants"] and not (tmp_path / "m" / "model.int8.onnx").exists()
    check = manifest["rejected"]["int8"]["validation"]
    assert check["status"] == "failed" and check["failed_because"]
    assert json.loads((tmp_path / "m" / "onnxqa.json").read_text())["rejected"]["int8"]["validation"] == check
    assert onnxqa.load(tmp_path / "m", device="cpu").precision == "fp32"  # the CPU default is a validated one
    with pytest.raises(onnxqa.ModelLoadError, match="int8 variant .* failed its check .* not written"):
        onnxqa.load(tmp_path / "m", device="cpu", precision="int8")


def test_non_finite_logits_raise_instead_of_answering(tiny, tmp_path):
    from onnx import TensorProto, helper

    from onnxqa._manifest import sha256_bytes

    # a QA graph whose logits are sqrt(-ids): NaN for every real token
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "n"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "n"])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "n"]) for n in ("start_logits", "end_logits")]
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Neg", ["f"], ["neg"]),
        helper.make_node("Sqrt", ["neg"], ["start_logits"]),
        helper.make_node("Identity", ["start_logits"], ["end_logits"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "nan", [ids, mask], outs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 10  # onnx writes a newer IR than onnxruntime reads
    model_dir = tmp_path / "model"
    shutil.copytree(tiny, model_dir)
    graph = model.SerializeToString()
    (model_dir / "model.fp32.onnx").write_bytes(graph)
    manifest = json.loads((model_dir / "onnxqa.json").read_text())
    manifest["variants"]["fp32"]["sha256"] = sha256_bytes(graph)
    (model_dir / "onnxqa.json").write_text(json.dumps(manifest))
    qa = onnxqa.load(model_dir, device="cpu", precision="fp32")
    with pytest.raises(onnxqa.InferenceError, match="NaN or infinite"):
        qa("Who designed the bridge?", "The bridge was designed by Ada.")


# ---------------------------------------------------------------- environment and entry points


def test_bad_thread_count_in_the_environment(tiny, monkeypatch, capsys):
    monkeypatch.setenv("ONNXQA_THREADS", "abc")
    with pytest.raises(onnxqa.InputError, match="ONNXQA_THREADS must be a positive integer"):
        onnxqa.load(tiny, device="cpu")
    assert main(["ask", str(tiny), "-q", "Who?", "-c", "Ada wrote it."]) == 2
    assert "ONNXQA_THREADS" in capsys.readouterr().err


def test_python_dash_m_is_the_cli(tiny):
    args = ["ask", str(tiny), "-q", "Who wrote it?", "-c", "It was written by Ada.", "--json"]
    module = subprocess.run([sys.executable, "-m", "onnxqa", *args], capture_output=True, text=True, cwd=ROOT)
    script = subprocess.run(
        [str(Path(sys.executable).parent / "onnxqa"), *args], capture_output=True, text=True, cwd=ROOT
    )
    assert module.returncode == script.returncode == 0, module.stderr
    assert json.loads(module.stdout) == json.loads(script.stdout)
