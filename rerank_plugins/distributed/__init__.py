"""Beyond one machine: bulk reranking on Ray Data, and the server as a Ray Serve deployment.

Install with ``pip install 'rerank-plugins[ray]'``. Ray is imported when a
function here runs (or :data:`RerankDeployment` is first touched), not when
this package is imported.

Example:
    >>> import ray
    >>> from rerank_plugins.distributed import rerank_dataset
    >>> ds = ray.data.from_items([{"id": 1, "query": "q", "documents": ["a", "b"]}])  # doctest: +SKIP
    >>> rerank_dataset(ds, "./ms-marco-MiniLM-L-12-v2", concurrency=2).take_all()  # doctest: +SKIP
    [{'id': 1, 'query': 'q', 'documents': ['a', 'b'], 'scores': [...], 'ranking': [...]}]
"""

from typing import Any

from rerank_plugins.distributed.dataset import RerankBatches, rerank_dataset

__all__ = ["RerankBatches", "RerankDeployment", "rerank_app", "rerank_dataset"]


def __getattr__(name: str) -> Any:
    # The Serve deployment is built when first asked for: importing ray.serve is not free.
    if name in ("RerankDeployment", "rerank_app"):
        from rerank_plugins.distributed import serve

        return getattr(serve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
