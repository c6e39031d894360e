"""Reranking as a service: ``rerank-plugins serve`` (extra ``serve``: FastAPI, uvicorn, httpx).

:func:`create_app` builds the ASGI app (TEI ``/rerank``, Cohere ``/v1/rerank``, ``/health``,
``/info``, ``/metrics``) over one :class:`~rerank_plugins.Reranker`; FastAPI is imported only when
an app is built.

Example:
    >>> from rerank_plugins.serving import ServeSettings, create_app
    >>> app = create_app(reranker, settings=ServeSettings(max_wait_ms=5))  # doctest: +SKIP
"""

from rerank_plugins.serving.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
