"""The reranking server as a Ray Serve deployment: the same FastAPI app as ``rerank-plugins serve``.

Each replica loads the model once, in its constructor (Serve routes no request to
it before that returns), then serves :func:`rerank_plugins.serving.create_app`'s
app: TEI ``/rerank``, Cohere ``/v1/rerank``, ``/health``, ``/info``, ``/metrics``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    from ray import serve
except ImportError as exc:  # pragma: no cover - the ray extra is absent
    from rerank_plugins.errors import missing_extra

    raise missing_extra("ray[serve]", "ray", exc) from None

from rerank_plugins.serving.app import ServeSettings

__all__ = ["RerankDeployment", "rerank_app"]


@serve.ingress()
class _RerankServer:
    """One replica: a :class:`~rerank_plugins.Reranker` and the package's FastAPI app over it."""

    def __init__(self, model: str, reranker_options: dict[str, Any], settings: ServeSettings) -> None:
        from rerank_plugins.core import Reranker

        self.reranker = Reranker(model, **reranker_options)
        self.settings = settings

    def __serve_build_asgi_app__(self) -> Any:
        from rerank_plugins.serving.app import create_app

        return create_app(self.reranker, settings=self.settings)


#: The Ray Serve deployment. Bind it with ``(model, reranker_options, settings)``, or use :func:`rerank_app`.
RerankDeployment = serve.deployment(_RerankServer, name="RerankDeployment")


def rerank_app(
    model: str | Path,
    *,
    settings: ServeSettings | None = None,
    num_replicas: int | str | None = None,
    autoscaling_config: dict[str, Any] | None = None,
    ray_actor_options: dict[str, Any] | None = None,
    max_ongoing_requests: int | None = None,
    **reranker_options: Any,
) -> Any:
    """A bound :data:`RerankDeployment`, ready for ``serve.run``.

    Args:
        model: a model directory (at that path on every node) or a hub name; each replica loads it.
        settings: the server's limits and batching (:class:`~rerank_plugins.serving.ServeSettings`).
        num_replicas: a fixed number of replicas, or ``"auto"``; passed to Serve as is.
        autoscaling_config: Serve's autoscaling settings, e.g. ``{"min_replicas": 1, "max_replicas": 8,
            "target_ongoing_requests": 4}``; passed to Serve as is.
        ray_actor_options: resources per replica, e.g. ``{"num_cpus": 2}`` or ``{"num_gpus": 1}``.
        max_ongoing_requests: requests a replica takes at once (the app's own queue batches them).
        **reranker_options: :class:`~rerank_plugins.Reranker` arguments (``normalize``, ``dtype``, ...).

    Example:
        >>> from ray import serve
        >>> from rerank_plugins.distributed import rerank_app
        >>> serve.run(rerank_app("BAAI/bge-reranker-v2-m3", num_replicas=4,
        ...                      ray_actor_options={"num_gpus": 1}, dtype="float16"))  # doctest: +SKIP
        >>> # POST http://127.0.0.1:8000/rerank {"query": "...", "texts": ["...", "..."]}
    """
    options = {
        name: value
        for name, value in (
            ("num_replicas", num_replicas),
            ("autoscaling_config", autoscaling_config),
            ("ray_actor_options", ray_actor_options),
            ("max_ongoing_requests", max_ongoing_requests),
        )
        if value is not None
    }
    if num_replicas is not None and autoscaling_config is not None and num_replicas != "auto":
        raise ValueError("give num_replicas or autoscaling_config, not both")
    if settings is not None and not isinstance(settings, ServeSettings):
        raise TypeError(f"settings must be a ServeSettings, got {type(settings).__name__}")
    deployment = RerankDeployment.options(**options) if options else RerankDeployment
    return deployment.bind(str(model), dict(reranker_options), settings or ServeSettings())
