"""``onnxqa batch``: answer every question/context row of a JSONL or Parquet file.

Input rows have ``question`` and ``context``, optionally ``id`` and per-row options
(:data:`ROW_OPTIONS`); the output is the same format with every input column kept and
:data:`ANSWER_COLUMNS` added (the best answer of each row). A row that cannot be answered (an
empty question, a bad option) gets its message in ``error`` and the run goes on.

Rows stream through in chunks: read, answered, and written as one part file each into
``OUTPUT.partial/`` beside the output. When every row is done the parts are joined into
``OUTPUT`` through a temporary file and a rename, so ``OUTPUT`` is either absent or complete.
An interrupted run leaves its parts; ``resume=True`` (``--resume``) answers only the rows that
neither they nor an existing ``OUTPUT`` hold, by ``id`` (by position for rows without one).

The rows are answered in this process (:class:`InProcess`, the default) or on a Ray cluster
(:class:`OnRay`; see :mod:`onnxqa.ray`). Either way this process writes the one output file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ._errors import InputError
from ._paths import check_not_overlapping
from ._progress import bar as progress_bar
from ._rows import ANSWER_COLUMNS, ROW_OPTIONS, answer_columns, arrow_answer_fields, row_options
from .runtime import QAOptions

if TYPE_CHECKING:
    import pyarrow as pa

    from .runtime import QuestionAnswerer

__all__ = [
    "ANSWER_COLUMNS",
    "DEFAULT_CHUNK_ROWS",
    "ROW_OPTIONS",
    "BatchReport",
    "InProcess",
    "OnRay",
    "answer_columns",
    "row_options",
    "run_batch",
]

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
DEFAULT_CHUNK_ROWS = 256
"""Rows read, answered and written at a time (with Ray: rows per batch)."""


@dataclass(frozen=True)
class BatchReport:
    """What a run did. ``failed``: ``(row id, message)`` of the rows this run could not answer
    (``row N``, counted from 0, for rows without an ``id``). ``engine``: the backend's label,
    ``"in-process"`` or ``"ray"``."""

    output: Path
    rows: int
    answered: int
    skipped: int
    seconds: float
    engine: str
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------- the two formats


@dataclass
class _Chunk:
    """Rows read from the input: their keys (for resume), what to answer, and how to write them."""

    keys: list[Any]
    labels: list[str]  # how a failed row is named in reports
    questions: list[Any]
    contexts: list[Any]
    options: list[dict[str, Any]]
    errors: list[str | None]  # rows broken before answering (a line that is not JSON)
    data: Any  # the format's own rows


def _key(row_id: Any, index: int) -> tuple[str, Any]:
    return ("id", str(row_id)) if row_id is not None else ("row", index)


def _label(key: tuple[str, Any]) -> str:
    return str(key[1]) if key[0] == "id" else f"row {key[1]}"


class _Jsonl:
    suffix = ".jsonl"

    @staticmethod
    def count(path: Path) -> int:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())

    @staticmethod
    def chunks(path: Path, size: int, first_index: int = 0) -> Iterator[_Chunk]:
        def flush(rows: list[tuple[int, Any, str | None]]) -> _Chunk:
            keys, data, errors = [], [], []
            for index, row, error in rows:
                keys.append(_key(row.get("id") if isinstance(row, dict) else None, index))
                data.append(row if isinstance(row, dict) else {})
                errors.append(error)
            columns = {name: [r.get(name) for r in data] for name in ROW_OPTIONS}
            return _Chunk(
                keys=keys,
                labels=[_label(k) for k in keys],
                questions=[r.get("question") for r in data],
                contexts=[r.get("context") for r in data],
                options=row_options(columns, len(data)),
                errors=errors,
                data=data,
            )

        rows: list[tuple[int, Any, str | None]] = []
        index = 0
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    error = None if isinstance(row, dict) else f"line {number} is not a JSON object"
                except json.JSONDecodeError as exc:
                    row, error = None, f"line {number} is not valid JSON: {exc}"
                if index >= first_index:
                    rows.append((index, row, error))
                index += 1
                if len(rows) == size:
                    yield flush(rows)
                    rows = []
        if rows:
            yield flush(rows)

    @staticmethod
    def write(path: Path, chunk: _Chunk, answers: Mapping[str, Sequence[Any]], keep: Sequence[int]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for i in keep:
                row = dict(chunk.data[i])
                row.update({name: answers[name][i] for name in ANSWER_COLUMNS})
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    @staticmethod
    def write_table(path: Path, table: pa.Table) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    @staticmethod
    def keys(path: Path) -> Iterator[tuple[str, Any]]:
        with open(path, encoding="utf-8") as f:
            index = 0
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path} is not a complete JSONL file ({exc}); it cannot be resumed") from exc
                yield _key(row.get("id") if isinstance(row, dict) else None, index)
                index += 1

    @staticmethod
    def join(sources: Sequence[Path], dest: Path) -> None:
        with open(dest, "wb") as out:
            for source in sources:
                with open(source, "rb") as f:
                    shutil.copyfileobj(f, out)


class _Parquet:
    suffix = ".parquet"

    @staticmethod
    def _file(path: Path) -> Any:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise InputError(f"Parquet files need pyarrow: pip install pyarrow ({exc})") from exc

        try:
            return pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise InputError(f"cannot read {path} as Parquet: {exc}") from exc

    @classmethod
    def count(cls, path: Path) -> int:
        return int(cls._file(path).metadata.num_rows)

    @classmethod
    def chunks(cls, path: Path, size: int, first_index: int = 0) -> Iterator[_Chunk]:
        source = cls._file(path)
        names = set(source.schema_arrow.names)
        missing = {"question", "context"} - names
        if missing:
            raise InputError(f"{path} has no column {' or '.join(sorted(missing))}; it needs question and context")
        index = 0
        for batch in source.iter_batches(batch_size=size):
            if index + batch.num_rows <= first_index:
                index += batch.num_rows
                continue
            if index < first_index:
                batch = batch.slice(first_index - index)
                index = first_index
            columns = {name: batch.column(name).to_pylist() for name in batch.schema.names if name != "context"}
            contexts = batch.column("context").to_pylist()
            ids = columns.get("id", [None] * batch.num_rows)
            keys = [_key(ids[i], index + i) for i in range(batch.num_rows)]
            index += batch.num_rows
            yield _Chunk(
                keys=keys,
                labels=[_label(k) for k in keys],
                questions=columns["question"],
                contexts=contexts,
                options=row_options(columns, batch.num_rows),
                errors=[None] * batch.num_rows,
                data=batch,
            )

    @staticmethod
    def schema(input_schema: pa.Schema) -> pa.Schema:
        import pyarrow as pa

        kept = [f for f in input_schema if f.name not in ANSWER_COLUMNS]
        return pa.schema(kept + arrow_answer_fields(), metadata=input_schema.metadata)

    @classmethod
    def write(cls, path: Path, chunk: _Chunk, answers: Mapping[str, Sequence[Any]], keep: Sequence[int]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        batch = chunk.data
        if len(keep) != batch.num_rows:
            batch = batch.take(pa.array(keep, type=pa.int64()))
        schema = cls.schema(batch.schema)
        arrays = [batch.column(f.name) for f in schema if f.name not in ANSWER_COLUMNS]
        arrays += [pa.array([answers[f.name][i] for i in keep], type=f.type) for f in arrow_answer_fields()]
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)

    @staticmethod
    def write_table(path: Path, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        pq.write_table(table, path)

    @classmethod
    def keys(cls, path: Path) -> Iterator[tuple[str, Any]]:
        source = cls._file(path)
        index = 0
        has_id = "id" in source.schema_arrow.names
        for batch in source.iter_batches(columns=["id"] if has_id else [source.schema_arrow.names[0]]):
            ids = batch.column(0).to_pylist() if has_id else [None] * batch.num_rows
            for row_id in ids:
                yield _key(row_id, index)
                index += 1

    @classmethod
    def join(cls, sources: Sequence[Path], dest: Path) -> None:
        import pyarrow.parquet as pq

        writer = None
        try:
            for source in sources:
                part = cls._file(source)
                if writer is None:
                    writer = pq.ParquetWriter(dest, part.schema_arrow)
                elif not part.schema_arrow.equals(writer.schema):
                    raise InputError(f"{source} does not have the columns of the other parts; it cannot be joined")
                for batch in part.iter_batches():
                    writer.write_batch(batch)
        finally:
            if writer is not None:
                writer.close()


_Format = type[_Jsonl] | type[_Parquet]


def _format(path: Path, what: str) -> _Format:
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{what} {path} must end in .jsonl, .ndjson, .parquet or .pq")
    return _Jsonl if kind == "jsonl" else _Parquet


# ---------------------------------------------------------------------- the output's parts


class _Parts:
    """The ``OUTPUT.partial/`` directory: numbered part files, each written whole and renamed."""

    def __init__(self, output: Path, fmt: _Format) -> None:
        self.dir = output.with_name(output.name + ".partial")
        self.fmt = fmt
        self._next = len(self.existing()) if self.dir.is_dir() else 0

    def existing(self) -> list[Path]:
        return sorted(self.dir.glob(f"part-*{self.fmt.suffix}"))

    def is_ours(self) -> bool:
        return self.dir.is_dir() and all(p.name.startswith(("part-", ".part-")) for p in self.dir.iterdir())

    def new(self) -> tuple[Path, Path]:
        """A temporary path to write and the part's final name."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"part-{self._next:06d}{self.fmt.suffix}"
        self._next += 1
        return self.dir / f".{final.name}.tmp", final


