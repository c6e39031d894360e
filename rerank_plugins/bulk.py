"""Bulk reranking of files: rows ``{"id"?, "query", "documents": [...]}`` in, the same rows with scores out.

Each output row keeps every input field and adds ``scores`` (one per document,
in input order) and ``ranking`` (document indices, best first; the best
``top_n`` when it is given). Both JSONL and Parquet are read and written; the
format follows each file's suffix (``.jsonl``/``.ndjson``, ``.parquet``/``.pq``).

:func:`rerank_file` runs in this process and streams: it reads, scores and
writes ``chunk_rows`` rows at a time, so memory is bounded by the chunk, not
the input. :func:`rerank_file_ray` runs the same scoring on Ray actors (see
:mod:`rerank_plugins.distributed`). Either way every row is checked as it is
read (a malformed row is a :class:`~rerank_plugins.evaluation.data.DataFormatError`
naming its line, or its row number in a Parquet file), and the output is
written to a temporary file next to ``output`` and renamed only when the run
has finished: a failed or interrupted run never leaves a half-written file.

Example:
    >>> from rerank_plugins import Reranker
    >>> from rerank_plugins.bulk import rerank_file
    >>> summary = rerank_file("in.jsonl", "out.jsonl", Reranker("./ms-marco-MiniLM-L-12-v2"))  # doctest: +SKIP
    >>> summary.rows, summary.pairs  # doctest: +SKIP
    (2000, 60000)
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank_plugins._validation import check_top_n
from rerank_plugins.errors import missing_extra
from rerank_plugins.evaluation.data import DataFormatError

if TYPE_CHECKING:
    import pyarrow as pa

    from rerank_plugins.core import Reranker

__all__ = [
    "FILE_FORMATS",
    "BulkSummary",
    "check_fields",
    "check_row",
    "detect_file_format",
    "rerank_file",
    "rerank_file_ray",
    "score_rows",
]

logger = logging.getLogger(__name__)

FILE_FORMATS: tuple[str, ...] = ("jsonl", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
QUERY, DOCUMENTS, SCORES, RANKING = "query", "documents", "scores", "ranking"
# Ray path, JSONL input: each row travels as its original JSON text next to the parsed query and documents.
_ROW_JSON = "__rerank_plugins_row"


@dataclass(frozen=True, slots=True)
class BulkSummary:
    """What a bulk run did.

    Attributes:
        rows: rows written.
        pairs: (query, document) pairs scored.
        seconds: wall time of reading, scoring and writing (model loading excluded
            in-process; included on Ray, where each actor loads its own copy).
        output: the file written.
    """

    rows: int
    pairs: int
    seconds: float
    output: Path

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else float("nan")


def detect_file_format(path: str | Path) -> str:
    """``"jsonl"`` or ``"parquet"`` from the file's suffix.

    Raises:
        ValueError: any other suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"{str(path)!r}: cannot tell the format from the suffix {suffix!r}; "
            f"use one of {', '.join(sorted(_SUFFIXES))}"
        )
    return _SUFFIXES[suffix]


