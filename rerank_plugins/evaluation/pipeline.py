"""The two-stage run: bi-encoder + faiss retrieval, cross-encoder reranking, metrics before and after.

How the reranked list is formed: the reranker scores *every* one of the
``retrieve_k`` retrieved candidates and the reranked list keeps its best
``rerank_k``; the rest are dropped (that list is what a RAG pipeline would pass
on). So reranked metrics are reported for ``k <= rerank_k`` only, while
retrieval metrics go up to ``retrieve_k`` (``hit@retrieve_k`` is the ceiling
any reranker of those candidates can reach).

Example:
    >>> from rerank_plugins import Reranker
    >>> from rerank_plugins.evaluation import BiEncoder, evaluate, load_dataset
    >>> report = evaluate(load_dataset("examples/data/squad_sample.json").sample(50, seed=0),
    ...                   Reranker("path/to/ms-marco-MiniLM-L-12-v2"), BiEncoder(),
    ...                   retrieve_k=30, rerank_k=10)  # doctest: +SKIP
    >>> print(report.format_table())  # doctest: +SKIP
    >>> report.to_dict().keys()  # doctest: +SKIP
    dict_keys(['retrieval', 'reranked', 'timing', 'config'])
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank_plugins.evaluation.metrics import METRICS, hit_curve, mean_metrics

if TYPE_CHECKING:
    from rerank_plugins.core import Reranker
    from rerank_plugins.evaluation.data import Dataset
    from rerank_plugins.evaluation.retrieval import BiEncoder, DenseIndex

__all__ = ["DEFAULT_KS", "REPORT_KEYS", "EvalReport", "QueryOutcome", "evaluate"]

logger = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10)
REPORT_KEYS: tuple[str, ...] = ("retrieval", "reranked", "timing", "config")
RERANKED_LIST = (
    "the reranker scores all retrieve_k retrieved candidates and the reranked list keeps its top "
    "rerank_k (the rest are dropped), so reranked metrics are given for k <= rerank_k"
)


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """What happened to one query.

    Attributes:
        id: the query id.
        query: the query text.
        positives: the relevant document ids.
        retrieved: the first-stage ranking (``retrieve_k`` ids, best first).
        retrieval_scores: cosine similarities, parallel to ``retrieved``.
        reranked: the reranked list (``rerank_k`` ids, best first).
        rerank_scores: reranker scores, parallel to ``reranked``.
    """

    id: str
    query: str
    positives: frozenset[str]
    retrieved: tuple[str, ...]
    retrieval_scores: tuple[float, ...]
    reranked: tuple[str, ...]
    rerank_scores: tuple[float, ...]


@dataclass(frozen=True)
class EvalReport:
    """Metrics before and after reranking, timings and the run's settings.

    Attributes:
        retrieval: first-stage metrics, e.g. ``{"hit@1": 0.61, ..., "mrr@10": 0.72, ...}``.
        reranked: the same metrics over the reranked list (``k <= rerank_k``).
        timing: wall seconds per stage and milliseconds per query.
        config: the settings and sizes of the run.
        outcomes: one :class:`QueryOutcome` per query (not part of :meth:`to_dict`).
    """

    retrieval: dict[str, float]
    reranked: dict[str, float]
    timing: dict[str, float]
    config: dict[str, Any]
    outcomes: tuple[QueryOutcome, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: exactly ``retrieval``, ``reranked``, ``timing`` and ``config`` (a copy)."""
        return {key: copy.deepcopy(getattr(self, key)) for key in REPORT_KEYS}

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text (UTF-8 characters kept as they are)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (atomically: a temporary file, then a rename) and return it.

        Raises:
            OSError: the file cannot be written (the message names ``path``); an existing
                file at ``path`` is left unchanged.
        """
        from rerank_plugins._io import atomic_write

        data = (self.to_json() + "\n").encode("utf-8")
        return atomic_write(path, lambda fh: fh.write(data))

    def hit_curves(self) -> dict[str, list[float]]:
        """Mean hit@k for k = 1 .. retrieve_k (``"retrieval"``) and 1 .. rerank_k (``"reranked"``)."""
        positives = [o.positives for o in self.outcomes]
        return {
            "retrieval": hit_curve([o.retrieved for o in self.outcomes], positives,
                                   self.config["retrieve_k"]),
            "reranked": hit_curve([o.reranked for o in self.outcomes], positives, self.config["rerank_k"]),
        }

    def format_table(self) -> str:
        """A before/after table: one row per metric, retrieval and reranked columns, time rows."""
        cfg, t = self.config, self.timing
        rows: list[tuple[str, str, str]] = [("metric", "retrieval", "reranked")]
        for name in METRICS:
            keys = sorted((k for k in self.retrieval if k.startswith(f"{name}@")),
                          key=lambda s: int(s.split("@")[1]))
            for key in keys:
                after = self.reranked.get(key)
                rows.append((key, f"{self.retrieval[key]:.4f}", "-" if after is None else f"{after:.4f}"))
        rows.append(("stage time (s)", f"{t['retrieval_s']:.2f}", f"{t['rerank_s']:.2f}"))
        rows.append(("ms / query", f"{t['retrieval_ms_per_query']:.1f}", f"{t['rerank_ms_per_query']:.1f}"))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        w2 = max(len(r[2]) for r in rows)
        lines = [
            f"{cfg['queries']} queries over {cfg['documents']} documents: retrieve top {cfg['retrieve_k']} "
            f"with {cfg['bi_encoder']['model']}, rerank them with {cfg['reranker']['model']}, keep top "
            f"{cfg['rerank_k']}",
        ]
        for i, (a, b, c) in enumerate(rows):
            lines.append(f"{a:<{w0}}  {b:>{w1}}  {c:>{w2}}")
            if i == 0:
                lines.append(f"{'-' * w0}  {'-' * w1}  {'-' * w2}")
        reused = " (reused saved embeddings)" if cfg["corpus_embeddings"]["reused"] else ""
        lines.append(
            f"corpus embedding: {t['embed_corpus_s']:.2f} s{reused}; reranker: "
            f"{cfg['rerank_pairs']} pairs at {t['rerank_pairs_per_s']:.1f} pairs/s"
        )
        return "\n".join(lines)


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _reranker_config(reranker: Any) -> dict[str, Any]:
    return {
        "model": getattr(reranker, "model_id", repr(reranker)),
        "kind": getattr(reranker, "kind", None),
        "normalize": getattr(reranker, "normalize", None),
        "batch_size": getattr(reranker, "batch_size", None),
        "max_length": getattr(reranker, "max_length", None),
        "device": str(getattr(reranker, "device", "")) or None,
        "dtype": str(getattr(reranker, "dtype", "")).removeprefix("torch.") or None,
    }


def evaluate(
    dataset: Dataset,
    reranker: Reranker,
    bi_encoder: BiEncoder,
    *,
    retrieve_k: int = 30,
    rerank_k: int = 10,
    ks: Iterable[int] = DEFAULT_KS,
    embeddings_cache: str | Path | None = None,
    index: DenseIndex | None = None,
    show_progress: bool | None = None,
) -> EvalReport:
    """Run retrieval then reranking over every query of ``dataset`` and measure both.

    Args:
        dataset: corpus and queries (see :func:`~rerank_plugins.evaluation.load_dataset`;
            use ``dataset.sample(n, seed)`` for a subset).
        reranker: any :class:`~rerank_plugins.Reranker` (its ``rerank_many`` is called once).
        bi_encoder: the first-stage :class:`~rerank_plugins.evaluation.BiEncoder`.
        retrieve_k: candidates retrieved per query (capped at the corpus size).
        rerank_k: candidates kept after reranking (``<= retrieve_k``).
        ks: metric cut-offs; ``rerank_k`` and ``retrieve_k`` are always added.
            Retrieval metrics cover ``k <= retrieve_k``, reranked ones ``k <= rerank_k``.
        embeddings_cache: a ``.npz`` file for the corpus embeddings, reused when it matches.
        index: an already built index over ``dataset``'s corpus (skips embedding it).
        show_progress: tqdm bars while embedding and reranking (``None``: on a terminal).

    Returns:
        An :class:`EvalReport`. Timing keys: ``embed_corpus_s``, ``embed_queries_s``,
        ``search_s``, ``retrieval_s`` (queries embedded + searched), ``rerank_s``,
        ``total_s`` (all three stages), ``retrieval_ms_per_query``,
        ``rerank_ms_per_query``, ``total_ms_per_query`` (retrieval + reranking,
        corpus embedding excluded) and ``rerank_pairs_per_s``.

    Raises:
        ValueError: ``retrieve_k``, ``rerank_k`` or a ``k`` is not a positive
            int, or ``rerank_k > retrieve_k``.
    """
    from rerank_plugins.evaluation.retrieval import DenseIndex

    retrieve_k = _check_positive("retrieve_k", retrieve_k)
    rerank_k = _check_positive("rerank_k", rerank_k)
    ks = {_check_positive("k", k) for k in ks}
    if rerank_k > retrieve_k:
        raise ValueError(f"rerank_k ({rerank_k}) must not exceed retrieve_k ({retrieve_k})")
    n_docs = len(dataset.doc_ids)
    if retrieve_k > n_docs:
        logger.warning("retrieve_k=%d exceeds the corpus (%d documents); retrieving all", retrieve_k, n_docs)
        retrieve_k = n_docs
        rerank_k = min(rerank_k, n_docs)
    ks |= {rerank_k, retrieve_k}
    queries = dataset.queries

    # Stage 0: the corpus index.
    if index is None:
        index = DenseIndex.from_corpus(
            bi_encoder, dataset.doc_ids, dataset.doc_texts, cache=embeddings_cache, show_progress=show_progress
        )
    elif index.doc_ids != dataset.doc_ids:
        raise ValueError("the given index was not built over this dataset's corpus")
    embed_corpus_s = index.embed_seconds
    logger.info("corpus index: %d documents in %.2f s", len(index), embed_corpus_s)

    # Stage 1: retrieval.
    start = time.perf_counter()
    q_emb = bi_encoder.encode([q.text for q in queries], show_progress=show_progress, desc="queries")
    embed_queries_s = time.perf_counter() - start
    start = time.perf_counter()
    hits = index.search(q_emb, retrieve_k)
    search_s = time.perf_counter() - start
    retrieval_s = embed_queries_s + search_s
    logger.info("retrieval: %d queries in %.2f s", len(queries), retrieval_s)

    # Stage 2: reranking, every query's candidates in one flattened pass.
    text_of = dict(zip(dataset.doc_ids, dataset.doc_texts, strict=True))
    candidates = [[doc_id for doc_id, _ in row] for row in hits]
    start = time.perf_counter()
    ranked = reranker.rerank_many(
        [q.text for q in queries], [[text_of[d] for d in row] for row in candidates],
        top_n=rerank_k, show_progress=show_progress,
    )
    rerank_s = time.perf_counter() - start
    n_pairs = sum(len(row) for row in candidates)
    logger.info("reranking: %d pairs in %.2f s", n_pairs, rerank_s)

    outcomes = tuple(
        QueryOutcome(
            id=q.id,
            query=q.text,
            positives=q.positives,
            retrieved=tuple(row),
            retrieval_scores=tuple(s for _, s in hit),
            reranked=tuple(row[r.index] for r in results),
            rerank_scores=tuple(r.score for r in results),
        )
        for q, row, hit, results in zip(queries, candidates, hits, ranked, strict=True)
    )
    positives = [o.positives for o in outcomes]
    retrieval = mean_metrics([o.retrieved for o in outcomes], positives, [k for k in ks if k <= retrieve_k])
    reranked = mean_metrics([o.reranked for o in outcomes], positives, [k for k in ks if k <= rerank_k])

    n_q = len(queries)
    per_query = 1000.0 / n_q if n_q else 0.0
    timing = {
        "embed_corpus_s": embed_corpus_s,
        "embed_queries_s": embed_queries_s,
        "search_s": search_s,
        "retrieval_s": retrieval_s,
        "rerank_s": rerank_s,
        "total_s": embed_corpus_s + retrieval_s + rerank_s,
        "retrieval_ms_per_query": retrieval_s * per_query,
        "rerank_ms_per_query": rerank_s * per_query,
        "total_ms_per_query": (retrieval_s + rerank_s) * per_query,
        "rerank_pairs_per_s": n_pairs / rerank_s if rerank_s > 0 else 0.0,
    }
    config = {
        "data": dict(dataset.source),
        "documents": n_docs,
        "queries": n_q,
        "retrieve_k": retrieve_k,
        "rerank_k": rerank_k,
        "ks": sorted(ks),
        "rerank_pairs": n_pairs,
        "reranked_list": RERANKED_LIST,
        "bi_encoder": {
            "model": bi_encoder.name,
            "path": bi_encoder.model_id,
            "device": str(bi_encoder.device),
            "batch_size": bi_encoder.batch_size,
            "max_seq_length": bi_encoder.max_seq_length,
        },
        "reranker": _reranker_config(reranker),
        "index": "faiss.IndexFlatIP over L2-normalised embeddings (cosine)",
        "corpus_embeddings": {
            "path": None if embeddings_cache is None else str(embeddings_cache),
            "reused": index.reused,
        },
    }
    return EvalReport(retrieval, reranked, timing, config, outcomes)
