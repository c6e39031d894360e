"""The FastAPI app: TEI ``/rerank``, Cohere ``/v1/rerank``, ``/health``, ``/info``, ``/metrics``.

:func:`create_app` builds a self-contained ASGI app over one :class:`~rerank_plugins.Reranker`; it
starts no server (``rerank-plugins serve`` runs it under uvicorn; a Ray Serve deployment can wrap
it). Scoring goes through :class:`~rerank_plugins.serving.batching.BatchQueue`, so concurrent
requests share forward passes.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations, which
# name classes imported inside create_app, so they must be evaluated where the endpoints are defined.
import asyncio
import contextlib
import copy
import hmac
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rerank_plugins.core import select_results
from rerank_plugins.errors import missing_extra

if TYPE_CHECKING:
    import fastapi

    from rerank_plugins.core import Reranker, Result

__all__ = ["ServeSettings", "create_app"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    """Limits and behaviour of a served reranker.

    Attributes:
        max_documents: documents per request (more: 413).
        max_document_chars: characters per document (more: 413).
        max_total_chars: characters per request, query and documents together (more: 413).
        max_queue: requests waiting to be scored (one more: 503 with ``Retry-After``).
        max_wait_ms: how long a request may wait for others to share its forward passes.
        max_batch_pairs: pairs scored per call of the core loop.
        batching: ``False`` scores requests one at a time (for comparison).
        api_key_env: name of an environment variable holding a bearer key; ``None``: no key.
            The key is read once, when the app is built, and never logged.
        retry_after_s: the ``Retry-After`` seconds sent with a 503.
        model_name: the model name in ``/v1/rerank`` answers (``None``: the reranker's model id).

    Example:
        >>> settings = ServeSettings(max_documents=100, max_wait_ms=2.0)
        >>> settings.max_queue
        256
    """

    max_documents: int = 1000
    max_document_chars: int = 100_000
    max_total_chars: int = 2_000_000
    max_queue: int = 256
    max_wait_ms: float = 5.0
    max_batch_pairs: int = 256
    batching: bool = True
    api_key_env: str | None = None
    retry_after_s: int = 1
    model_name: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_document_chars", "max_total_chars", "max_queue", "max_batch_pairs",
                     "retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServeSettings.{name} must be a positive int, got {value!r}")
        if isinstance(self.max_wait_ms, bool) or not isinstance(self.max_wait_ms, (int, float)) or not (
            0 <= self.max_wait_ms <= 60_000
        ):
            raise ValueError(f"ServeSettings.max_wait_ms must be a number in [0, 60000], got {self.max_wait_ms!r}")
        if self.api_key_env is not None and (not isinstance(self.api_key_env, str) or not self.api_key_env):
            raise ValueError(f"ServeSettings.api_key_env must be a variable name or None, got {self.api_key_env!r}")


def _is_type_tag(part: object) -> bool:
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "list", "dict") or part[:1].isupper())


class _ApiError(Exception):
    def __init__(self, status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers or {}


class _State:
    """What the endpoints share: the reranker once loaded, its queue, a token counter, metrics."""

    def __init__(self, settings: ServeSettings, metrics: "_Metrics") -> None:
        self.settings = settings
        self.metrics = metrics
        self.reranker: Reranker | None = None
        self.queue: Any = None
        self.load_error: str | None = None
        self._tokenizer: Any = None
        self._tokenizer_lock = threading.Lock()

    async def ready(self, reranker: "Reranker") -> None:
        from rerank_plugins.serving.batching import BatchQueue

        s = self.settings
        tokenizer = getattr(reranker.backend, "tokenizer", None)
        # A private copy: the model's tokenizer is used under the model's lock; counting must not wait on it.
        self._tokenizer = copy.deepcopy(tokenizer) if tokenizer is not None else None
        queue = BatchQueue(
            reranker, max_queue=s.max_queue, max_wait_ms=s.max_wait_ms, max_batch_pairs=s.max_batch_pairs,
            batching=s.batching, on_batch=self.metrics.batch,
        )
        await queue.start()
        self.queue = queue
        self.reranker = reranker

    def token_counts(self, query: str, documents: list[str], truncate: bool) -> list[int]:
        """Tokens of each (query, document) pair as the tokenizer encodes it (0s for a remote model)."""
        if self._tokenizer is None or not documents:
            return [0] * len(documents)
        assert self.reranker is not None
        limit = self.reranker.max_length
        with self._tokenizer_lock:
            ids = self._tokenizer(
                [query] * len(documents), documents, truncation="longest_first" if truncate else False,
                max_length=limit if truncate else None, verbose=False,
            )["input_ids"]
        return [len(x) for x in ids]


class _Metrics:
    """Prometheus series of one app (its own registry, so several apps can share a process)."""

    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:  # pragma: no cover - prometheus-client comes with the serve extra
            raise missing_extra("prometheus-client", "serve", exc) from None
        self.prom = prom
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter("rerank_requests", "HTTP requests by path and status", ["path", "status"],
                                     registry=r)
        self.pairs = prom.Counter("rerank_pairs_scored", "(query, document) pairs scored", registry=r)
        self.latency = prom.Histogram(
            "rerank_request_seconds", "request latency", ["path"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.queue_depth = prom.Gauge("rerank_queue_depth", "requests waiting to be scored", registry=r)
        self.in_flight = prom.Gauge("rerank_in_flight", "HTTP requests being handled", registry=r)
        self.batch_pairs = prom.Histogram(
            "rerank_batch_pairs", "pairs per call of the scoring loop", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
        )
        self.batch_requests = prom.Histogram(
            "rerank_batch_requests", "requests sharing one call of the scoring loop", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )

    def batch(self, requests: int, pairs: int) -> None:
        self.pairs.inc(pairs)
        self.batch_pairs.observe(pairs)
        self.batch_requests.observe(requests)

    def render(self) -> tuple[bytes, str]:
        return self.prom.generate_latest(self.registry), self.prom.CONTENT_TYPE_LATEST


def create_app(reranker: "Reranker | Callable[[], Reranker]", *, settings: ServeSettings) -> "fastapi.FastAPI":
    """A FastAPI app serving ``reranker``; no server is started.

    Args:
        reranker: a loaded :class:`~rerank_plugins.Reranker`, or a zero-argument callable that loads
            one; the callable runs in a thread at startup, and until it returns ``/health`` answers
            503 (so the port opens at once and a load balancer waits for the model).
        settings: limits and behaviour.

    Raises:
        ValueError: ``settings.api_key_env`` names an unset or empty environment variable.

    Example:
        >>> import uvicorn  # doctest: +SKIP
        >>> app = create_app(Reranker("./ms-marco-MiniLM-L-12-v2"), settings=ServeSettings())  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """
    try:
        import fastapi
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response
        from starlette.exceptions import HTTPException as StarletteHTTPException
    except ImportError as exc:
        raise missing_extra("fastapi", "serve", exc) from None
    from rerank_plugins.serving.batching import QueueClosed, QueueFull
    from rerank_plugins.serving.schemas import (
        CohereDocument,
        CohereRerankRequest,
        CohereRerankResponse,
        CohereResult,
        CohereUsage,
        TEIRank,
        TEIRerankRequest,
    )

    if not isinstance(settings, ServeSettings):
        raise TypeError(f"settings must be a ServeSettings, got {type(settings).__name__}")
    api_key: str | None = None
    if settings.api_key_env is not None:
        api_key = os.environ.get(settings.api_key_env) or None
        if api_key is None:
            raise ValueError(f"the API key variable {settings.api_key_env} is unset or empty")
    metrics = _Metrics()
    state = _State(settings, metrics)
    loader: Callable[[], Reranker] | None = None
    if callable(reranker) and not hasattr(reranker, "rerank_many"):
        loader = reranker
    retry = {"Retry-After": str(settings.retry_after_s)}

    @contextlib.asynccontextmanager
    async def lifespan(app: fastapi.FastAPI) -> AsyncIterator[None]:
        load_task: asyncio.Task[None] | None = None
        if loader is None:
            await state.ready(reranker)  # type: ignore[arg-type]
        else:
            async def load() -> None:
                try:
                    loaded = await asyncio.to_thread(loader)
                except Exception as exc:  # noqa: BLE001 - reported by /health and the log
                    state.load_error = f"{type(exc).__name__}: {exc}"
                    logger.error("loading the reranker failed: %s", state.load_error)
                    return
                await state.ready(loaded)
                logger.info("serving %r", loaded)

            load_task = asyncio.create_task(load())
        try:
            yield
        finally:
            # uvicorn has already finished the in-flight requests; drain whatever is still queued.
            if load_task is not None and not load_task.done():
                load_task.cancel()
            if state.queue is not None:
                await state.queue.stop()

    app = fastapi.FastAPI(title="rerank-plugins", lifespan=lifespan)
    app.state.rerank = state

    def error_response(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> Any:
        return JSONResponse(
            {"message": message, "error": message, "error_type": error_type}, status_code=status, headers=headers
        )

    @app.exception_handler(_ApiError)
    async def api_error(request: fastapi.Request, exc: _ApiError) -> Any:
        return error_response(exc.status, exc.message, exc.error_type, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: fastapi.Request, exc: RequestValidationError) -> Any:
        problems = []
        for err in exc.errors():
            # Drop "body" and the union-member tags pydantic puts in a location ("str", "CohereDocument").
            loc = [str(p) for p in err.get("loc", ()) if p != "body" and not _is_type_tag(p)]
            field = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".") or "body"
            problems.append(f"{field}: {err.get('msg', 'invalid')}")
        return error_response(422, "; ".join(problems[:5]) or "invalid request", "validation")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: fastapi.Request, exc: StarletteHTTPException) -> Any:
        return error_response(exc.status_code, str(exc.detail), "http", dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: fastapi.Request, exc: Exception) -> Any:
        logger.exception("unexpected error on %s", request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}", "internal")

    @app.middleware("http")
    async def observe(request: fastapi.Request, call_next: Callable[..., Any]) -> Any:
        start = time.perf_counter()
        metrics.in_flight.inc()
        try:
            response = await call_next(request)
        finally:
            metrics.in_flight.dec()
        path = request.url.path if request.url.path in known_paths else "other"
        metrics.requests.labels(path=path, status=str(response.status_code)).inc()
        metrics.latency.labels(path=path).observe(time.perf_counter() - start)
        return response

    def authorize(request: fastapi.Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise _ApiError(401, "missing or wrong API key (send 'Authorization: Bearer <key>')", "auth",
                            {"WWW-Authenticate": "Bearer"})

    def loaded() -> "Reranker":
        if state.reranker is None:
            message = f"the model failed to load: {state.load_error}" if state.load_error else "the model is loading"
            raise _ApiError(503, message, "unavailable", retry)
        return state.reranker

    def check_limits(query: str, documents: list[str], field: str) -> None:
        s = settings
        if len(documents) > s.max_documents:
            raise _ApiError(413, f"{field}: {len(documents)} documents exceed max_documents={s.max_documents}",
                            "limit")
        total = len(query)
        for i, doc in enumerate(documents):
            if len(doc) > s.max_document_chars:
                raise _ApiError(
                    413, f"{field}[{i}]: {len(doc)} characters exceed max_document_chars={s.max_document_chars}",
                    "limit",
                )
            total += len(doc)
        if total > s.max_total_chars:
            raise _ApiError(413, f"the request's {total} characters exceed max_total_chars={s.max_total_chars}",
                            "limit")

    async def rank(query: str, documents: list[str]) -> "list[Result]":
        if not documents:
            return []
        try:
            return await state.queue.submit(query, documents)
        except QueueFull as exc:
            raise _ApiError(503, f"{exc}; retry later", "overloaded", retry) from None
        except QueueClosed as exc:
            raise _ApiError(503, str(exc), "unavailable", retry) from None

    @app.post("/rerank", response_model=list[TEIRank], response_model_exclude_none=True)
    async def rerank_tei(body: TEIRerankRequest, request: fastapi.Request) -> list[TEIRank]:
        """text-embeddings-inference's rerank: every text, best first."""
        authorize(request)
        reranker_ = loaded()
        check_limits(body.query, body.texts, "texts")
        if not body.truncate:
            counts = await asyncio.to_thread(state.token_counts, body.query, body.texts, False)
            for i, n in enumerate(counts):
                if n > reranker_.max_length:
                    raise _ApiError(
                        413, f"texts[{i}]: the pair has {n} tokens, more than max_length={reranker_.max_length} "
                             "(send truncate: true to truncate it)", "limit",
                    )
        results = await rank(body.query, body.texts)
        return [
            TEIRank(index=r.index, score=r.logit if body.raw_scores else r.score,
                    text=r.text if body.return_text else None)
            for r in results
        ]

    @app.post("/v1/rerank", response_model=CohereRerankResponse, response_model_exclude_none=True)
    async def rerank_cohere(body: CohereRerankRequest, request: fastapi.Request) -> CohereRerankResponse:
        """Cohere's rerank: the ``top_n`` best (all by default) with the served normalisation."""
        authorize(request)
        reranker_ = loaded()
        texts = [d.text if isinstance(d, CohereDocument) else d for d in body.documents]
        check_limits(body.query, texts, "documents")
        results, counts = await asyncio.gather(
            rank(body.query, texts), asyncio.to_thread(state.token_counts, body.query, texts, True)
        )
        results = select_results(results, top_n=body.top_n)
        return CohereRerankResponse(
            model=settings.model_name or reranker_.model_id,
            results=[
                CohereResult(index=r.index, relevance_score=r.score,
                             document=CohereDocument(text=r.text) if body.return_documents else None)
                for r in results
            ],
            usage=CohereUsage(total_tokens=sum(counts)),
        )

    @app.get("/health")
    async def health() -> Any:
        """200 once the model is loaded; 503 (with the reason) before, or when loading failed."""
        if state.reranker is None:
            status = "failed" if state.load_error else "loading"
            message = state.load_error or "the model is loading"
            return JSONResponse({"status": status, "message": message}, status_code=503, headers=retry)
        return {"status": "ok"}

    @app.get("/info")
    async def info(request: fastapi.Request) -> dict[str, Any]:
        """The model and the limits (``max_client_batch_size`` is TEI's name for the documents limit)."""
        authorize(request)
        r = loaded()
        limits = {k: v for k, v in asdict(settings).items() if k not in ("api_key_env", "model_name")}
        return {
            "model_id": settings.model_name or r.model_id,
            "kind": r.kind,
            "dtype": None if r.dtype is None else str(r.dtype).removeprefix("torch."),
            "device": None if r.device is None else str(r.device),
            "max_length": r.max_length,
            "max_input_length": r.max_length,
            "normalize": r.normalize,
            "max_batch_tokens": r.max_batch_tokens,
            "max_client_batch_size": settings.max_documents,
            "model_type": {"reranker": {}},
            "limits": limits,
        }

    @app.get("/metrics")
    async def prometheus() -> Any:
        """Prometheus text: requests by path and status, pairs scored, latency, queue depth, batch sizes."""
        metrics.queue_depth.set(state.queue.depth if state.queue is not None else 0)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    known_paths = {"/rerank", "/v1/rerank", "/health", "/info", "/metrics"}
    return app
