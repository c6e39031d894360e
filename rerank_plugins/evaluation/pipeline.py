"""The two-stage run: bi-encoder + faiss retrieval, cross-encoder reranking, metrics before and after.

How the reranked list is formed: the reranker scores *every* one of the
``retrieve_k`` retrieved candidates and the reranked list keeps its best
``rerank_k``; the rest are dropped (that list is what a RAG pipeline would pass
on). So reranked metrics are reported for ``k <= rerank_k`` only, while
retrieval metrics go up to ``retrieve_k`` (``hit@retrieve_k`` is the ceiling
any reranker of those candidates can reach).

A sweep (``sweep=[5, 10, 20, 30, 50]``) answers "how many candidates are worth
reranking?" in one run: it retrieves and scores the largest ``k`` once, and
derives every smaller ``k`` from the same scores (reranking the first ``k``
retrieved is ordering those ``k`` by their scores), so it costs no more than
the largest ``k`` alone. Each :class:`SweepPoint` holds the quality after
reranking, the first stage's recall@k (the ceiling) and the estimated cost per
query.

Example:
    >>> from rerank_plugins import Reranker
    >>> from rerank_plugins.evaluation import BiEncoder, evaluate, load_dataset
    >>> report = evaluate(load_dataset("examples/data/squad_sample.json").sample(50, seed=0),
    ...                   Reranker("path/to/ms-marco-MiniLM-L-12-v2"), BiEncoder(),
    ...                   retrieve_k=30, rerank_k=10, sweep=[5, 10, 20, 30])  # doctest: +SKIP
    >>> print(report.format_table()); print(report.format_sweep_table())  # doctest: +SKIP
    >>> report.to_dict().keys()  # doctest: +SKIP
    dict_keys(['retrieval', 'reranked', 'timing', 'config', 'sweep'])
    >>> report.recommended_k()  # doctest: +SKIP
    10
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

from rerank_plugins.core import rank_order
from rerank_plugins.evaluation.metrics import METRICS, hit_curve, mean_metrics, smallest_k_near_best

if TYPE_CHECKING:
    from rerank_plugins.core import Reranker
    from rerank_plugins.evaluation.data import Dataset
    from rerank_plugins.evaluation.retrieval import BiEncoder, DenseIndex

__all__ = [
    "DEFAULT_KS",
    "RECOMMEND_TOLERANCE",
    "REPORT_KEYS",
    "SWEEP_METRICS",
    "EvalReport",
    "QueryOutcome",
    "SweepPoint",
    "check_sweep",
    "evaluate",
]

logger = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10)
REPORT_KEYS: tuple[str, ...] = ("retrieval", "reranked", "timing", "config", "sweep")
# The quality figures of each sweep point, over the reranker's order of all k candidates.
SWEEP_METRICS: tuple[str, ...] = ("hit@1", "hit@3", "hit@10", "mrr@10", "ndcg@10")
# The recommended retrieve_k: the smallest within this much MRR@10 of the sweep's best.
RECOMMEND_TOLERANCE = 0.005
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


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """Quality and cost of reranking the first stage's top ``retrieve_k`` candidates.

    Attributes:
        retrieve_k: candidates reranked per query.
        metrics: :data:`SWEEP_METRICS` over the reranker's order of those
            candidates, e.g. ``{"hit@1": 0.86, ..., "mrr@10": 0.91, "ndcg@10": 0.92}``
            (below ``k = 10`` a list of ``k`` documents, so ``mrr@10`` is ``mrr@k``).
        retrieval_recall: the first stage's recall@retrieve_k: the most any reranker
            of these candidates can find.
        rerank_pairs: (query, passage) pairs scored at this ``k``, over all queries.
        rerank_ms_per_query: reranking time per query: the measured mean time per
            pair of the one scoring pass times the pairs per query.
        ms_per_query: ``rerank_ms_per_query`` plus the first stage's time per query.
    """

    retrieve_k: int
    metrics: dict[str, float]
    retrieval_recall: float
    rerank_pairs: int
    rerank_ms_per_query: float
    ms_per_query: float

    def to_dict(self) -> dict[str, Any]:
        """``{"retrieve_k", "hit@1", ..., "ndcg@10", "retrieval_recall", "rerank_pairs", "rerank_ms_per_query",
        "ms_per_query"}``."""
        return {
            "retrieve_k": self.retrieve_k,
            **self.metrics,
            "retrieval_recall": self.retrieval_recall,
            "rerank_pairs": self.rerank_pairs,
            "rerank_ms_per_query": self.rerank_ms_per_query,
            "ms_per_query": self.ms_per_query,
        }


@dataclass(frozen=True)
class EvalReport:
    """Metrics before and after reranking, timings and the run's settings.

    Attributes:
        retrieval: first-stage metrics, e.g. ``{"hit@1": 0.61, ..., "mrr@10": 0.72, ...}``.
        reranked: the same metrics over the reranked list (``k <= rerank_k``).
        timing: wall seconds per stage and milliseconds per query.
        config: the settings and sizes of the run.
        sweep: one :class:`SweepPoint` per swept ``retrieve_k``, ascending (empty without a sweep).
        outcomes: one :class:`QueryOutcome` per query (not part of :meth:`to_dict`).
    """

    retrieval: dict[str, float]
    reranked: dict[str, float]
    timing: dict[str, float]
    config: dict[str, Any]
    outcomes: tuple[QueryOutcome, ...] = field(default=(), repr=False, compare=False)
    sweep: tuple[SweepPoint, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: exactly :data:`REPORT_KEYS`, a copy; ``"sweep"`` is a list of
        :meth:`SweepPoint.to_dict` (``[]`` without a sweep)."""
        out = {key: copy.deepcopy(getattr(self, key)) for key in REPORT_KEYS if key != "sweep"}
        out["sweep"] = [point.to_dict() for point in self.sweep]
        return out

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

    def recommended_k(self, tolerance: float = RECOMMEND_TOLERANCE) -> int | None:
        """The smallest swept ``retrieve_k`` within ``tolerance`` MRR@10 of the sweep's best (``None``: no sweep).

        Example:
            >>> report.recommended_k()  # doctest: +SKIP
            20
        """
        if not self.sweep:
            return None
        return smallest_k_near_best({p.retrieve_k: p.metrics["mrr@10"] for p in self.sweep}, tolerance)

    def recommendation(self, tolerance: float = RECOMMEND_TOLERANCE) -> str:
        """The sweep's one-line advice, e.g. ``"recommended retrieve_k: 20 (...)"`` (``""``: no sweep)."""
        k = self.recommended_k(tolerance)
        if k is None:
            return ""
        best = max(self.sweep, key=lambda p: p.metrics["mrr@10"])
        chosen = next(p for p in self.sweep if p.retrieve_k == k)
        return (
            f"recommended retrieve_k: {k} (the smallest k within {tolerance:g} MRR@10 of the best: "
            f"MRR@10 {chosen.metrics['mrr@10']:.4f} vs {best.metrics['mrr@10']:.4f} at k={best.retrieve_k}; "
            f"{chosen.ms_per_query:.1f} vs {best.ms_per_query:.1f} ms per query)"
        )

    def format_sweep_table(self) -> str:
        """One row per swept ``retrieve_k``: recall@k of the first stage, quality after reranking, ms per query.

        The first row (``k`` = ``-``) is the first stage alone; the last line is :meth:`recommendation`.
        Empty without a sweep.
        """
        if not self.sweep:
            return ""
        cfg, t = self.config, self.timing
        header = ("k", "recall@k", *SWEEP_METRICS, "ms/query")
        positives = [o.positives for o in self.outcomes]
        first = mean_metrics([o.retrieved for o in self.outcomes], positives, [1, 3, 10], ("hit",))
        first |= mean_metrics([o.retrieved for o in self.outcomes], positives, [10], ("mrr", "ndcg"))
        rows = [header]
        if self.outcomes:
            rows.append(("-", "-", *(f"{first[m]:.4f}" for m in SWEEP_METRICS),
                         f"{t['retrieval_ms_per_query']:.1f}"))
        for p in self.sweep:
            rows.append((str(p.retrieve_k), f"{p.retrieval_recall:.4f}",
                         *(f"{p.metrics[m]:.4f}" for m in SWEEP_METRICS), f"{p.ms_per_query:.1f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        per_pair_ms = 1000.0 * t["rerank_s"] / cfg["rerank_pairs"] if cfg["rerank_pairs"] else 0.0
        lines = [
            f"retrieve_k sweep: the top {cfg['retrieve_k']} scored once, each smaller k reranked from the same "
            f"scores; ms/query = first stage ({t['retrieval_ms_per_query']:.1f} ms) + {per_pair_ms:.2f} ms per "
            f"pair x k; row '-' is the first stage alone"
        ]
        for i, row in enumerate(rows):
            lines.append("  ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(self.recommendation())
        return "\n".join(lines)

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


def check_sweep(sweep: Any, n_docs: int | None = None) -> tuple[int, ...]:
    """Validate sweep values; return them sorted ascending.

    Args:
        sweep: the ``retrieve_k`` values to compare (any order).
        n_docs: the corpus size, the largest possible ``k`` (``None``: not checked).

    Raises:
        TypeError: ``sweep`` is not a sequence of ints (the message names the position).
        ValueError: empty, a value below 1, a duplicate, or a value larger than the corpus.

    Example:
        >>> check_sweep([30, 5, 10], n_docs=100)
        (5, 10, 30)
    """
    if isinstance(sweep, (str, bytes)) or not isinstance(sweep, Iterable):
        raise TypeError(f"sweep must be a sequence of ints, got {type(sweep).__name__}")
    values = list(sweep)
    if not values:
        raise ValueError("sweep must hold at least one retrieve_k value")
    for i, k in enumerate(values):
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"sweep[{i}] must be an int, got {type(k).__name__} ({k!r})")
        if k < 1:
            raise ValueError(f"sweep[{i}] must be a positive int, got {k}")
    duplicates = sorted({k for k in values if values.count(k) > 1})
    if duplicates:
        raise ValueError(f"sweep values must be distinct; repeated: {', '.join(map(str, duplicates))}")
    if n_docs is not None:
        too_large = sorted(k for k in values if k > n_docs)
        if too_large:
            raise ValueError(
                f"sweep value {too_large[0]} is larger than the corpus ({n_docs} documents); "
                f"use values up to {n_docs}"
            )
    return tuple(sorted(values))


def _sweep_points(
    sweep: tuple[int, ...],
    candidates: list[list[str]],
    scores: list[list[float]],
    positives: list[frozenset[str]],
    retrieval_ms_per_query: float,
    per_pair_ms: float,
) -> tuple[SweepPoint, ...]:
    """Every swept k from the one scoring pass: rerank the first k candidates by their scores."""
    n_q = len(candidates)
    points = []
    for k in sweep:
        reranked = [[row[i] for i in rank_order(row_scores[:k])] for row, row_scores in zip(candidates, scores,
                                                                                          strict=True)]
        metrics = mean_metrics(reranked, positives, [1, 3, 10], ("hit",))
        metrics |= mean_metrics(reranked, positives, [10], ("mrr", "ndcg"))
        recall = mean_metrics(candidates, positives, [k], ("recall",))[f"recall@{k}"]
        pairs = sum(min(k, len(row)) for row in candidates)
        rerank_ms = per_pair_ms * pairs / n_q if n_q else 0.0
        points.append(SweepPoint(
            retrieve_k=k,
            metrics={m: metrics[m] for m in SWEEP_METRICS},
            retrieval_recall=recall,
            rerank_pairs=pairs,
            rerank_ms_per_query=rerank_ms,
            ms_per_query=retrieval_ms_per_query + rerank_ms,
        ))
    return tuple(points)


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
    retrieve_k: int | None = None,
    rerank_k: int = 10,
    ks: Iterable[int] = DEFAULT_KS,
    sweep: Iterable[int] | None = None,
    embeddings_cache: str | Path | None = None,
    index: DenseIndex | None = None,
    show_progress: bool | None = None,
) -> EvalReport:
    """Run retrieval then reranking over every query of ``dataset`` and measure both.

    Args:
        dataset: corpus and queries (see :func:`~rerank_plugins.evaluation.load_dataset`;
            use ``dataset.sample(n, seed)`` for a subset).
        reranker: any :class:`~rerank_plugins.Reranker` (its ``score_many`` is called once,
            over every query's candidates).
        bi_encoder: the first-stage :class:`~rerank_plugins.evaluation.BiEncoder`.
        retrieve_k: candidates retrieved per query (capped at the corpus size); default 30,
            or with a sweep the largest swept value (giving another value is an error).
        rerank_k: candidates kept after reranking (``<= retrieve_k``).
        ks: metric cut-offs; ``rerank_k`` and ``retrieve_k`` are always added.
            Retrieval metrics cover ``k <= retrieve_k``, reranked ones ``k <= rerank_k``.
        sweep: ``retrieve_k`` values to compare (see :func:`check_sweep`), e.g.
            ``[5, 10, 20, 30, 50]``: the largest is retrieved and scored once and
            every smaller one is derived from those scores; one :class:`SweepPoint`
            each on ``report.sweep``.
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
            int, or ``rerank_k > retrieve_k``; a bad sweep (:func:`check_sweep`), or
            a ``retrieve_k`` other than its largest value.
        TypeError: a sweep value is not an int.
    """
    from rerank_plugins.evaluation.retrieval import DenseIndex

    n_docs = len(dataset.doc_ids)
    if sweep is not None:
        sweep = check_sweep(sweep, n_docs)
        if retrieve_k is not None and retrieve_k != sweep[-1]:
            raise ValueError(
                f"retrieve_k ({retrieve_k!r}) must equal the largest sweep value ({sweep[-1]}) or be left out"
            )
        retrieve_k = sweep[-1]
    elif retrieve_k is None:
        retrieve_k = 30
    retrieve_k = _check_positive("retrieve_k", retrieve_k)
    rerank_k = _check_positive("rerank_k", rerank_k)
    ks = {_check_positive("k", k) for k in ks}
    if rerank_k > retrieve_k:
        raise ValueError(f"rerank_k ({rerank_k}) must not exceed retrieve_k ({retrieve_k})")
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

    # Stage 2: reranking, every query's candidates scored in one flattened pass. The reranked
    # list (and every swept k) is the reranker's order of a prefix of the candidates.
    text_of = dict(zip(dataset.doc_ids, dataset.doc_texts, strict=True))
    candidates = [[doc_id for doc_id, _ in row] for row in hits]
    start = time.perf_counter()
    scores = reranker.score_many(
        [q.text for q in queries], [[text_of[d] for d in row] for row in candidates], show_progress=show_progress,
    )
    rerank_s = time.perf_counter() - start
    orders = [rank_order(row)[:rerank_k] for row in scores]
    n_pairs = sum(len(row) for row in candidates)
    logger.info("reranking: %d pairs in %.2f s", n_pairs, rerank_s)

    outcomes = tuple(
        QueryOutcome(
            id=q.id,
            query=q.text,
            positives=q.positives,
            retrieved=tuple(row),
            retrieval_scores=tuple(s for _, s in hit),
            reranked=tuple(row[i] for i in order),
            rerank_scores=tuple(row_scores[i] for i in order),
        )
        for q, row, hit, row_scores, order in zip(queries, candidates, hits, scores, orders, strict=True)
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
    points: tuple[SweepPoint, ...] = ()
    if sweep is not None:
        points = _sweep_points(
            sweep, candidates, scores, positives, timing["retrieval_ms_per_query"],
            1000.0 * rerank_s / n_pairs if n_pairs else 0.0,
        )
    config = {
        "data": dict(dataset.source),
        "documents": n_docs,
        "queries": n_q,
        "retrieve_k": retrieve_k,
        "rerank_k": rerank_k,
        "ks": sorted(ks),
        "sweep": None if sweep is None else list(sweep),
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
    return EvalReport(retrieval, reranked, timing, config, outcomes, points)