def check_row(row: Any, where: str) -> tuple[str, list[str]]:
    """Return ``(query, documents)`` of one input row, or raise naming ``where`` and the field.

    Raises:
        DataFormatError: not an object; ``query`` missing or not a string; ``documents``
            missing, not a list, or holding a non-string; a ``scores`` or ``ranking``
            field already present (the output would overwrite it).
    """
    if not isinstance(row, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {_json_type(row)}")
    for key in (QUERY, DOCUMENTS):
        if key not in row:
            raise DataFormatError(f"{where}: missing key {key!r}")
    for key in (SCORES, RANKING):
        if key in row:
            raise DataFormatError(f"{where}: the row already has a {key!r} field, which the output would overwrite")
    return check_fields(row[QUERY], row[DOCUMENTS], where)


def check_fields(
    query: Any, documents: Any, where: str, *, query_key: str = QUERY, documents_key: str = DOCUMENTS
) -> tuple[str, list[str]]:
    """Check one row's query (a string) and documents (a list of strings); ``where`` starts the message.

    Raises:
        DataFormatError: naming ``where``, the field and the document's position.
    """
    if not isinstance(query, str):
        raise DataFormatError(f"{where}: {query_key!r} must be a string, got {_json_type(query)}")
    if not isinstance(documents, list):
        raise DataFormatError(f"{where}: {documents_key!r} must be a list of strings, got {_json_type(documents)}")
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise DataFormatError(f"{where}: {documents_key}[{i}] must be a string, got {_json_type(doc)}")
    return query, documents


def score_rows(
    reranker: Reranker,
    queries: Sequence[str],
    documents_per_query: Sequence[Sequence[str]],
    *,
    top_n: int | None = None,
) -> tuple[list[list[float]], list[list[int]]]:
    """Scores in input order and rankings (indices, best first) for many rows in one pass.

    The one place the bulk command, :func:`rerank_plugins.distributed.rerank_dataset`
    and their actors turn a reranker's results into ``scores`` and ``ranking``: one
    :meth:`Reranker.rerank_many` call over full batches, so the ranking follows the
    core's order (ties keep input order, NaN last).

    Args:
        reranker: the reranker.
        queries: one query per row.
        documents_per_query: one candidate list per row.
        top_n: keep the ``top_n`` best indices in each ranking (``None``: all);
            the scores always cover every document.

    Example:
        >>> score_rows(reranker, ["q"], [["a", "b"]])  # doctest: +SKIP
        ([[0.1, 0.8]], [[1, 0]])
    """
    top_n = check_top_n(top_n)
    ranked = reranker.rerank_many(queries, documents_per_query, show_progress=False)
    scores: list[list[float]] = []
    rankings: list[list[int]] = []
    for docs, results in zip(documents_per_query, ranked, strict=True):
        row_scores = [0.0] * len(docs)
        for r in results:
            row_scores[r.index] = r.score
        scores.append(row_scores)
        rankings.append([r.index for r in results[:top_n]])
    return scores, rankings


# --------------------------------------------------------------------------- reading


@dataclass(slots=True)
class _Chunk:
    """Validated rows: ``rows`` (JSONL, parsed) or ``table`` (Parquet), plus the raw lines on the Ray path."""

    queries: list[str]
    documents: list[list[str]]
    rows: list[dict[str, Any]] | None = None
    table: pa.Table | None = None
    raw: list[str] | None = None


def _count_rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        return _parquet().ParquetFile(path).metadata.num_rows
    count = 0
    with path.open("rb") as fh:
        for line in fh:
            count += bool(line.strip())
    return count


def _iter_chunks(path: Path, fmt: str, chunk_rows: int, *, keep_raw: bool = False) -> Iterator[_Chunk]:
    if fmt == "parquet":
        yield from _iter_parquet(path, chunk_rows)
    else:
        yield from _iter_jsonl(path, chunk_rows, keep_raw)


def _iter_jsonl(path: Path, chunk_rows: int, keep_raw: bool) -> Iterator[_Chunk]:
    chunk = _Chunk([], [], rows=[], raw=[] if keep_raw else None)
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            query, documents = check_row(row, where)
            chunk.queries.append(query)
            chunk.documents.append(documents)
            chunk.rows.append(row)
            if chunk.raw is not None:
                chunk.raw.append(line.rstrip("\r\n"))
            if len(chunk.queries) >= chunk_rows:
                yield chunk
                chunk = _Chunk([], [], rows=[], raw=[] if keep_raw else None)
    if chunk.queries:
        yield chunk


def _iter_parquet(path: Path, chunk_rows: int) -> Iterator[_Chunk]:
    pa = _pyarrow()
    parquet_file = _parquet().ParquetFile(path)
    names = parquet_file.schema_arrow.names
    for key in (QUERY, DOCUMENTS):
        if key not in names:
            raise DataFormatError(f"{path}: missing column {key!r} (columns: {', '.join(names)})")
    for key in (SCORES, RANKING):
        if key in names:
            raise DataFormatError(f"{path}: the file already has a {key!r} column, which the output would overwrite")
    start = 0
    for batch in parquet_file.iter_batches(batch_size=chunk_rows):
        queries = batch.column(QUERY).to_pylist()
        documents = batch.column(DOCUMENTS).to_pylist()
        for i, (query, docs) in enumerate(zip(queries, documents, strict=True)):
            check_row({QUERY: query, DOCUMENTS: docs}, f"{path}, row {start + i}")
        start += batch.num_rows
        yield _Chunk(queries, documents, table=pa.Table.from_batches([batch]))


# --------------------------------------------------------------------------- writing


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"a value of type {type(value).__name__} cannot be written as JSON; write Parquet instead")


