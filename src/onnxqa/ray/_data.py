"""Batch inference with Ray Data: :class:`QAPredictor` for ``Dataset.map_batches``, and the Ray
side of ``onnxqa batch --ray``."""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError
from .._rows import ANSWER_COLUMNS, answer_columns, arrow_answer_fields, row_options
from ..runtime import QuestionAnswerer, load

__all__ = ["QAPredictor", "answer_on_ray"]


def _assigned_cpus() -> int | None:
    """The CPUs Ray gave this actor (its onnxruntime threads), or None outside Ray."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not in a Ray worker, or an old Ray: onnxruntime's default
        return None
    return max(1, int(cpus)) if cpus else None


class QAPredictor:
    """A callable class for ``Dataset.map_batches``: the model is loaded once per actor, and each
    batch gets :data:`onnxqa.batch.ANSWER_COLUMNS` added.

    >>> ds.map_batches(QAPredictor, fn_constructor_kwargs={"model_dir": "/models/qa", "precision": "int8"},
    ...                compute=ray.data.ActorPoolStrategy(size=4), batch_size=256)  # doctest: +SKIP

    A batch needs ``question`` and ``context`` columns; columns named like the options of
    :data:`onnxqa.batch.ROW_OPTIONS` set that row's options. Every row gets the best answer
    ``qa.batch`` gives it, or its ``error``. Batches may be numpy dicts (Ray Data's default;
    the new columns are object arrays, None for null), pandas DataFrames or pyarrow Tables, and
    come back in the same form.

    ``threads``: inference threads (onnxruntime's, or OpenVINO's); by default the CPUs Ray gave the
    actor (``num_cpus``).
    Other keyword arguments are :func:`onnxqa.load`'s (``device``, ``precision``, options).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        device: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        **options: Any,
    ) -> None:
        for name in ("top_k", "batch_size"):
            if name in options:
                raise InputError(f"{name} is not an option of QAPredictor (it adds the best answer of each row)")
        if threads is None:
            threads = _assigned_cpus()
        self.qa: QuestionAnswerer = load(model_dir, device=device, precision=precision, threads=threads, **options)

    def __repr__(self) -> str:
        return f"QAPredictor({self.qa!r})"

    def __call__(self, batch: Any) -> Any:
        if isinstance(batch, dict):
            columns: Mapping[str, Any] = batch
            rows = len(batch["question"]) if "question" in batch else 0
        elif hasattr(batch, "num_rows") and hasattr(batch, "schema"):  # pyarrow.Table
            columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
            rows = batch.num_rows
        elif hasattr(batch, "columns") and hasattr(batch, "assign"):  # pandas.DataFrame
            columns = {name: batch[name].tolist() for name in batch.columns}
            rows = len(batch)
        else:
            raise InputError(f"QAPredictor takes numpy dicts, pandas DataFrames or pyarrow Tables, got {type(batch)}")
        missing = {"question", "context"} - set(columns)
        if missing:
            raise InputError(f"the batch has no column {' or '.join(sorted(missing))}; it needs question and context")
        answers = answer_columns(self.qa, columns["question"], columns["context"], row_options(columns, rows))
        if isinstance(batch, dict):
            out = {name: value for name, value in batch.items() if name not in ANSWER_COLUMNS}
            for name in ANSWER_COLUMNS:
                array = np.empty(rows, dtype=object)
                array[:] = answers[name]
                out[name] = array
            return out
        if hasattr(batch, "assign"):
            return batch.assign(**answers)
        import pyarrow as pa

        table = batch.drop_columns([name for name in ANSWER_COLUMNS if name in batch.schema.names])
        for f in arrow_answer_fields():
            table = table.append_column(f, pa.array(answers[f.name], type=f.type))
        return table


def answer_on_ray(
    model_dir: Path,
    source: Path,
    *,
    fmt: str,
    done: set[tuple[str, Any]],
    address: str | None,
    actors: int,
    threads_per_actor: int,
    device: str,
    precision: str,
    options: Mapping[str, Any],
    batch_size: int,
) -> Generator[Any, None, None]:
    """The rows of ``source`` not in ``done``, answered on Ray by ``actors`` :class:`QAPredictor`
    actors, as pyarrow Tables in input order. Starts (and at the end stops) a local Ray unless
    one is running in this process or ``address`` names a cluster; paths must be readable on
    every node."""
    import ray

    for name, value in (("actors", actors), ("threads_per_actor", threads_per_actor)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    if any(kind == "row" for kind, _ in done):
        raise InputError("resuming on Ray needs an id column: rows without ids are resumed in-process only")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        # reading takes no CPU reservation: it is a small part of the work, and actors that hold every
        # CPU of the cluster (actors x threads_per_actor = the cores) would otherwise starve it
        if fmt == "jsonl":
            ds = ray.data.read_json(str(source), lines=True, num_cpus=0)
        else:
            ds = ray.data.read_parquet(str(source), num_cpus=0)
        ds.context.execution_options.preserve_order = True
        ds.context.enable_progress_bars = False
        if done:
            skip = {value for _, value in done}
            ds = ds.filter(lambda row: str(row["id"]) not in skip, num_cpus=0)
        ds = ds.map_batches(
            QAPredictor,
            fn_constructor_kwargs={
                "model_dir": str(model_dir.resolve()),
                "device": device,
                "precision": precision,
                "threads": threads_per_actor,
                **options,
            },
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=threads_per_actor,
            batch_size=batch_size,
            batch_format="pyarrow",
        )
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
    finally:
        if started:
            ray.shutdown()