def _finish(output: Path, sources: list[Path], fmt: _Format, parts: _Parts) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        if sources:
            fmt.join(sources, Path(tmp))
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if parts.dir.is_dir():
        shutil.rmtree(parts.dir)


# ---------------------------------------------------------------------- where the rows are answered


@dataclass(frozen=True)
class _Job:
    """What a backend answers: the rows of ``source`` whose keys are not in ``done``."""

    model_dir: Path
    source: Path
    fmt: _Format
    done: set[tuple[str, Any]]
    options: dict[str, Any]
    chunk_rows: int


@dataclass(frozen=True)
class _Part:
    """Answered rows, ready to be written as one part file."""

    rows: int  # rows it holds
    seen: int  # input rows it accounts for, skipped ones included (the progress bar's step)
    failed: list[tuple[str, str]]
    write: Callable[[Path], None]


@dataclass(frozen=True, kw_only=True)
class InProcess:
    """Answer the rows in this process: the model loaded as :func:`onnxqa.load` loads it, with
    ``threads`` inference threads (default: ``ONNXQA_THREADS``, else one per physical core)."""

    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None

    label: ClassVar[str] = "in-process"
    _activity: ClassVar[str] = "answering"

    def _parts(self, job: _Job) -> Generator[_Part, None, None]:
        from .runtime import load

        qa = load(job.model_dir, device=self.device, precision=self.precision, threads=self.threads, **job.options)
        done = job.done
        first = len(done) if all(kind == "row" for kind, _ in done) else 0  # rows without ids: a prefix
        for chunk in job.fmt.chunks(job.source, job.chunk_rows, first_index=first):
            keep = [i for i, key in enumerate(chunk.keys) if key not in done]
            if not keep:
                continue
            answers = _answer_chunk(qa, chunk, keep)
            failed = [(chunk.labels[i], answers["error"][i]) for i in keep if answers["error"][i] is not None]
            write = functools.partial(job.fmt.write, chunk=chunk, answers=answers, keep=keep)
            yield _Part(len(keep), len(chunk.keys), failed, write)


