"""What the benchmark scripts share: paths, the seed list, SQuAD questions, logging, machine names,
FLOP counts, the matmul limit, stage timing, the generated sections of markdown files, and a
server under load (`onnxqa serve` started here, a light keep-alive HTTP client).

The scripts run as ``python benchmarks/NAME.py``, so Python puts this folder first on ``sys.path``
and ``import common`` finds this module.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"
SQUAD_DEV = SHARED / "data" / "squad" / "dev-v2.0.json"
HELDOUT = SHARED / "data" / "squad" / "dev-v2.0.reference-heldout.json"
SEEDS = (
    "tinybert-6l-768d-squad2",
    "tinyroberta-squad2",
    "distilbert-base-cased-distilled-squad",
    "minilm-uncased-squad2",
    "bert-tiny-finetuned-squadv2",
)
REFERENCE = SHARED / "models" / "minilm-l6-squad-ref"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- questions


def squad(path: Path = SQUAD_DEV, n: int | None = None) -> tuple[dict[str, Any], list[Any]]:
    """A SQuAD file and its first ``n`` questions (all with None), in file order."""
    from onnxqa.squad import load_squad

    dataset, questions = load_squad(path)
    return dataset, questions[:n] if n else questions


def squad_pairs(n: int | None = None, path: Path = SQUAD_DEV) -> list[tuple[str, str]]:
    """The first ``n`` (question, context) pairs of a SQuAD file (default: SQuAD 2.0 dev)."""
    return [(q.question, q.context) for q in squad(path, n)[1]]


# ---------------------------------------------------------------- the machine


def machine_name(facts: dict[str, Any], words: int | None = None) -> str:
    """A file-name slug of the CPU (its first ``words`` words, without parenthesised text, or all of
    its name) and its logical cores, from :func:`onnxqa.bench.machine_facts`."""
    if words is None:
        slug = re.sub(r"[^a-z0-9]+", "-", facts["cpu"].lower()).strip("-")
    else:
        kept = re.sub(r"\(.*?\)", "", facts["cpu"]).lower().split()[:words]
        slug = "-".join(re.sub(r"[^a-z0-9]+", "", w) for w in kept)
    return f"{slug}-{facts['logical_cores']}c"


def cuda_available() -> bool:
    """Whether this onnxruntime offers the CUDA execution provider."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def matmul_peak(precision: str, seconds: float = 3.0) -> float:
    """GFLOP/s (GOP/s for int8) of one large MatMul / MatMulInteger in onnxruntime, all threads."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    m, k, n = 1024, 768, 3072  # the shape of a BERT feed-forward layer over 1,024 tokens
    if precision == "fp32":
        a_t, b_t, out_t, op = TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT, "MatMul"
        a = np.random.rand(m, k).astype(np.float32)
        b = np.random.rand(k, n).astype(np.float32)
    else:
        a_t, b_t, out_t, op = TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, "MatMulInteger"
        a = np.random.randint(0, 255, (m, k)).astype(np.uint8)
        b = np.random.randint(-127, 127, (k, n)).astype(np.int8)
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])],
        "peak",
        [helper.make_tensor_value_info("a", a_t, [m, k])],
        [helper.make_tensor_value_info("y", out_t, [m, n])],
        initializer=[helper.make_tensor("b", b_t, [k, n], b.tobytes(), raw=True)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # onnx writes a newer IR than onnxruntime reads
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sess.run(None, {"a": a})
    best = 0.0
    for _ in range(5):  # the best of five spells: a limit, so the spell least disturbed by the machine
        runs, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 5:
            sess.run(None, {"a": a})
            runs += 1
        best = max(best, 2 * m * k * n * runs / (time.perf_counter() - t0) / 1e9)
    return best


# ---------------------------------------------------------------- the model's work


def window_flops(arch: dict[str, int], n: int) -> float:
    """Multiply-adds x 2 of one encoder pass over ``n`` tokens (projections, FFN, attention)."""
    h, i, layers = arch["hidden"], arch["intermediate"], arch["layers"]
    if "macs_per_token" in arch:  # MobileBERT: bottlenecks and stacked feed-forward networks
        return layers * (2 * n * arch["macs_per_token"] + 4 * n * n * h)
    return layers * (2 * n * (4 * h * h + 2 * h * i) + 4 * n * n * h)


def architecture(checkpoint: Path) -> dict[str, int]:
    cfg = json.loads((checkpoint / "config.json").read_text())
    if cfg["model_type"] == "distilbert":
        return {"layers": cfg["n_layers"], "hidden": cfg["dim"], "intermediate": cfg["hidden_dim"]}
    if cfg["model_type"] == "mobilebert":  # attention in the bottleneck (true_hidden_size)
        b, h, i, ffns = (
            cfg["true_hidden_size"],
            cfg["hidden_size"],
            cfg["intermediate_size"],
            cfg["num_feedforward_networks"],
        )
        # two input bottlenecks, Q and K from one, V from the block input, attention output, the
        # stacked feed-forward networks, the output bottleneck
        macs = 2 * h * b + 2 * b * b + h * b + b * b + ffns * 2 * b * i + b * h
        return {"layers": cfg["num_hidden_layers"], "hidden": b, "intermediate": i, "macs_per_token": macs}
    return {"layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"], "intermediate": cfg["intermediate_size"]}


@contextlib.contextmanager
def stage_seconds(qa: Any) -> Iterator[dict[str, float]]:
    """Wall seconds of each stage (:data:`onnxqa.runtime.STAGES`) of the calls ``qa`` makes inside
    the block, summed, through the runtime's stage listener."""
    from onnxqa.runtime import STAGES

    spent = dict.fromkeys(STAGES, 0.0)
    listening = [True]

    def listen(stage: str, seconds: float, windows: int) -> None:
        if listening:
            spent[stage] += seconds

    qa.add_stage_listener(listen)
    try:
        yield spent
    finally:
        listening.clear()  # a listener stays added: this one stops counting