class _Sink:
    """Writes chunks to ``output``'s temporary twin; :meth:`commit` renames it into place."""

    def __init__(self, output: Path, fmt: str) -> None:
        self.output = output
        self.fmt = fmt
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp's 0600 would otherwise end up on the output
        self._fh: Any = None
        self._writer: Any = None
        self._schema: Any = None
        self._input_schema: Any = None
        self.rows = 0

    def write(self, chunk: _Chunk, scores: list[list[float]], rankings: list[list[int]]) -> None:
        if self.fmt == "jsonl":
            self._write_jsonl(chunk, scores, rankings)
        else:
            self._write_parquet(chunk, scores, rankings)
        self.rows += len(scores)

    def _rows(self, chunk: _Chunk) -> list[dict[str, Any]]:
        if chunk.rows is not None:
            return chunk.rows
        return chunk.table.to_pylist()

    def _write_jsonl(self, chunk: _Chunk, scores: list[list[float]], rankings: list[list[int]]) -> None:
        if self._fh is None:
            self._fh = self.tmp.open("w", encoding="utf-8")
        lines = []
        for row, row_scores, ranking in zip(self._rows(chunk), scores, rankings, strict=True):
            out = dict(row)
            out[SCORES] = row_scores
            out[RANKING] = ranking
            lines.append(json.dumps(out, ensure_ascii=False, default=_json_default))
        self._fh.write("\n".join(lines) + "\n")
        self._fh.flush()

    def _write_parquet(self, chunk: _Chunk, scores: list[list[float]], rankings: list[list[int]]) -> None:
        pa = _pyarrow()
        if chunk.table is not None:
            table = chunk.table
        else:
            rows = chunk.rows
            # Every field any row has (Table.from_pylist would keep only the first row's keys).
            keys = list(dict.fromkeys(key for row in rows for key in row))
            if self._input_schema is not None:
                extra = [key for key in keys if key not in set(self._input_schema.names)]
                if extra:
                    raise DataFormatError(
                        f"field {extra[0]!r} first appears after the first chunk of rows; a Parquet output "
                        "has one schema, so write JSONL instead (or give every row the same fields)"
                    )
                keys = self._input_schema.names
            try:
                table = pa.Table.from_pydict(
                    {key: [row.get(key) for row in rows] for key in keys}, schema=self._input_schema
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise DataFormatError(
                    f"rows {self.rows + 1} to {self.rows + len(rows)} do not fit one Parquet schema ({exc}); "
                    "write JSONL instead, or give each field one type in every row"
                ) from None
        if self._input_schema is None:
            self._input_schema = table.schema
        table = table.append_column(SCORES, pa.array(scores, type=pa.list_(pa.float64())))
        table = table.append_column(RANKING, pa.array(rankings, type=pa.list_(pa.int64())))
        if self._writer is None:
            self._schema = table.schema
            self._writer = _parquet().ParquetWriter(self.tmp, table.schema)
        elif table.schema != self._schema:
            table = table.cast(self._schema)
        self._writer.write_table(table)

    def commit(self) -> None:
        if self.fmt == "parquet" and self._writer is None:  # an empty input still gives a readable file
            pa = _pyarrow()
            schema = pa.schema([(QUERY, pa.string()), (DOCUMENTS, pa.list_(pa.string())),
                                (SCORES, pa.list_(pa.float64())), (RANKING, pa.list_(pa.int64()))])
            _parquet().write_table(schema.empty_table(), self.tmp)
        self.close()
        os.replace(self.tmp, self.output)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _atomic_sink(output: Path, fmt: str) -> Iterator[_Sink]:
    sink = _Sink(output, fmt)
    try:
        yield sink
    except BaseException:
        sink.discard()
        raise
    sink.commit()


def _check_paths(input: str | Path, output: str | Path) -> tuple[Path, str, Path, str]:
    in_path = Path(input).expanduser()
    out_path = Path(output).expanduser()
    in_fmt = detect_file_format(in_path)
    out_fmt = detect_file_format(out_path)
    if not in_path.is_file():
        raise FileNotFoundError(f"input file {str(in_path)!r} does not exist")
    if out_path.is_dir():
        raise ValueError(f"output {str(out_path)!r} is a directory; expected a file path")
    if not out_path.parent.is_dir():
        raise FileNotFoundError(f"output directory {str(out_path.parent)!r} does not exist")
    if out_path.exists() and out_path.resolve() == in_path.resolve():
        raise ValueError(f"output {str(out_path)!r} is the input file; write to another path")
    if in_fmt == "parquet" or out_fmt == "parquet":
        _pyarrow()
    return in_path, in_fmt, out_path, out_fmt


# --------------------------------------------------------------------------- running


def rerank_file(
    input: str | Path,
    output: str | Path,
    reranker: Reranker,
    *,
    top_n: int | None = None,
    chunk_rows: int = 256,
    show_progress: bool | None = None,
) -> BulkSummary:
    """Score every row of ``input`` in this process and write ``output`` (atomically).

    Args:
        input: a ``.jsonl`` or ``.parquet`` file of rows ``{"id"?, "query", "documents": [...]}``.
        output: the file to write (``.jsonl`` or ``.parquet``); replaced only on success.
        reranker: the reranker.
        top_n: keep the ``top_n`` best indices in each ``ranking`` (``None``: all).
        chunk_rows: rows read, scored and written at a time (bounds memory).
        show_progress: a tqdm bar over rows on stderr (``None``: on a terminal only).

    Raises:
        DataFormatError: a malformed row (the message names its line or row).
        ValueError: an unknown suffix, or ``output`` is ``input``.

    Example:
        >>> rerank_file("in.jsonl", "out.parquet", Reranker("./model"), top_n=10)  # doctest: +SKIP
    """
    top_n = check_top_n(top_n)
    chunk_rows = _check_chunk_rows(chunk_rows)
    in_path, in_fmt, out_path, out_fmt = _check_paths(input, output)
    from tqdm.auto import tqdm

    start = time.perf_counter()
    pairs = 0
    total = _count_rows(in_path, in_fmt)
    disable = None if show_progress is None else not show_progress
    with _atomic_sink(out_path, out_fmt) as sink, tqdm(
        total=total, desc="Reranking", unit="row", disable=disable
    ) as bar:
        for chunk in _iter_chunks(in_path, in_fmt, chunk_rows):
            scores, rankings = score_rows(reranker, chunk.queries, chunk.documents, top_n=top_n)
            sink.write(chunk, scores, rankings)
            pairs += sum(map(len, chunk.documents))
            bar.update(len(chunk.queries))
    seconds = time.perf_counter() - start
    logger.info("reranked %d rows (%d pairs) in %.1f s into %s", sink.rows, pairs, seconds, out_path)
    return BulkSummary(rows=sink.rows, pairs=pairs, seconds=seconds, output=out_path)


def rerank_file_ray(
    input: str | Path,
    output: str | Path,
    model: str | Path,
    *,
    address: str | None = "auto",
    concurrency: int = 1,
    top_n: int | None = None,
    chunk_rows: int = 256,
    batch_size: int = 16,
    num_cpus: float = 1,
    num_gpus: float = 0,
    show_progress: bool | None = None,
    **reranker_options: Any,
) -> BulkSummary:
    """:func:`rerank_file` on Ray actors through :func:`rerank_plugins.distributed.rerank_dataset`.

    The driver reads and checks ``input`` chunk by chunk and hands each chunk to
    Ray's object store (so the input need not be visible to the cluster's other
    nodes); the scored rows stream back in input order and are written here,
    atomically as in-process.

    Args:
        input, output, top_n, chunk_rows, show_progress: as in :func:`rerank_file`.
        model: the reranker's model directory (visible at that path on every node) or hub name.
        address: ``"auto"`` (Ray's default: the cluster this machine belongs to,
            ``RAY_ADDRESS``, or else a new local one) or a cluster address
            (``"ray://head:10001"``, ``"head:6379"``). An already initialised Ray is
            used as it is; a Ray started here is shut down at the end.
        concurrency: reranker actors (each loads the model once).
        batch_size: rows per actor call.
        num_cpus, num_gpus: resources per actor.
        **reranker_options: passed to each actor's :class:`Reranker` (``kind``,
            ``normalize``, ``dtype``, ``max_length``, ``reranker_batch_size`` ...).

    Example:
        >>> rerank_file_ray("in.parquet", "out.parquet", "./model", concurrency=4)  # doctest: +SKIP
    """
    top_n = check_top_n(top_n)
    chunk_rows = _check_chunk_rows(chunk_rows)
    in_path, in_fmt, out_path, out_fmt = _check_paths(input, output)
    from tqdm.auto import tqdm

    from rerank_plugins.distributed import rerank_dataset

    try:
        import ray
    except ImportError as exc:
        raise missing_extra("ray", "ray", exc) from None
    pa = _pyarrow()

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=None if address in (None, "auto") else address, log_to_driver=False)
    start = time.perf_counter()
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    try:
        refs, pairs = [], 0
        total = _count_rows(in_path, in_fmt)
        for chunk in _iter_chunks(in_path, in_fmt, chunk_rows, keep_raw=True):
            if chunk.table is not None:
                table = chunk.table
            else:
                table = pa.table({
                    _ROW_JSON: pa.array(chunk.raw, type=pa.string()),
                    QUERY: pa.array(chunk.queries, type=pa.string()),
                    DOCUMENTS: pa.array(chunk.documents, type=pa.list_(pa.string())),
                })
            refs.append(ray.put(table))
            pairs += sum(map(len, chunk.documents))
        # Output in input order, and one progress bar (ours) rather than one per operator.
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        disable = None if show_progress is None else not show_progress
        with _atomic_sink(out_path, out_fmt) as sink, tqdm(
            total=total, desc="Reranking", unit="row", disable=disable
        ) as bar:
            if refs:
                dataset = rerank_dataset(
                    ray.data.from_arrow_refs(refs), model, top_n=top_n, concurrency=concurrency,
                    batch_size=batch_size, num_cpus=num_cpus, num_gpus=num_gpus, **reranker_options,
                )
                for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                    scores = batch.column(SCORES).to_pylist()
                    rankings = batch.column(RANKING).to_pylist()
                    if _ROW_JSON in batch.column_names:
                        chunk = _Chunk([], [], rows=[json.loads(r) for r in batch.column(_ROW_JSON).to_pylist()])
                    else:
                        chunk = _Chunk([], [], table=batch.drop_columns([SCORES, RANKING]))
                    sink.write(chunk, scores, rankings)
                    bar.update(len(scores))
            if sink.rows != total:
                raise RuntimeError(f"Ray returned {sink.rows} rows for {total} input rows")
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if started_here:
            ray.shutdown()
    seconds = time.perf_counter() - start
    logger.info("reranked %d rows (%d pairs) on Ray in %.1f s into %s", sink.rows, pairs, seconds, out_path)
    return BulkSummary(rows=sink.rows, pairs=pairs, seconds=seconds, output=out_path)


def _check_chunk_rows(chunk_rows: Any) -> int:
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
    return chunk_rows


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise missing_extra("pyarrow", "ray", exc) from None
    return pyarrow


def _parquet() -> Any:
    _pyarrow()
    import pyarrow.parquet

    return pyarrow.parquet
