"""rerank_plugins: second-stage reranking as a drop-in part of any RAG pipeline.

``import rerank_plugins`` stays light: torch and transformers load when a
:class:`Reranker` is built; the LangChain and LlamaIndex adapters live in
:mod:`rerank_plugins.integrations` and the two-stage evaluation in
:mod:`rerank_plugins.evaluation`, each importing its framework on use.

Example:
    >>> from rerank_plugins import Reranker
    >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L-12-v2")  # doctest: +SKIP
    >>> reranker.rerank("what is reranking?", ["a passage", "another"], top_n=1)  # doctest: +SKIP
"""

from rerank_plugins.backends.base import KINDS, clear_model_cache
from rerank_plugins.core import NORMALIZATIONS, Reranker, Result
from rerank_plugins.errors import MissingExtraError, ModelLoadError, RemoteError

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "NORMALIZATIONS",
    "MissingExtraError",
    "ModelLoadError",
    "RemoteError",
    "Reranker",
    "Result",
    "__version__",
    "clear_model_cache",
]
