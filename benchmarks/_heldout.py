"""The fine-tuning benchmark's held-out questions, shared by ``finetune_misses.py`` and ``finetune_paired.py``.

SQuAD v1.1 dev split by article as ``bench_finetune.py`` splits it (split seed 0,
12 of 48 articles held out), a sample of its questions, and the first stage
(the embedded all-MiniLM-L6-v2 + faiss over every paragraph).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

SHARED = Path(os.environ.get("RERANK_PLUGINS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
RERANKER = str(SHARED / "models" / "ms-marco-MiniLM-L-12-v2")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The data, sample and first-stage flags both scripts take."""
    p.add_argument("--data", default=str(SHARED / "data" / "squad-v1.1-dev.json"))
    p.add_argument("--eval-queries", type=int, default=300, help="held-out questions (the benchmark's sample)")
    p.add_argument("--retrieve-k", type=int, default=30)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--embeddings", default=None, help="corpus-embedding cache (.npz)")
    p.add_argument("--json-out", default=None)


def load(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """``(dataset, held_out, bi_encoder, index)`` for ``args`` from :func:`add_arguments`."""
    from rerank_plugins.evaluation import BiEncoder, DenseIndex, load_dataset
    from rerank_plugins.training import split_by_group

    dataset = load_dataset(args.data)
    held_out = split_by_group(dataset, eval_fraction=0.25, seed=0).eval.sample(args.eval_queries, seed=0)
    bi = BiEncoder(None, device="cpu")
    index = DenseIndex.from_corpus(bi, dataset.doc_ids, dataset.doc_texts, cache=args.embeddings)
    return dataset, held_out, bi, index