@dataclass(frozen=True, kw_only=True)
class OnRay:
    """Answer the rows on Ray with Ray Data (needs the ``ray`` extra): ``actors`` actors holding
    the model, each with ``threads_per_actor`` onnxruntime threads (and as many CPUs reserved).

    ``address``: the cluster to join; None: a Ray already running in this process, else a local
    one started for the run and stopped after it. The input and the model directory must be
    readable at the same paths on every node. Resuming needs an ``id`` column.

    Raises:
        InputError: ``actors`` or ``threads_per_actor`` is not an integer >= 1.
    """

    address: str | None = None
    actors: int = 2
    threads_per_actor: int = 1
    device: str = "auto"
    precision: str = "auto"

    label: ClassVar[str] = "ray"
    _activity: ClassVar[str] = "answering on Ray"

    def __post_init__(self) -> None:
        for name in ("actors", "threads_per_actor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")

    def _parts(self, job: _Job) -> Generator[_Part, None, None]:
        from .ray import answer_on_ray

        tables = answer_on_ray(  # a generator: closing it stops the Ray it started
            job.model_dir,
            job.source,
            fmt=job.fmt.suffix[1:],
            done=job.done,
            address=self.address,
            actors=self.actors,
            threads_per_actor=self.threads_per_actor,
            device=self.device,
            precision=self.precision,
            options=job.options,
            batch_size=job.chunk_rows,
        )
        with contextlib.closing(tables):
            for table in tables:
                if table.num_rows:
                    write = functools.partial(job.fmt.write_table, table=table)
                    yield _Part(table.num_rows, table.num_rows, _failed_rows(table), write)


