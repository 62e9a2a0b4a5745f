"""benchmarks/gpu.py without a GPU: arguments, the refusal without CUDA, the stage timers and the
tables rendered from a results file (its measuring parts run with --dry-run, by hand)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import onnxqa
from onnxqa._manifest import read_verified
from onnxqa.runtime import STAGES, cuda_available
from onnxqa.runtime._session import Engine, SessionSettings

from conftest import bench_module


@pytest.fixture(scope="module")
def gpu_bench():
    return bench_module("gpu")


def test_arguments_and_peaks(gpu_bench):
    args = gpu_bench.parse_args(["--models", "tinyroberta-squad2", "--batch-sizes", "8,64", "--no-accuracy"])
    assert args.models == ["tinyroberta-squad2"] and args.batch_sizes == [8, 64] and not args.accuracy
    assert args.engines == [*gpu_bench.ONNXQA, gpu_bench.PEER]
    dry = gpu_bench.parse_args(["--dry-run"])
    assert dry.questions == 20 and dry.models == ["bert-tiny-finetuned-squadv2"]
    assert gpu_bench.table_peak("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu_bench.table_peak("NVIDIA H100 PCIe") == 756.0
    assert gpu_bench.table_peak("NVIDIA H200") == 989.4
    assert gpu_bench.table_peak("Some GPU") is None


@pytest.mark.skipif(cuda_available(), reason="the refusal is for machines without CUDA")
def test_refuses_to_run_without_cuda(gpu_bench):
    with pytest.raises(SystemExit, match="CUDAExecutionProvider.*--dry-run"):
        gpu_bench.main(["--models", "bert-tiny-finetuned-squadv2"])


def test_stage_timers(gpu_bench, fake_model, squad_v2):
    qa = onnxqa.load(fake_model, device="cpu", precision="fp32", buckets=True)
    pairs = [(q["question"], q["context"]) for q in squad_v2[:12]]
    stages = gpu_bench.stages(qa, pairs, 4)
    assert tuple(stages) == STAGES
    assert all(v > 0 for v in stages.values())


def test_model_split(gpu_bench, fake_model):
    qa = onnxqa.load(fake_model, device="cpu", precision="fp32", buckets=True)
    assert gpu_bench.model_split(qa, 2, 64) is None  # no buffers of its own without fixed buffers
    variant = json.loads((fake_model / "onnxqa.json").read_text())["variants"]["fp32"]
    model = read_verified(fake_model, variant["file"], variant["sha256"])
    fixed = SimpleNamespace(engine=Engine(model, "cpu", SessionSettings(fixed_buffers=True)))
    split = gpu_bench.model_split(fixed, 2, 64, runs=3)
    assert split["rows"] == 2 and split["width"] == 64 and split["run"] > 0


def _result(gpu_bench):
    def engine(qps, p50):
        return {
            "questions_per_s": qps,
            "batch_size": 64,
            "latency_ms": {"p50": p50, "p90": p50, "p99": 2 * p50, "mean": p50},
            "effective_tflops": qps / 100,
            "stages_ms_per_question": dict(tokenize=0.05, model=0.03, decode_spans=0.01, decode_chars=0.01, merge=0.0),
            "model_split_ms": {"batch": {"h2d": 0.1, "run": 2.0, "d2h": 0.2, "rows": 64, "width": 384}},
        }

    tiny = engine(30000.0, 0.3)
    tiny["stages_ms_per_question"] = dict(tokenize=0.05, pad=0.004, model=0.03, decode=0.02, assemble=0.001)
    return {
        "machine": {
            "gpu": "NVIDIA H100 80GB HBM3",
            "driver": "580.00",
            "driver_cuda": "13.0",
            "onnxruntime": "1.31.1",
            "onnxruntime_cuda": "13.0",
            "torch": "2.9.0+cu130",
            "torch_cuda": "13.0",
            "cudnn": 91300,
            "transformers": "4.57.6",
            "python": "3.12.3",
            "cpu": "Intel Xeon",
            "cpu_cores": 16,
            "fp16_peak_tflops_table": 989.4,
            "fp16_peak_tflops_measured": 700.0,
        },
        "date": "2026-11-22",
        "settings": {"questions": 1000},
        "speed": {
            "tinybert-6l-768d-squad2": {
                "architecture": {"layers": 6, "hidden": 768, "intermediate": 3072},
                "engines": {
                    "onnxqa-fp16-graphs": engine(12000.0, 0.8),
                    "onnxqa-fp16-plain": engine(9000.0, 1.5),
                    "pipeline-fp16": engine(800.0, 6.0),
                },
            },
            "bert-tiny-finetuned-squadv2": {
                "architecture": {"layers": 2, "hidden": 128, "intermediate": 512},
                "engines": {"onnxqa-fp16-graphs": tiny},
            },
        },
        "accuracy": {
            "model": "minilm-l6-squad-ref",
            "questions": 5795,
            "compared": ["fp16", "fp32"],
            "answers_equal_pct": 99.7,
            "f1_delta": -0.02,
            "engines": {
                name: {"exact": 43.6, "f1": 48.7, "HasAns_f1": 57.0, "NoAns_exact": 39.7, "seconds": 1.0}
                for name in ("fp32", "fp16")
            },
        },
        "skipped": ["onnxqa-fp32-graphs on tinyroberta-squad2: ModelLoadError: ..."],
    }


def test_tables_from_a_results_file(gpu_bench, tmp_path, capsys):
    path = tmp_path / "gpu-test.json"
    path.write_text(json.dumps(_result(gpu_bench)))
    gpu_bench.main(["--report-only", str(path)])
    text = capsys.readouterr().out
    assert "**NVIDIA H100 80GB HBM3**" in text and "driver 580.00" in text and "onnxruntime 1.31.1" in text
    assert (
        "| tinybert-6l-768d-squad2 | onnxqa-fp16-graphs | 12000 | 64 | 15.0 | 0.80 | 1.60 | 0.13 | 120.00 | 12.1 |"
        in text
    )
    targets = [line for line in text.splitlines() if line.startswith("| tinybert") and "yes (" in line]
    assert targets == [
        "| tinybert-6l-768d-squad2 | onnxqa-fp16-graphs | yes (0.80 ms) | yes (12000) | yes (15.0×) | yes (0.13) |"
    ]
    assert "bert-tiny-finetuned-squadv2 | onnxqa-fp16-graphs | yes" not in text  # targets: 6 x 768 only
    stages = "| 0.050 | 0.004 | 0.030 | 0.020 | 0.001 | 0.100 | 2.000 | 0.200 |"
    assert f"| bert-tiny-finetuned-squadv2 | onnxqa-fp16-graphs {stages}" in text
    # a results file of earlier runs: decoding timed in two parts, padding inside the model call
    assert "| tinybert-6l-768d-squad2 | onnxqa-fp16-plain | 0.050 | – | 0.030 | 0.020 | 0.000 | 0.100 |" in text
    assert "**99.70%**" in text and "**-0.020**" in text and "met" in text
    assert "Not measured: onnxqa-fp32-graphs on tinyroberta-squad2" in text


def test_section_replaced_in_place(gpu_bench, tmp_path):
    md = tmp_path / "B.md"
    md.write_text("# B\n\n## GPU\n\nintro\n")
    gpu_bench.write_section(md, "first\n", gpu_bench.START, gpu_bench.END)
    gpu_bench.write_section(md, "second\n", gpu_bench.START, gpu_bench.END)
    text = md.read_text()
    assert text.count(gpu_bench.START) == 1 and "second" in text and "first" not in text and "intro" in text
