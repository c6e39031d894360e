"""Beyond one machine: bulk reranking on Ray Data.

Install with ``pip install 'rerank-plugins[ray]'``. Ray is imported when a
function here runs, not when this package is imported.

Example:
    >>> import ray
    >>> from rerank_plugins.distributed import rerank_dataset
    >>> ds = ray.data.from_items([{"id": 1, "query": "q", "documents": ["a", "b"]}])  # doctest: +SKIP
    >>> rerank_dataset(ds, "./ms-marco-MiniLM-L-12-v2", concurrency=2).take_all()  # doctest: +SKIP
    [{'id': 1, 'query': 'q', 'documents': ['a', 'b'], 'scores': [...], 'ranking': [...]}]
"""

from rerank_plugins.distributed.dataset import RerankBatches, rerank_dataset

__all__ = ["RerankBatches", "rerank_dataset"]