Backend = InProcess | OnRay
"""Where :func:`run_batch` answers the rows."""


def _answer_chunk(qa: QuestionAnswerer, chunk: _Chunk, keep: Sequence[int]) -> dict[str, list[Any]]:
    """:data:`ANSWER_COLUMNS` for every row of ``chunk`` (rows not in ``keep`` stay null)."""
    todo = [i for i in keep if chunk.errors[i] is None]
    found = answer_columns(
        qa,
        [chunk.questions[i] for i in todo],
        [chunk.contexts[i] for i in todo],
        [chunk.options[i] for i in todo],
    )
    answers: dict[str, list[Any]] = {name: [None] * len(chunk.keys) for name in ANSWER_COLUMNS}
    for j, i in enumerate(todo):
        for name in ANSWER_COLUMNS:
            answers[name][i] = found[name][j]
    for i in keep:
        if chunk.errors[i] is not None:
            answers["error"][i] = chunk.errors[i]
    return answers


def _failed_rows(table: pa.Table) -> list[tuple[str, str]]:
    """``(id, error)`` of a table's rows that have an error."""
    errors = table.column("error").to_pylist()
    if all(e is None for e in errors):
        return []
    ids = table.column("id").to_pylist() if "id" in table.schema.names else [None] * len(errors)
    return [(str(i) if i is not None else "(no id)", e) for i, e in zip(ids, errors) if e is not None]


# ---------------------------------------------------------------------- the job