# ---------------------------------------------------------------- reports


def markers(script: str) -> tuple[str, str]:
    """The comments around the part of a markdown file that ``script`` writes."""
    return f"<!-- {script}:start -->", f"<!-- {script}:end -->"


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the generated part of ``path`` (between ``start`` and ``end``), keeping what was
    written around it by hand, or append it."""
    text = path.read_text() if path.exists() else ""
    body = f"{start}\n{section}{end}\n"
    if start in text and end in text:
        text = text[: text.index(start)] + body + text[text.index(end) + len(end) + 1 :]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + body
    path.write_text(text)


def cpu_session(path: Path, disabled: list[str], profile: Path | None = None) -> Any:
    """A 2-thread CPU session without the onnxruntime optimizers ``disabled`` (as the runtime creates
    them from a manifest), profiling into ``profile`` when given."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    if profile is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile / "profile")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)


def kernel_us(profile: str | Path, after_first_run: bool = False) -> collections.Counter[str]:
    """Kernel microseconds by operator type in an onnxruntime profile (the file
    ``session.end_profiling()`` names); with ``after_first_run`` the first run's kernels (a cold
    start) are left out."""
    events = json.loads(Path(profile).read_text())
    since = 0
    if after_first_run:
        first = next(e for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
        since = first["ts"] + first["dur"]
    by_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= since:
            by_op[e["args"]["op_name"]] += e["dur"]
    return by_op


# ---------------------------------------------------------------- a server under load


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model_dir: Path, precision: str, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "onnxqa.cli", "serve", str(model_dir), "--port", str(port)]
    cmd += ["--device", "cpu", "--precision", precision, *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Connection:
    """One keep-alive HTTP/1.1 connection; enough for this server's Content-Length responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host.encode()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, host)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host.decode()}\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def wait_ready(port: int, proc: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            conn = await Connection.open("127.0.0.1", port)
            status, _ = await conn.request("GET", "/ready")
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready in time")
