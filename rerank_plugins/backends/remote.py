"""A reranking server as a backend: ``Reranker("http://host:port")`` (``kind="remote"``).

Two wire formats cover the servers in use:

* ``"tei"``: text-embeddings-inference's ``POST /rerank`` (``{"query", "texts", "raw_scores"}`` in,
  ``[{"index", "score"}]`` out). This package's ``rerank-plugins serve`` speaks it too. The backend
  asks for ``raw_scores: true``, so ``Reranker.normalize`` means exactly what it means in-process.
* ``"cohere"``: ``POST /v1/rerank`` (Cohere, Jina, vLLM, Infinity, this package's server):
  ``{"query", "documents", "top_n"}`` in, ``{"results": [{"index", "relevance_score"}]}`` out.
  These APIs return a *relevance score*, not a logit: Cohere's is calibrated to [0, 1], vLLM's and
  Infinity's are the sigmoid of a 1-label cross-encoder's logit, this package's is its served
  normalisation. A response whose scores all lie in [0, 1] is read as probabilities and turned into
  logits (``log(p / (1 - p))``), so ``normalize="sigmoid"`` (the default) gives back the server's
  relevance scores and ``normalize="none"`` their logits; scores outside [0, 1] are taken as logits
  as they are.

Results are mapped by ``index``, never by position; requests are cut to the server's batch limit
(``max_client_batch_size`` from ``GET /info`` when the server has it, else ``batch_size``); connection
errors, 429 and 503 are retried with bounded exponential backoff (``Retry-After`` honoured up to the
cap); every request has a timeout. One ``httpx.Client`` and one ``httpx.AsyncClient`` per event loop
keep their connection pools across calls.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from rerank_plugins.errors import ModelLoadError, RemoteError, missing_extra

if TYPE_CHECKING:
    import httpx
    import numpy as np

__all__ = ["APIS", "RemoteBackend"]

logger = logging.getLogger(__name__)

APIS: tuple[str, ...] = ("auto", "tei", "cohere")
_RETRY_STATUS = frozenset({429, 503})
DEFAULT_CHUNK = 32
_DEFAULT_PATH = {"tei": "/rerank", "cohere": "/v1/rerank"}


@dataclass(frozen=True)
class _Chunk:
    """One HTTP request: a query, its texts, and where each text's score goes in the output."""

    query: str
    texts: list[str]
    positions: list[int]


