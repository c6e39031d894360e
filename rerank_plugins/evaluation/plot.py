"""A PNG of hit@k against k, before and after reranking (matplotlib, imported on use).

Example:
    >>> from rerank_plugins.evaluation import plot_hit_curves
    >>> plot_hit_curves(report, "hit_at_k.png")  # doctest: +SKIP
    PosixPath('hit_at_k.png')
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from rerank_plugins._io import atomic_write
from rerank_plugins.errors import missing_extra

if TYPE_CHECKING:
    from rerank_plugins.evaluation.pipeline import EvalReport

__all__ = ["plot_hit_curves"]

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
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise missing_extra("matplotlib", "eval", exc) from None
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
    path = atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi))
    logger.info("wrote hit@k plot to %s", path)
    return path
