"""Two-stage evaluation: bi-encoder + faiss retrieval, reranking, metrics before and after.

The data loaders, metrics and report types import without faiss, matplotlib
or the embedded bi-encoder; those load only when an index is built, a plot is
drawn or the default bi-encoder is used (``pip install 'rerank-plugins[eval]'``).

Example:
    >>> from rerank_plugins import Reranker
    >>> from rerank_plugins.evaluation import BiEncoder, evaluate, load_dataset, plot_hit_curves
    >>> data = load_dataset("examples/data/squad_sample.json").sample(50, seed=0)  # doctest: +SKIP
    >>> report = evaluate(data, Reranker("cross-encoder/ms-marco-MiniLM-L-12-v2"), BiEncoder(),
    ...                   retrieve_k=30, rerank_k=10)  # doctest: +SKIP
    >>> print(report.format_table())  # doctest: +SKIP
    >>> report.write_json("report.json"); plot_hit_curves(report, "hit.png")  # doctest: +SKIP
    >>> swept = evaluate(data, Reranker("cross-encoder/ms-marco-MiniLM-L-12-v2"), BiEncoder(),
    ...                  sweep=[5, 10, 20, 30])  # doctest: +SKIP
    >>> print(swept.format_sweep_table()); plot_sweep(swept, "sweep.png")  # doctest: +SKIP
"""

from rerank_plugins.evaluation.data import (
    FORMATS,
    DataFormatError,
    Dataset,
    Query,
    detect_format,
    load_dataset,
    load_jsonl,
    load_squad,
)
from rerank_plugins.evaluation.metrics import (
    METRICS,
    PairedDifference,
    hit_at_k,
    hit_curve,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap,
    per_query,
    recall_at_k,
    smallest_k_near_best,
)
from rerank_plugins.evaluation.pipeline import (
    DEFAULT_KS,
    RECOMMEND_TOLERANCE,
    REPORT_KEYS,
    SWEEP_METRICS,
    EvalReport,
    QueryOutcome,
    SweepPoint,
    check_sweep,
    evaluate,
)
from rerank_plugins.evaluation.plot import plot_hit_curves, plot_sweep, sweep_plot_path
from rerank_plugins.evaluation.retrieval import (
    DEFAULT_BI_ENCODER_NAME,
    BiEncoder,
    DenseIndex,
    corpus_fingerprint,
    default_bi_encoder_path,
)

__all__ = [
    "DEFAULT_BI_ENCODER_NAME",
    "DEFAULT_KS",
    "FORMATS",
    "METRICS",
    "RECOMMEND_TOLERANCE",
    "REPORT_KEYS",
    "SWEEP_METRICS",
    "BiEncoder",
    "DataFormatError",
    "Dataset",
    "DenseIndex",
    "EvalReport",
    "PairedDifference",
    "Query",
    "QueryOutcome",
    "SweepPoint",
    "check_sweep",
    "corpus_fingerprint",
    "default_bi_encoder_path",
    "detect_format",
    "evaluate",
    "hit_at_k",
    "hit_curve",
    "load_dataset",
    "load_jsonl",
    "load_squad",
    "mean_metrics",
    "mrr_at_k",
    "ndcg_at_k",
    "paired_bootstrap",
    "per_query",
    "plot_hit_curves",
    "plot_sweep",
    "recall_at_k",
    "smallest_k_near_best",
    "sweep_plot_path",
]
