"""Bulk reranking on Ray Data: one model load per actor, scores from the core's one loop."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank_plugins._validation import check_top_n
from rerank_plugins.bulk import check_fields, score_rows
from rerank_plugins.errors import missing_extra

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

__all__ = ["RerankBatches", "rerank_dataset"]

logger = logging.getLogger(__name__)

# Reranker arguments that rerank_dataset sets itself or names differently.
_RESERVED_OPTIONS = ("model", "batch_size")


class RerankBatches:
    """The ``map_batches`` callable class: loads the reranker once per actor, then scores Arrow batches.

    Each batch gets two new columns: ``scores_column`` (one score per document,
    in input order) and ``ranking_column`` (document indices, best first, cut to
    ``top_n``); every other column passes through untouched. Most users call
    :func:`rerank_dataset`, which builds this class inside ``map_batches``.

    Args:
        model: the reranker's model directory or hub name, loaded on the actor.
        reranker_options: keyword arguments of :class:`rerank_plugins.Reranker`.
        query_column, documents_column, scores_column, ranking_column: column names.
        top_n: how many indices each ranking keeps (``None``: all).

    Example:
        >>> ds.map_batches(RerankBatches, fn_constructor_kwargs={"model": "./model"},
        ...                batch_format="pyarrow", concurrency=2)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str,
        reranker_options: dict[str, Any] | None = None,
        *,
        query_column: str = "query",
        documents_column: str = "documents",
        scores_column: str = "scores",
        ranking_column: str = "ranking",
        top_n: int | None = None,
    ) -> None:
        from rerank_plugins.core import Reranker

        self.reranker = Reranker(model, **(reranker_options or {}))
        self.query_column = query_column
        self.documents_column = documents_column
        self.scores_column = scores_column
        self.ranking_column = ranking_column
        self.top_n = check_top_n(top_n)
        logger.info("loaded %r on a Ray actor", self.reranker)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        names = batch.column_names
        for name in (self.query_column, self.documents_column):
            if name not in names:
                raise KeyError(f"the dataset has no column {name!r} (columns: {', '.join(names)})")
        for name in (self.scores_column, self.ranking_column):
            if name in names:
                raise ValueError(f"the dataset already has a column {name!r}, which the output would overwrite")
        queries = batch.column(self.query_column).to_pylist()
        documents = batch.column(self.documents_column).to_pylist()
        ids = batch.column("id").to_pylist() if "id" in names else None
        for i, (query, docs) in enumerate(zip(queries, documents, strict=True)):
            where = f"row id={ids[i]!r}" if ids is not None else f"row {i} of a batch"
            check_fields(query, docs, where, query_key=self.query_column, documents_key=self.documents_column)
        scores, rankings = score_rows(self.reranker, queries, documents, top_n=self.top_n)
        batch = batch.append_column(self.scores_column, pa.array(scores, type=pa.list_(pa.float64())))
        return batch.append_column(self.ranking_column, pa.array(rankings, type=pa.list_(pa.int64())))


def rerank_dataset(
    ds: ray.data.Dataset,
    model: str | Path,
    *,
    query_column: str = "query",
    documents_column: str = "documents",
    scores_column: str = "scores",
    ranking_column: str = "ranking",
    top_n: int | None = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = 16,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_restarts: int = 3,
    reranker_batch_size: int | None = None,
    **reranker_options: Any,
) -> ray.data.Dataset:
    """Score every row's documents against its query on a pool of Ray actors.

    ``map_batches`` with the callable class :class:`RerankBatches`: each actor
    loads the model once and reuses it for every batch it is given; scoring goes
    through :meth:`Reranker.rerank_many`, so the scores equal the in-process
    ``Reranker``'s. Rows keep all their columns and gain ``scores_column`` (in
    document order) and ``ranking_column`` (indices, best first). The dataset is
    lazy, like any Ray Data transform; row order follows Ray Data's
    ``DataContext.execution_options.preserve_order``.

    A dead actor (node lost, ``ray.kill``) is restarted up to ``max_restarts``
    times and its unfinished batches are retried on the pool, so each input row
    comes out exactly once.

    Args:
        ds: rows with a string ``query_column`` and a list-of-strings ``documents_column``.
        model: a model directory (at that path on every node) or a hub name.
        query_column, documents_column: input columns.
        scores_column, ranking_column: output columns (must not exist yet).
        top_n: keep the ``top_n`` best indices in each ranking (``None``: all).
        concurrency: actors: a fixed number, or ``(min, max)`` for an autoscaling pool.
        batch_size: rows per actor call.
        num_cpus, num_gpus: resources reserved per actor (``num_gpus=1`` puts each
            actor on its own GPU; ``device`` then defaults to cuda).
        max_restarts: restarts per actor, and retries per batch, after a failure.
        reranker_batch_size: at most this many (query, document) pairs per forward pass
            (``None``: batches bounded by the Reranker's ``max_batch_tokens`` only).
        **reranker_options: further :class:`rerank_plugins.Reranker` arguments
            (``kind``, ``normalize``, ``max_length``, ``device``, ``dtype``, ...).

    Returns:
        The lazy ``ray.data.Dataset`` with the two new columns.

    Example:
        >>> import ray
        >>> from rerank_plugins.distributed import rerank_dataset
        >>> ds = ray.data.read_parquet("s3://bucket/candidates/")  # doctest: +SKIP
        >>> out = rerank_dataset(ds, "BAAI/bge-reranker-v2-m3", concurrency=8, num_gpus=1,
        ...                      dtype="float16", top_n=10)  # doctest: +SKIP
        >>> out.write_parquet("s3://bucket/reranked/")  # doctest: +SKIP
    """
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise missing_extra("ray", "ray", exc) from None
    from rerank_plugins.core import reranker_option_names

    top_n = check_top_n(top_n)
    if isinstance(model, Path):
        model = str(model)
    if not isinstance(model, str):
        raise TypeError(f"model must be a str or pathlib.Path (loaded on each actor), got {type(model).__name__}")
    accepted = set(reranker_option_names()) - set(_RESERVED_OPTIONS)
    unknown = sorted(set(reranker_options) - accepted)
    if unknown:
        raise TypeError(
            f"unknown Reranker option(s): {', '.join(unknown)}; accepted: {', '.join(sorted(accepted))} "
            "(pairs per forward pass: reranker_batch_size)"
        )
    for name, value in (("batch_size", batch_size), ("reranker_batch_size", reranker_batch_size)):
        if value is None and name == "reranker_batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
    for name in (scores_column, ranking_column):
        if name in (query_column, documents_column):
            raise ValueError(f"output column {name!r} would overwrite an input column")

    with warnings.catch_warnings():
        # Ray Data warns that remote args given as keywords are deprecated, yet offers no other way to
        # bound actor restarts and task retries (its own default is unlimited).
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ds.map_batches(
            RerankBatches,
            fn_constructor_kwargs={
                "model": model,
                "reranker_options": {**reranker_options, "batch_size": reranker_batch_size},
                "query_column": query_column,
                "documents_column": documents_column,
                "scores_column": scores_column,
                "ranking_column": ranking_column,
                "top_n": top_n,
            },
            batch_format="pyarrow",
            batch_size=batch_size,
            concurrency=concurrency,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_restarts=max_restarts,
            max_task_retries=max_restarts,
        )
