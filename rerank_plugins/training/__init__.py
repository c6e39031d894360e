"""Fine-tune a reranker on your own data: hard negatives mined by the first stage, measured before and after.

Needs the ``train`` extra (``pip install 'rerank-plugins[train]'``: sentence-transformers'
trainer, ``datasets``, ``accelerate``) and the ``eval`` extra (faiss and the
embedded bi-encoder). Importing this module is light; they load when used.

Example:
    >>> from rerank_plugins import Reranker
    >>> from rerank_plugins.training import finetune
    >>> report = finetune("squad-dev.json", base="path/to/encoder", output="my-reranker",
    ...                   train_queries=2000, eval_queries=300)  # doctest: +SKIP
    >>> print(report.format_table())  # doctest: +SKIP
    >>> Reranker("my-reranker").rerank("a question", ["passage one", "passage two"])  # doctest: +SKIP
"""

from rerank_plugins.training.data import (
    GroupSplit,
    MinedQuery,
    mine_hard_negatives,
    select_negatives,
    split_by_group,
)
from rerank_plugins.training.finetune import LOSSES, REPORT_METRICS, TRAIN_DTYPES, FinetuneReport, finetune

__all__ = [
    "LOSSES",
    "REPORT_METRICS",
    "TRAIN_DTYPES",
    "FinetuneReport",
    "GroupSplit",
    "MinedQuery",
    "finetune",
    "mine_hard_negatives",
    "select_negatives",
    "split_by_group",
]
