"""PNGs of a two-stage run (matplotlib, imported on use): hit@k against k before and after
reranking, and for a sweep, quality against milliseconds per query, one point per ``retrieve_k``.

Both files are written to a temporary name and renamed, so a reader never sees half a PNG.

Example:
    >>> from rerank_plugins.evaluation import plot_hit_curves, plot_sweep, sweep_plot_path
    >>> plot_hit_curves(report, "hit_at_k.png")  # doctest: +SKIP
    PosixPath('hit_at_k.png')
    >>> plot_sweep(report, sweep_plot_path("hit_at_k.png"))  # doctest: +SKIP
    PosixPath('hit_at_k_sweep.png')
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank_plugins._io import atomic_write
from rerank_plugins.errors import missing_extra

if TYPE_CHECKING:
    from rerank_plugins.evaluation.pipeline import EvalReport

__all__ = ["plot_hit_curves", "plot_sweep", "sweep_plot_path"]

logger = logging.getLogger(__name__)


def plot_hit_curves(report: EvalReport, path: str | Path, *, title: str | None = None, dpi: int = 120) -> Path:
    """Draw hit@k for k = 1 .. retrieve_k (retrieval) and 1 .. rerank_k (reranked) into a PNG.

    Uses matplotlib's object API with the Agg canvas, so no display and no
    global backend change is needed. The file is PNG whatever its suffix, written
    atomically (a temporary file, then a rename).

    Args:
        report: an :class:`~rerank_plugins.evaluation.EvalReport` with its per-query outcomes.
        path: the output file.
        title: the plot title (default: sizes and models of the run).
        dpi: resolution.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        MissingExtraError: matplotlib is not installed.
        ValueError: the report holds no per-query outcomes.
        OSError: the file cannot be written (the message names ``path``).
    """
    FigureCanvasAgg, Figure, MaxNLocator = _matplotlib()
    if not report.outcomes:
        raise ValueError("the report holds no per-query outcomes to plot")
    curves = report.hit_curves()
    cfg = report.config
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    before, after = curves["retrieval"], curves["reranked"]
    ax.plot(range(1, len(before) + 1), before, marker="o", markersize=3,
            label=f"retrieval ({Path(str(cfg['bi_encoder']['model'])).name})")
    ax.plot(range(1, len(after) + 1), after, marker="o", markersize=3,
            label=f"reranked ({Path(str(cfg['reranker']['model'])).name})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("k")
    ax.set_ylabel("hit@k")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0.5, len(before) + 0.5)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(title or (
        f"hit@k, {cfg['queries']} queries, {cfg['documents']} documents; "
        f"top {cfg['retrieve_k']} reranked, {cfg['rerank_k']} kept"
    ), fontsize=10)
    fig.tight_layout()
    path = _save(fig, path, dpi)
    logger.info("wrote hit@k plot to %s", path)
    return path


def sweep_plot_path(path: str | Path) -> Path:
    """Where the sweep plot goes next to the hit@k plot at ``path``: ``_sweep`` added to the file's stem.

    Example:
        >>> sweep_plot_path("out/squad200.png").as_posix()
        'out/squad200_sweep.png'
    """
    path = Path(path)
    return path.with_name(f"{path.stem}_sweep{path.suffix}")


def plot_sweep(report: EvalReport, path: str | Path, *, title: str | None = None, dpi: int = 120) -> Path:
    """Draw quality against milliseconds per query, one labelled point per swept ``retrieve_k``, into a PNG.

    MRR@10 and hit@1 after reranking are drawn for every ``k``, the first stage
    alone as a reference point at its own cost, and the recommended ``k``
    (:meth:`~rerank_plugins.evaluation.EvalReport.recommended_k`) is circled.

    Args:
        report: an :class:`~rerank_plugins.evaluation.EvalReport` of a run with a sweep.
        path: the output file (PNG whatever its suffix).
        title: the plot title (default: sizes and models of the run).
        dpi: resolution.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        MissingExtraError: matplotlib is not installed.
        ValueError: the report holds no sweep.
    """
    FigureCanvasAgg, Figure, _ = _matplotlib()
    if not report.sweep:
        raise ValueError("the report holds no sweep to plot; run evaluate(..., sweep=[...])")
    from rerank_plugins.evaluation.metrics import mean_metrics

    cfg, points = report.config, report.sweep
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = [p.ms_per_query for p in points]
    plotted: list[float] = []
    for key, label, marker in (("mrr@10", "MRR@10", "o"), ("hit@1", "hit@1", "s")):
        ys = [p.metrics[key] for p in points]
        plotted += ys
        ax.plot(xs, ys, marker=marker, markersize=5, label=f"{label} after reranking")
        for p, x, y in zip(points, xs, ys, strict=True):
            ax.annotate(f"k={p.retrieve_k}", (x, y), textcoords="offset points", xytext=(4, -12 if key == "hit@1"
                        else 5), fontsize=8)
    if report.outcomes:
        first = mean_metrics([o.retrieved for o in report.outcomes], [o.positives for o in report.outcomes],
                             [10], ("mrr",))["mrr@10"]
        ax.plot([report.timing["retrieval_ms_per_query"]], [first], marker="x", color="gray", linestyle="none",
                markersize=8, label="MRR@10, first stage alone")
        plotted.append(first)
    k = report.recommended_k()
    best = next(p for p in points if p.retrieve_k == k)
    ax.plot([best.ms_per_query], [best.metrics["mrr@10"]], marker="o", markersize=14, markerfacecolor="none",
            markeredgecolor="black", linestyle="none", label=f"recommended: k={k}")
    ax.set_xlabel("ms per query (first stage + reranking)")
    ax.set_ylabel("quality")
    # Zoom on the data: the differences between k are often a few points.
    ax.set_ylim(max(0.0, min(plotted) - 0.05), min(1.02, max(plotted) + 0.03))
    ax.margins(x=0.1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or (
        f"quality vs cost, {cfg['queries']} queries, {cfg['documents']} documents; "
        f"{Path(str(cfg['reranker']['model'])).name}"
    ), fontsize=10)
    fig.tight_layout()
    path = _save(fig, path, dpi)
    logger.info("wrote sweep plot to %s", path)
    return path


def _matplotlib() -> tuple[Any, Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise missing_extra("matplotlib", "eval", exc) from None
    return FigureCanvasAgg, Figure, MaxNLocator


def _save(fig: Any, path: str | Path, dpi: int) -> Path:
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi))