class RemoteBackend:
    """A reranking server reached over HTTP; scores come back as float32 logits in input order.

    Args:
        url: the server, ``http(s)://host:port`` (the endpoint path is chosen by ``api``) or a full
            endpoint URL such as ``https://api.example.com/v2/rerank``. A ``?model=NAME`` query is
            sent as the request's ``model`` field (Cohere-shaped APIs that serve several models).
        api: ``"auto"`` (``GET /info`` answering like text-embeddings-inference: ``"tei"``;
            otherwise ``"cohere"``), ``"tei"`` or ``"cohere"``.
        api_key: sent as ``Authorization: Bearer <api_key>``; never logged.
        timeout: seconds for each HTTP request.
        batch_size: texts per request when the server states no limit (``None``: 32, TEI's default).
        max_retries: retries after a connection error, 429 or 503 (then the error is raised).
        backoff: the first retry's delay in seconds; doubled each retry, at most ``max_backoff``.

    Raises:
        ModelLoadError: the server cannot be reached, or ``api="auto"`` cannot tell its API.

    Example:
        >>> backend = RemoteBackend("http://127.0.0.1:8080")  # doctest: +SKIP
        >>> backend.score_pairs(["q", "q"], ["a passage", "another"])  # doctest: +SKIP
        array([ 2.1, -3.4], dtype=float32)
    """

    kind = "remote"

    def __init__(
        self,
        url: str,
        *,
        api: str = "auto",
        api_key: str | None = None,
        timeout: float = 60.0,
        batch_size: int | None = None,
        max_retries: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - httpx comes with the serve extra
            raise missing_extra("httpx", "serve", exc) from None
        if api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}; got {api!r}")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ValueError("api_key must be a non-empty str or None")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"a remote reranker needs an http:// or https:// URL, got {url!r}")
        self.url = url
        self._root = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path.rstrip("/")
        self._model_name: str | None = (parse_qs(parts.query).get("model") or [None])[0]
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.lock = threading.Lock()  # API parity with local backends; HTTP calls need no lock
        self.tokenizer: Any = None
        self.max_positions: int | None = None
        self.max_length: int | None = None
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(self.timeout)
        self._client = httpx.Client(base_url=self._root, headers=self._headers, timeout=self._timeout)
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self.info: dict[str, Any] = {}
        # TEI's default limit; a Reranker passes its own batch_size (None unless the user set one).
        self.chunk_size: int = batch_size or DEFAULT_CHUNK
        self.api = self._probe(api)
        self.endpoint = self._path or _DEFAULT_PATH[self.api]
        self.model_id = url  # Reranker(model_id) reaches the same server again
        self.served_model: str | None = self.info.get("model_id") or self._model_name
        logger.info("remote reranker %s: api=%s endpoint=%s chunk=%d", url, self.api, self.endpoint, self.chunk_size)

    # ------------------------------------------------------------------ discovery

    def _probe(self, api: str) -> str:
        """Read ``GET /info`` (limits, model id); decide the API when ``api="auto"``."""
        import httpx

        try:
            response = self._send_sync("GET", "/info", None)
        except RemoteError as exc:
            if exc.status not in (404, 405, 501):  # unreachable, refused, not ready: fail like a model that cannot load
                raise ModelLoadError(f"could not use the remote reranker {self.url!r}: {exc}") from None
            response = None  # no /info: not text-embeddings-inference
        except httpx.HTTPError as exc:
            raise ModelLoadError(f"could not reach the remote reranker {self.url!r}: {exc}") from None
        info: dict[str, Any] = {}
        if response is not None:
            try:
                data = response.json()
            except ValueError:
                data = None
            if isinstance(data, dict):
                info = data
        self.info = info
        tei_like = "max_client_batch_size" in info or "model_type" in info
        limit = info.get("max_client_batch_size")
        if isinstance(limit, int) and limit > 0:
            self.chunk_size = limit
        length = info.get("max_input_length", info.get("max_length"))
        if isinstance(length, int) and length > 0:
            self.max_length = length
        if api != "auto":
            return api
        if tei_like:
            return "tei"
        if not self._path:
            self._path = self._openai_style_path()
        return "cohere"

    def _openai_style_path(self) -> str:
        """Infinity and vLLM list their models at ``/models`` and rerank at ``/rerank``; others: ``/v1/rerank``."""
        try:
            response = self._send_sync("GET", "/models", None)
            data = response.json()
        except (RemoteError, ValueError):
            return _DEFAULT_PATH["cohere"]
        models = data.get("data") if isinstance(data, dict) else None
        if isinstance(models, list) and models:
            if self._model_name is None and isinstance(models[0], dict) and isinstance(models[0].get("id"), str):
                self._model_name = models[0]["id"]
            return "/rerank"
        return _DEFAULT_PATH["cohere"]

    # ------------------------------------------------------------------ scoring

    def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        """One raw float32 logit per (query, document) pair, in input order.

        Raises:
            RemoteError: the server refused the request or answered something unreadable.
        """
        import numpy as np

        out = np.full(len(documents), np.nan, dtype=np.float32)
        for chunk in self._chunks(queries, documents):
            response = self._send_sync("POST", self.endpoint, self._body(chunk))
            self._place(out, chunk, response)
        return out

    async def ascore_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        """:meth:`score_pairs` on ``httpx.AsyncClient``: no thread; chunks are sent concurrently."""
        import numpy as np

        out = np.full(len(documents), np.nan, dtype=np.float32)
        chunks = self._chunks(queries, documents)
        responses = await asyncio.gather(*(self._send_async(self.endpoint, self._body(c)) for c in chunks))
        for chunk, response in zip(chunks, responses, strict=True):
            self._place(out, chunk, response)
        return out

    def _chunks(self, queries: list[str], documents: list[str]) -> list[_Chunk]:
        """Runs of one query, cut to the server's limit: one request each."""
        chunks: list[_Chunk] = []
        start = 0
        n = len(documents)
        while start < n:
            end = start + 1
            while end < n and end - start < self.chunk_size and queries[end] == queries[start]:
                end += 1
            chunks.append(_Chunk(queries[start], documents[start:end], list(range(start, end))))
            start = end
        return chunks

    def _body(self, chunk: _Chunk) -> dict[str, Any]:
        if self.api == "tei":
            return {"query": chunk.query, "texts": chunk.texts, "raw_scores": True, "return_text": False,
                    "truncate": True}
        body: dict[str, Any] = {"query": chunk.query, "documents": chunk.texts, "top_n": len(chunk.texts),
                                "return_documents": False}
        if self._model_name is not None:
            body["model"] = self._model_name
        return body

    def _place(self, out: np.ndarray, chunk: _Chunk, response: httpx.Response) -> None:
        """Write each result's logit at its ``index`` (every index exactly once, or an error)."""
        try:
            data = response.json()
        except ValueError:
            raise RemoteError(f"{self.url}{self.endpoint} answered non-JSON: {response.text[:200]!r}") from None
        if self.api == "tei":
            items, key = data, "score"
        else:
            items, key = (data.get("results") if isinstance(data, dict) else None), "relevance_score"
        n = len(chunk.texts)
        if not isinstance(items, list):
            raise RemoteError(f"{self.url}{self.endpoint} answered an unexpected body: {str(data)[:200]}")
        scores: list[float | None] = [None] * n
        for item in items:
            index = item.get("index") if isinstance(item, dict) else None
            value = item.get(key) if isinstance(item, dict) else None
            if (
                isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n
                or scores[index] is not None or isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise RemoteError(f"{self.url}{self.endpoint}: bad or repeated result {str(item)[:200]} for {n} texts")
            scores[index] = float(value)
        missing = [i for i, s in enumerate(scores) if s is None]
        if missing:
            raise RemoteError(f"{self.url}{self.endpoint} returned no score for texts {missing[:10]} of {n}")
        values: list[float] = scores  # type: ignore[assignment]
        if self.api == "cohere" and all(0.0 <= v <= 1.0 for v in values):
            values = [_logit(v) for v in values]
        for pos, value in zip(chunk.positions, values, strict=True):
            out[pos] = value

    # ------------------------------------------------------------------ HTTP with retries

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        delay = min(self.max_backoff, self.backoff * 2**attempt)
        if response is not None:
            try:
                delay = min(self.max_backoff, max(0.0, float(response.headers.get("Retry-After", delay))))
            except ValueError:
                pass
        return delay

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            body = response.json()
            message = body.get("message") or body.get("error") or body.get("detail") if isinstance(body, dict) else body
        except ValueError:
            message = response.text[:200]
        raise RemoteError(
            f"{self.url}{response.request.url.path} answered {response.status_code}: {message}",
            status=response.status_code,
        )

    def _send_sync(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        import httpx

        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._client.request(method, path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise RemoteError(f"{self.url}: {type(exc).__name__}: {exc}") from None
                time.sleep(self._delay(attempt, None))
                continue
            except httpx.TimeoutException:
                raise RemoteError(f"{self.url}{path}: no answer within {self.timeout:g} s") from None
            if response.status_code in _RETRY_STATUS and not last:
                time.sleep(self._delay(attempt, response))
                continue
            return self._check(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _async_client(self) -> httpx.AsyncClient:
        import httpx

        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = httpx.AsyncClient(base_url=self._root, headers=self._headers, timeout=self._timeout)
            self._aclients[loop] = client
        return client

    async def _send_async(self, path: str, body: dict[str, Any]) -> httpx.Response:
        import httpx

        client = self._async_client()
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = await client.post(path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise RemoteError(f"{self.url}: {type(exc).__name__}: {exc}") from None
                await asyncio.sleep(self._delay(attempt, None))
                continue
            except httpx.TimeoutException:
                raise RemoteError(f"{self.url}{path}: no answer within {self.timeout:g} s") from None
            if response.status_code in _RETRY_STATUS and not last:
                await asyncio.sleep(self._delay(attempt, response))
                continue
            return self._check(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the synchronous connection pool (async pools close with their event loop)."""
        self._client.close()

    def __repr__(self) -> str:
        return f"RemoteBackend(url={self.url!r}, api={self.api!r}, endpoint={self.endpoint!r})"


def _logit(p: float) -> float:
    """Inverse sigmoid, kept finite at 0 and 1 (clamped to [1e-12, 1 - 1e-12])."""
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return math.log(p) - math.log1p(-p)