def run_batch(
    model_dir: str | os.PathLike[str],
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    backend: Backend | None = None,
    options: Mapping[str, Any] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> BatchReport:
    """Answer every row of ``input`` (JSONL or Parquet) into ``output`` (the same format).

    ``backend``: where the rows are answered, :class:`InProcess` (the default: ``InProcess()``)
    or :class:`OnRay`. ``options``: :class:`~onnxqa.QAOptions` for every row (a row's own option
    columns win); ``top_k`` and ``batch_size`` are not row options: the output holds the best
    answer, and the windows of a chunk run one per inference call on CPU (the default), so every
    row's answer is the one ``qa.batch`` gives it. ``resume``: keep what ``output`` and
    ``OUTPUT.partial/`` already hold and answer only the other rows; ``force``: replace an
    existing ``output``.

    Raises:
        InputError: bad arguments, an unreadable input, an output that exists or overlaps an input.
        ModelLoadError, ProviderError: as :func:`onnxqa.load`.
    """
    if backend is None:
        backend = InProcess()
    if not isinstance(backend, (InProcess, OnRay)):
        raise InputError(f"backend must be InProcess(...) or OnRay(...), got {type(backend).__name__}")
    model_dir, source, output = Path(model_dir), Path(input), Path(output)
    fmt = _check_paths(model_dir, source, output, chunk_rows, resume, force)
    parts = _Parts(output, fmt)
    if parts.dir.exists():
        parts = _reuse_parts(parts, output, fmt, resume, force)
    job_options = _job_options(options)
    kept: list[Path] = [output] if resume and output.exists() else []
    done: set[tuple[str, Any]] = set()
    if resume:
        for path in kept + parts.existing():
            done.update(fmt.keys(path))
    total = fmt.count(source)
    t0 = time.perf_counter()
    job = _Job(model_dir, source, fmt, done, job_options, chunk_rows)
    answered, failed = _write_parts(backend, job, parts, total, progress)
    seconds = time.perf_counter() - t0
    sources = kept + parts.existing()
    rows = sum(1 for path in sources for _ in fmt.keys(path)) if resume else answered
    _finish(output, sources, fmt, parts)
    return BatchReport(output, rows, answered, len(done), seconds, backend.label, failed)


def _check_paths(model_dir: Path, source: Path, output: Path, chunk_rows: int, resume: bool, force: bool) -> _Format:
    """The input's format, once the arguments are checked against each other and the files."""
    fmt = _format(source, "INPUT")
    if _format(output, "OUTPUT") is not fmt:
        raise InputError(f"OUTPUT {output} must have the format of INPUT {source} ({fmt.suffix})")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InputError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    if resume and force:
        raise InputError("resume and force exclude each other: resume keeps OUTPUT's rows, force replaces them")
    if not source.is_file():
        raise InputError(f"INPUT {source} is not a file")
    protected = [("the input", source), ("the model directory", model_dir)]
    check_not_overlapping(output, protected, InputError)
    check_not_overlapping(_Parts(output, fmt).dir, protected, InputError)
    if output.is_dir():
        raise InputError(f"OUTPUT {output} is a directory; name a {fmt.suffix} file")
    if output.exists() and not (resume or force):
        raise InputError(f"{output} exists: --resume answers only the rows it lacks, --force replaces it")
    return fmt


def _reuse_parts(parts: _Parts, output: Path, fmt: _Format, resume: bool, force: bool) -> _Parts:
    """An existing ``OUTPUT.partial/``: kept to resume, removed with ``force``, else an error."""
    if not parts.is_ours():
        raise InputError(f"{parts.dir} exists and is not the partial output of onnxqa batch; move it away")
    if resume:
        return parts
    if not force:
        raise InputError(
            f"{parts.dir} holds the rows of an interrupted run: --resume continues it, --force starts over"
        )
    shutil.rmtree(parts.dir)
    return _Parts(output, fmt)


def _job_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    job_options = dict(options or {})
    QAOptions().updated(**job_options)  # unknown names and bad types fail before any work
    for name in ("top_k", "batch_size"):
        if name in job_options:
            raise InputError(f"{name} is not an option of onnxqa batch (it writes the best answer of each row)")
    return job_options


def _write_parts(
    backend: Backend, job: _Job, parts: _Parts, total: int, progress: bool
) -> tuple[int, list[tuple[str, str]]]:
    """Write each part the backend answers; the rows answered and the failed ones."""
    answered, failed = 0, []
    bar = progress_bar(total, backend._activity, unit="row", enabled=progress, initial=min(len(job.done), total))
    try:
        with contextlib.closing(backend._parts(job)) as answered_parts:
            for part in answered_parts:
                tmp, final = parts.new()
                part.write(tmp)
                os.replace(tmp, final)
                answered += part.rows
                failed += part.failed
                bar.update(part.seen)
    finally:
        bar.close()
    return answered, failed
