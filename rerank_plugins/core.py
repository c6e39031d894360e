"""The framework-neutral reranker: one scoring loop behind every front door."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rerank_plugins._validation import (
    check_documents,
    check_query,
    check_score_threshold,
    check_text,
    check_top_n,
    is_blank,
)
from rerank_plugins.backends.base import (
    KINDS,
    Row,
    ScoringOptions,
    detect_kind,
    load_backend,
    resolve_device,
    resolve_dtype,
    resolve_model_id,
)
from rerank_plugins.backends.engines import resolve_engine
from rerank_plugins.backends.llm_yes import TEMPLATES

if TYPE_CHECKING:
    import numpy as np

    from rerank_plugins.backends.base import Backend, PairEncoding

__all__ = [
    "NORMALIZATIONS", "OVERFLOWS", "Normalize", "Reranker", "Result", "rank_order", "select_results", "token_batches",
]

logger = logging.getLogger(__name__)

Normalize = Literal["none", "sigmoid", "softmax"]
NORMALIZATIONS: tuple[str, ...] = ("none", "sigmoid", "softmax")
# Used only when a model states no length limit at all.
_FALLBACK_MAX_LENGTH = 512
# Tokens per forward pass, padding included (32 pairs of 512 tokens).
# Tokens per forward pass, padding included. On CPU, 4,096 measured 1.5x faster than
# 16,384 (torch float32 and bfloat16, ms-marco-MiniLM-L-12-v2): larger batches push
# the attention matrices out of cache. GPUs want wide batches.
DEFAULT_MAX_BATCH_TOKENS = 16384
CPU_MAX_BATCH_TOKENS = 4096
OVERFLOWS: tuple[str, ...] = ("window", "truncate")
# Tokens shared by consecutive windows (measured: benchmarks/bench_long_passages.py).
DEFAULT_STRIDE = 128
DEFAULT_MAX_WINDOWS = 32
_REMOTE = "remote"


def _is_url(model: Any) -> bool:
    return isinstance(model, str) and model.lower().startswith(("http://", "https://"))
# An empty query is logged once per process, not once per call.
_blank_query_reported = False


def _note_blank_query(query: str, name: str) -> None:
    global _blank_query_reported
    if not _blank_query_reported and is_blank(query):
        _blank_query_reported = True
        logger.warning(
            "%s is empty or whitespace only: every document is scored against nothing, so the scores "
            "say nothing about relevance (reported once)", name,
        )


@dataclass(frozen=True, slots=True)
class Result:
    """One reranked document.

    Attributes:
        index: position of the document in the input list.
        score: the normalised score (see ``Reranker.normalize``).
        logit: the raw model logit, whatever the normalisation (for a long
            passage scored in windows: the best window's; for Qwen3-Reranker the
            log-odds ``logit("yes") - logit("no")``, whose sigmoid is the card's probability).
        text: the document text.
        windows: how many windows of the passage were scored (1 when the pair fit).
        span: ``(start, end)`` character offsets, in ``text``, of the best
            window (the whole text when the pair fit; the kept part when truncated).
        truncated: True only when text was not scored: ``overflow="truncate"``
            cut the pair, or the passage needed more than ``max_windows`` windows.
    """

    index: int
    score: float
    logit: float
    text: str
    windows: int = 1
    span: tuple[int, int] = (0, 0)
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class _Scored:
    """Per-pair outcome of the loop, in input order."""

    logits: np.ndarray
    windows: list[int]
    spans: list[tuple[int, int]]
    truncated: list[bool]

    @classmethod
    def whole(cls, logits: np.ndarray, documents: Sequence[str]) -> _Scored:
        """Logits scored elsewhere (a server): one window per document, spanning it."""
        n = len(documents)
        return cls(logits, [1] * n, [(0, len(d)) for d in documents], [False] * n)


def select_results(
    results: Sequence[Result], *, top_n: int | None = None, score_threshold: float | None = None
) -> list[Result]:
    """Cut results sorted best first: drop those under ``score_threshold``, then keep ``top_n``.

    The one place where rerankers and the framework adapters apply a threshold
    and a top-n. A NaN score never passes a threshold.

    Example:
        >>> rs = [Result(1, 0.9, 2.2, "b"), Result(0, 0.4, -0.4, "a"), Result(2, 0.1, -2.2, "c")]
        >>> [r.index for r in select_results(rs, top_n=2, score_threshold=0.3)]
        [1, 0]
    """
    if score_threshold is not None:
        results = [r for r in results if r.score >= score_threshold]
    return list(results[:top_n])


def _char_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Character span of passage tokens ``[start, end)`` from their offsets."""
    if end <= start or not offsets:
        return (0, 0)
    return (offsets[start][0], offsets[min(end, len(offsets)) - 1][1])


def is_out_of_memory(error: BaseException) -> bool:
    """True for an allocation failure: ``torch.OutOfMemoryError`` or the CPU allocator's RuntimeError."""
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in text or "DefaultCPUAllocator" in text or "out of memory" in text.lower()
    )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def next_batch_end(lengths: Sequence[int], start: int, *, max_tokens: int, max_rows: int | None = None) -> int:
    """Where the batch starting at ``start`` ends, for rows sorted longest first.

    A batch pads to its first (longest) row, so it costs ``rows x first length``;
    a row longer than ``max_tokens`` gets a batch of its own.
    """
    fit = max(1, max_tokens // max(lengths[start], 1))
    if max_rows is not None:
        fit = min(fit, max_rows)
    return min(len(lengths), start + fit)


def token_batches(lengths: Sequence[int], *, max_tokens: int, max_rows: int | None = None) -> list[tuple[int, int]]:
    """Cut rows sorted longest first into ``(start, end)`` batches of at most ``max_tokens`` padded tokens.

    Example:
        >>> token_batches([300, 200, 100, 100], max_tokens=500)
        [(0, 1), (1, 3), (3, 4)]
    """
    batches: list[tuple[int, int]] = []
    start = 0
    while start < len(lengths):
        end = next_batch_end(lengths, start, max_tokens=max_tokens, max_rows=max_rows)
        batches.append((start, end))
        start = end
    return batches


def rank_order(scores: Sequence[float]) -> list[int]:
    """Positions of ``scores`` best first: the one ordering rule of every reranked list.

    A stable sort, so ties keep input order; a NaN score sorts last. Ordering a
    prefix of a candidate list by its scores gives exactly the list a rerank of
    that prefix alone would give (softmax is monotonic within a list).

    Example:
        >>> rank_order([0.2, 0.9, float("nan"), 0.9])
        [1, 3, 0, 2]
    """
    return sorted(range(len(scores)), key=lambda i: math.inf if math.isnan(scores[i]) else -scores[i])


class Reranker:
    """Score and reorder documents for a query with a cross-encoder-style model.

    One API over three families: sentence-transformers ``CrossEncoder`` models,
    ``AutoModelForSequenceClassification`` rerankers (bge-reranker-v2-m3,
    ko-reranker) and LLM yes/no rerankers (bge-reranker-v2-gemma,
    Qwen3-Reranker). Models are
    shared: a second ``Reranker`` over the same (model, kind, device, dtype)
    reuses the loaded weights, and instances are safe to use from several
    threads.

    Args:
        model: a local model directory or a Hugging Face hub name.
        kind: ``"auto"`` (decide from the model's files; an ``http(s)://`` URL is
            ``"remote"``), ``"cross-encoder"``, ``"sequence-classification"``,
            ``"llm-yes"`` or ``"remote"`` (a reranking server: this package's
            ``rerank-plugins serve``, text-embeddings-inference, Infinity, vLLM or a
            Cohere-compatible API; see :class:`~rerank_plugins.backends.remote.RemoteBackend`).
        normalize: ``"sigmoid"`` (default; a score in [0, 1], as
            sentence-transformers' ``Sigmoid`` activation and bge's
            ``normalize=True``), ``"none"`` (the raw logit) or ``"softmax"``
            (over one query's candidates: ``exp(x - max) / sum``). The raw logit
            is always on ``Result.logit``.
        batch_size: at most this many pairs per forward pass (``None``: no cap;
            batches are bounded by ``max_batch_tokens``).
        max_batch_tokens: at most this many tokens per forward pass, padding
            included: short pairs fill large batches, long ones stay within memory.
            ``None`` (default): 4,096 on CPU (measured fastest: larger batches
            spill the attention matrices out of cache), 16,384 on a GPU.
        max_length: truncation length in tokens. ``None`` uses the family
            default: the CrossEncoder's own limit, 512 for sequence
            classification (the published usage), 1024 for LLM rerankers; never
            more than the model's position limit.
        device: ``"auto"`` picks cuda, then mps, then cpu; or any torch device string.
        dtype: ``"auto"`` (default: bfloat16 on CPUs with native bf16
            instructions and on CUDA GPUs that support it, float16 on other GPUs,
            float32 elsewhere; :attr:`dtype` tells the choice), ``"float32"``
            (the exact path), ``"float16"`` or ``"bfloat16"`` (or a ``torch.dtype``),
            or ``"int8"`` (OpenVINO with NNCF post-training quantisation,
            calibrated on the first batch this model scores; cached on disk).
        engine: ``"auto"`` (OpenVINO for the cross-encoder and
            sequence-classification families on CPU when the ``fast`` extra is
            installed, else torch), ``"torch"`` or ``"openvino"``.
        overflow: what to do with a pair longer than ``max_length``:
            ``"window"`` (default) cuts the passage into overlapping token
            windows that each fit with the query, scores every window and keeps
            the best (MaxP); ``"truncate"`` cuts it as the published scoring
            code does (exactly its scores).
        stride: tokens shared by consecutive windows.
        max_windows: at most this many windows per passage; text past them is
            not scored (``Result.truncated``, and a warning).
        template: LLM rerankers only: the prompt template, ``"auto"`` (from the
            config's ``model_type``: gemma, gemma2, gemma3 -> ``"bge-gemma"``;
            qwen3 -> ``"qwen3"``), ``"bge-gemma"`` or ``"qwen3"``.
        instruction: the qwen3 template's ``<Instruct>`` (default: the card's
            "Given a web search query, retrieve relevant passages that answer the query").
        prompt: the bge-gemma template only: the instruction after the pair.
        query_prefix: the bge-gemma template only: text before the query (default ``"A: "``).
        passage_prefix: the bge-gemma template only: text before the passage (default ``"B: "``).
        api: remote only: ``"auto"`` (ask the server's ``/info``), ``"tei"`` or ``"cohere"``.
        api_key: remote only: sent as ``Authorization: Bearer ...``.
        timeout: remote only: seconds per HTTP request (default 60).

    Example:
        >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L-12-v2")  # doctest: +SKIP
        >>> [r.index for r in reranker.rerank("capital of France?",
        ...     ["Berlin is in Germany.", "Paris is the capital of France."])]  # doctest: +SKIP
        [1, 0]
    """

    def __init__(
        self,
        model: str | Path,
        *,
        kind: str = "auto",
        normalize: Normalize = "sigmoid",
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        max_length: int | None = None,
        device: str | Any = "auto",
        dtype: str | Any = "auto",
        engine: str = "auto",
        overflow: str = "window",
        stride: int = DEFAULT_STRIDE,
        max_windows: int = DEFAULT_MAX_WINDOWS,
        template: str = "auto",
        instruction: str | None = None,
        prompt: str | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        api: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}; got {normalize!r}")
        if batch_size is not None and not _positive_int(batch_size):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        if max_batch_tokens is not None and not _positive_int(max_batch_tokens):
            raise ValueError(f"max_batch_tokens must be a positive int or None, got {max_batch_tokens!r}")
        if overflow not in OVERFLOWS:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOWS)}; got {overflow!r}")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
            raise ValueError(f"stride must be an int >= 0, got {stride!r}")
        if not _positive_int(max_windows):
            raise ValueError(f"max_windows must be a positive int, got {max_windows!r}")
        if max_length is not None and not _positive_int(max_length):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        if kind != "auto" and kind not in (*KINDS, _REMOTE):
            raise ValueError(f"kind must be 'auto' or one of: {', '.join((*KINDS, _REMOTE))}; got {kind!r}")
        for name, value in (
            ("prompt", prompt), ("query_prefix", query_prefix), ("passage_prefix", passage_prefix),
            ("instruction", instruction),
        ):
            if value is not None:
                check_text(value, name)
        if not isinstance(template, str):
            raise TypeError(f"template must be a str, got {type(template).__name__}")
        if template != "auto" and template not in TEMPLATES:
            raise ValueError(f"template must be 'auto' or one of: {', '.join(TEMPLATES)}; got {template!r}")

        # Resolved for the device below; a remote server batches by its own rules.
        self.max_batch_tokens: int = max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS
        self.overflow = overflow
        self.stride = stride
        self.max_windows = max_windows
        # Lowered (and kept) when a batch runs out of memory.
        self._token_budget = self.max_batch_tokens
        # ---- remote kind (a reranking server): kept apart from the local-model path below.
        if kind == _REMOTE or (kind == "auto" and _is_url(model)):
            self._init_remote(
                model, normalize=normalize, batch_size=batch_size,
                local={"max_length": max_length, "device": device, "dtype": dtype, "engine": engine,
                       "template": template, "instruction": instruction, "prompt": prompt,
                       "query_prefix": query_prefix, "passage_prefix": passage_prefix},
                api=api, api_key=api_key, timeout=timeout,
            )
            return
        for name, value in (("api", api), ("api_key", api_key), ("timeout", timeout)):
            if value is not None:
                raise ValueError(f"{name}= applies to kind='remote' (an http(s):// server) only; got {name}={value!r}")
        # ---- a local model.
        self.model_id = resolve_model_id(model)
        self.device = resolve_device(device)
        if max_batch_tokens is None and self.device.type == "cpu":
            self.max_batch_tokens = self._token_budget = CPU_MAX_BATCH_TOKENS
        self.kind = detect_kind(self.model_id) if kind == "auto" else kind
        self.dtype: str = resolve_dtype(dtype, self.device)
        engine = resolve_engine(engine, kind=self.kind, device=self.device, dtype=self.dtype)
        if self.kind != "llm-yes" and (
            template != "auto" or any(v is not None for v in (instruction, prompt, query_prefix, passage_prefix))
        ):
            raise ValueError(
                f"template, instruction, prompt, query_prefix and passage_prefix apply to kind='llm-yes' only; "
                f"this model is {self.kind!r}"
            )
        self.normalize: Normalize = normalize
        self.batch_size = batch_size
        self._backend: Backend = load_backend(self.model_id, self.kind, self.device, self.dtype, engine)
        self.engine: str = self._backend.engine
        logger.info("%s runs in %s on %s (engine %s)", self.model_id, self.dtype, self.device, self.engine)

        limit = self._backend.max_positions
        if max_length is None:
            max_length = (
                self._backend.default_max_length_for(template if self.kind == "llm-yes" else None)
                or limit or _FALLBACK_MAX_LENGTH
            )
        elif limit is not None and max_length > limit:
            raise ValueError(
                f"max_length={max_length} exceeds the model's limit of {limit} positions"
            )
        self.max_length: int = max_length
        self._options = self._backend.resolve_options(ScoringOptions(
            max_length=max_length,
            prompt=prompt,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            template=template if self.kind == "llm-yes" else None,
            instruction=instruction,
        ))
        # The LLM prompt template in use ("bge-gemma", "qwen3"); None for the other families.
        self.template: str | None = self._options.template
        minimum = self._backend.min_max_length(self._options)
        if max_length < minimum:
            raise ValueError(
                f"max_length={max_length} is below the minimum of {minimum} tokens for this "
                f"{self.kind} model: its special and template tokens plus one token of the query "
                f"and one of the document"
            )

    def _init_remote(
        self, model: Any, *, normalize: Normalize, batch_size: int | None, local: dict[str, Any],
        api: str | None, api_key: str | None, timeout: float | None,
    ) -> None:
        """A reranking server behind the same front doors; never loaded through the model cache."""
        from rerank_plugins.backends.remote import RemoteBackend

        if not _is_url(model):
            raise ValueError(f"kind='remote' needs an http:// or https:// URL, got {model!r}")
        import inspect

        defaults = inspect.signature(Reranker.__init__).parameters
        for name, value in local.items():
            if value != defaults[name].default:
                raise ValueError(f"{name}= does not apply to kind='remote': the server decides it; got {value!r}")
        self._backend = RemoteBackend(  # type: ignore[assignment]
            str(model), api="auto" if api is None else api, api_key=api_key,
            timeout=60.0 if timeout is None else timeout, batch_size=batch_size,
        )
        self.model_id = self._backend.model_id
        self.kind = _REMOTE
        self.device = None
        self.dtype = "remote"
        self.engine = "remote"
        self.template = None
        self.normalize = normalize
        self.batch_size = batch_size
        self.max_length = self._backend.max_length or _FALLBACK_MAX_LENGTH
        self._options = ScoringOptions(max_length=self.max_length)

    def options(self) -> dict[str, Any]:
        """The constructor keyword arguments of this reranker: ``Reranker(**r.options())`` rebuilds it.

        Values are JSON-serialisable and resolved (``kind``, ``max_length``,
        ``device``, ``dtype`` and ``engine`` as in effect, never ``"auto"``), so a
        rebuilt reranker scores exactly like this one. The framework adapters
        serialise a reranker through this, and pickling or copying a Reranker uses
        it too (the copy shares the loaded model). A remote reranker's ``api_key``
        is never included: pass it again (or keep it in the environment).

        Example:
            >>> Reranker("cross-encoder/ms-marco-MiniLM-L-12-v2").options()["dtype"]  # doctest: +SKIP
            'bfloat16'
        """
        common = {"model": self.model_id, "kind": self.kind, "normalize": self.normalize,
                  "batch_size": self.batch_size, "max_batch_tokens": self.max_batch_tokens,
                  "overflow": self.overflow, "stride": self.stride, "max_windows": self.max_windows}
        if self.kind == _REMOTE:
            return {**common, "api": self._backend.api, "timeout": self._backend.timeout}
        return {
            **common,
            "max_length": self.max_length,
            "device": str(self.device),
            "dtype": self.dtype,
            "engine": self.engine,
            "template": self.template or "auto",
            "instruction": self._options.instruction,
            "prompt": self._options.prompt,
            "query_prefix": self._options.query_prefix,
            "passage_prefix": self._options.passage_prefix,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # The loaded model holds locks and weights: pickle the options; unpickling
        # rebuilds the Reranker, reusing the shared model when it is loaded.
        return (_restore_reranker, (type(self), self.options()))

    def __copy__(self) -> Reranker:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Reranker:
        # Every attribute but the shared model is immutable; the model is shared, never copied.
        return self.__copy__()

    # ------------------------------------------------------------------ front doors

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """Score each document against ``query``; scores in input order.

        Example:
            >>> reranker.score("capital of France?", ["Paris is ...", "Berlin is ..."])  # doctest: +SKIP
            [0.98, 0.01]
        """
        query = check_query(query)
        documents = check_documents(documents)
        _note_blank_query(query, "query")
        return self._normalize(self._score([query] * len(documents), documents).logits).tolist()

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        score_threshold: float | None = None,
    ) -> list[Result]:
        """Documents sorted by score, best first (ties keep input order).

        Args:
            query: the query.
            documents: candidate texts.
            top_n: keep this many (``None``: all; more than there are: all).
            score_threshold: first drop documents scoring under this, on the
                ``normalize`` scale (``None``: keep all).

        Raises:
            TypeError: the query or a document is not a str (the message names its position).
            ValueError: ``top_n < 1``; a threshold outside [0, 1] for normalised scores; a text
                holding a lone surrogate (the message names the text and the character position).
        """
        query = check_query(query)
        documents = check_documents(documents)
        _note_blank_query(query, "query")
        return self._rank([query] * len(documents), documents, [(0, len(documents))], top_n, score_threshold)[0]

    def score_many(
        self,
        queries: Sequence[str],
        documents_per_query: Sequence[Sequence[str]],
        *,
        show_progress: bool | None = None,
    ) -> list[list[float]]:
        """Score many queries at once; all pairs are flattened into full batches.

        Args:
            queries: the queries.
            documents_per_query: one candidate list per query.
            show_progress: a tqdm bar over batches; ``None`` shows one on a terminal
                when there is more than one batch.

        Returns:
            One list of scores per query, each in input order. Softmax normalises
            within each query's list.
        """
        flat_q, flat_d, bounds = self._flatten(queries, documents_per_query)
        logits = self._score(flat_q, flat_d, show_progress=show_progress).logits
        return [self._normalize(logits[a:b]).tolist() for a, b in bounds]

    def rerank_many(
        self,
        queries: Sequence[str],
        documents_per_query: Sequence[Sequence[str]],
        top_n: int | None = None,
        *,
        score_threshold: float | None = None,
        show_progress: bool | None = None,
    ) -> list[list[Result]]:
        """:meth:`rerank` for many queries in one pass over full batches."""
        flat_q, flat_d, bounds = self._flatten(queries, documents_per_query)
        return self._rank(flat_q, flat_d, bounds, top_n, score_threshold, show_progress=show_progress)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        score_threshold: float | None = None,
    ) -> list[Result]:
        """:meth:`rerank` run in a worker thread, so the event loop stays free.

        Safe under many concurrent calls: the shared model is used under its lock.
        A remote reranker awaits the server natively (no thread).
        """
        import asyncio

        if self.kind == _REMOTE:
            query = check_query(query)
            documents = check_documents(documents)
            top_n = check_top_n(top_n)
            score_threshold = self.check_score_threshold(score_threshold)
            logits = await self._backend.ascore_pairs([query] * len(documents), documents)
            scored = _Scored.whole(logits, documents)
            return self._ranked(scored, documents, [(0, len(documents))], top_n, score_threshold)[0]
        return await asyncio.to_thread(self.rerank, query, documents, top_n, score_threshold=score_threshold)

    async def ascore(self, query: str, documents: Sequence[str]) -> list[float]:
        """:meth:`score` run in a worker thread (remote: awaited natively), so the event loop stays free."""
        import asyncio

        if self.kind == _REMOTE:
            query = check_query(query)
            documents = check_documents(documents)
            logits = await self._backend.ascore_pairs([query] * len(documents), documents)
            return self._normalize(logits).tolist()
        return await asyncio.to_thread(self.score, query, documents)

    def check_score_threshold(self, value: Any) -> float | None:
        """Validate a threshold for this reranker's scores; return it as a float (or ``None``).

        Raises:
            TypeError: not a number.
            ValueError: NaN, or outside [0, 1] while scores are normalised (such a
                threshold would drop everything or nothing).
        """
        return check_score_threshold(value, self.normalize)

    @property
    def backend(self) -> Backend:
        """The loaded model, shared by every Reranker over the same (model, kind, device, dtype)."""
        return self._backend

    # ------------------------------------------------------------------ the one loop

    @staticmethod
    def _flatten(
        queries: Sequence[str], documents_per_query: Sequence[Sequence[str]]
    ) -> tuple[list[str], list[str], list[tuple[int, int]]]:
        if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence):
            raise TypeError(f"queries must be a sequence of str, got {type(queries).__name__}")
        if isinstance(documents_per_query, (str, bytes)) or not isinstance(documents_per_query, Sequence):
            raise TypeError(
                "documents_per_query must be a sequence of document lists, "
                f"got {type(documents_per_query).__name__}"
            )
        if len(queries) != len(documents_per_query):
            raise ValueError(
                f"got {len(queries)} queries but {len(documents_per_query)} document lists"
            )
        flat_q: list[str] = []
        flat_d: list[str] = []
        bounds: list[tuple[int, int]] = []
        for qi, (query, docs) in enumerate(zip(queries, documents_per_query, strict=True)):
            query = check_query(query, f"queries[{qi}]")
            docs = check_documents(docs, f"documents_per_query[{qi}]")
            _note_blank_query(query, f"queries[{qi}]")
            start = len(flat_d)
            flat_q.extend([query] * len(docs))
            flat_d.extend(docs)
            bounds.append((start, len(flat_d)))
        return flat_q, flat_d, bounds

    def _rank(
        self,
        queries: list[str],
        documents: list[str],
        bounds: list[tuple[int, int]],
        top_n: int | None,
        score_threshold: float | None,
        *,
        show_progress: bool | None = None,
    ) -> list[list[Result]]:
        """Score validated, flattened pairs; one sorted, cut result list per ``(start, end)`` bound."""
        top_n = check_top_n(top_n)
        score_threshold = self.check_score_threshold(score_threshold)
        scored = self._score(queries, documents, show_progress=show_progress)
        return self._ranked(scored, documents, bounds, top_n, score_threshold)

    def _ranked(
        self,
        scored: _Scored,
        documents: list[str],
        bounds: list[tuple[int, int]],
        top_n: int | None,
        score_threshold: float | None,
    ) -> list[list[Result]]:
        """One sorted, cut result list per ``(start, end)`` bound of the scored pairs."""
        logits = scored.logits
        ranked: list[list[Result]] = []
        for a, b in bounds:
            raw = logits[a:b].tolist()
            scores = self._normalize(logits[a:b]).tolist()
            results = [
                Result(
                    index=i, score=scores[i], logit=raw[i], text=documents[a + i], windows=scored.windows[a + i],
                    span=scored.spans[a + i], truncated=scored.truncated[a + i],
                )
                for i in rank_order(scores)
            ]
            ranked.append(select_results(results, top_n=top_n, score_threshold=score_threshold))
        return ranked

    def _score(self, queries: list[str], documents: list[str], *, show_progress: bool | None = None) -> _Scored:
        """Tokenise each pair once; score pairs that fit as they are and long ones by ``overflow``."""
        import numpy as np

        n = len(documents)
        if self.kind == _REMOTE:  # the server tokenises, batches and windows; see backends/remote.py
            return _Scored.whole(self._backend.score_pairs(queries, documents), documents)
        if n == 0:
            return _Scored(np.empty(0, dtype=np.float32), [], [], [])
        backend = self._backend
        with backend.lock:
            pairs = backend.encode(queries, documents, self._options)
        rows: list[Row] = []
        owner: list[int] = []  # the pair each row belongs to
        row_spans: list[tuple[int, int]] = []
        windows, truncated = [1] * n, [False] * n
        cut_windows = 0
        for i, pair in enumerate(pairs):
            whole = (0, len(documents[i]))
            if pair.fits:
                rows.append(pair.row())
                owner.append(i)
                row_spans.append(whole)
                continue
            cuts = self._windows(pair) if self.overflow == "window" else None
            if cuts is None:  # truncate, or no room for a window next to the query
                row, kept = backend.truncated_row(pair, self._options)
                rows.append(row)
                owner.append(i)
                row_spans.append(_char_span(pair.offsets, 0, kept))
                truncated[i] = True
                continue
            head_cut, starts, budget, dropped = cuts
            for start in starts:
                end = min(start + budget, len(pair.body))
                rows.append(pair.row(start, end, head_cut))
                owner.append(i)
                row_spans.append(_char_span(pair.offsets, start, end))
            windows[i] = len(starts)
            truncated[i] = dropped or head_cut > 0
            cut_windows += dropped
        n_truncated = sum(truncated)
        if self.overflow == "truncate" and n_truncated:
            logger.warning(
                "%d of %d pairs exceed max_length=%d tokens and were truncated (overflow='truncate')",
                n_truncated, n, self.max_length,
            )
        elif cut_windows:
            logger.warning(
                "%d of %d passages needed more than max_windows=%d windows of max_length=%d tokens; "
                "the text past the last window was not scored (Result.truncated)",
                cut_windows, n, self.max_windows, self.max_length,
            )
        row_logits = self._forward_rows(rows, show_progress=show_progress)
        best = [-1] * n  # MaxP: a passage scores its best window
        for r, i in enumerate(owner):
            if best[i] < 0 or row_logits[r] > row_logits[best[i]]:
                best[i] = r
        logits = row_logits[best]
        spans = [row_spans[r] for r in best]
        return _Scored(logits, windows, spans, truncated)

    def _windows(self, pair: PairEncoding) -> tuple[int, list[int], int, bool] | None:
        """``(query tokens cut, window starts, tokens per window, windows dropped)``, or None when none fit.

        Windows of ``budget`` passage tokens overlap by ``stride``. When the query
        leaves less than a quarter of ``max_length`` for the passage, the query's
        end is cut to make that room.
        """
        budget, head_cut = pair.budget, 0
        room = max(1, self.max_length // 4)
        if budget < room:
            head_cut = min(pair.query[1] - pair.query[0], room - budget)
            budget += head_cut
        if budget < 1:
            return None
        step = max(budget - self.stride, budget // 2, 1)
        starts = [0]
        while starts[-1] + budget < len(pair.body):
            starts.append(starts[-1] + step)
        dropped = len(starts) > self.max_windows
        return head_cut, starts[: self.max_windows], budget, dropped

    def _forward_rows(self, rows: list[Row], *, show_progress: bool | None = None) -> np.ndarray:
        """One raw logit per row: longest first, in batches bounded by the token budget.

        On an allocation failure (CPU allocator or ``torch.OutOfMemoryError``)
        the batch is halved and retried, and the smaller budget is kept for the
        rest of this reranker's calls; a pair that fails alone is a clear error.
        """
        import numpy as np
        import torch
        from tqdm.auto import tqdm

        out = np.empty(len(rows), dtype=np.float32)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
        lengths = [len(rows[i].ids) for i in order]
        if show_progress is None:
            # None: a bar on a terminal when there is more than one batch.
            single = next_batch_end(lengths, 0, **self._batch_limits()) >= len(lengths)
            disable: bool | None = True if single else None
        else:
            disable = not show_progress
        backend = self._backend
        start = 0
        with tqdm(total=len(rows), desc="Reranking", unit="pair", disable=disable) as bar:
            while start < len(rows):
                end = next_batch_end(lengths, start, **self._batch_limits())
                idx = order[start:end]
                try:
                    with backend.lock, torch.inference_mode():
                        logits = backend.forward([rows[i] for i in idx], self._options)
                except Exception as exc:
                    if not is_out_of_memory(exc):
                        raise
                    self._back_off(exc, rows=end - start, width=lengths[start])
                    continue
                out[idx] = logits.numpy()
                bar.update(end - start)
                start = end
        return out

    def _batch_limits(self) -> dict[str, Any]:
        return {"max_tokens": self._token_budget, "max_rows": self.batch_size}

    def _back_off(self, error: BaseException, *, rows: int, width: int) -> None:
        """Halve the token budget after an allocation failure of a ``rows x width`` batch."""
        if rows == 1:
            raise MemoryError(
                f"one pair of {width} tokens does not fit in memory even alone (batch_size=1); "
                f"lower max_length (now {self.max_length}) or use a smaller dtype. "
                f"The allocator said: {str(error).splitlines()[0][:200]}"
            ) from None
        self._token_budget = max(1, (rows // 2) * width)
        logger.warning(
            "out of memory scoring %d pairs of %d tokens; retrying in smaller batches "
            "(max_batch_tokens %d from now on; set batch_size/max_batch_tokens lower to avoid this)",
            rows, width, self._token_budget,
        )
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _normalize(self, logits: np.ndarray) -> np.ndarray:
        import torch

        if self.normalize == "none" or len(logits) == 0:
            return logits
        tensor = torch.from_numpy(logits)
        if self.normalize == "sigmoid":
            return torch.sigmoid(tensor).numpy()
        return torch.softmax(tensor, dim=0).numpy()

    def __repr__(self) -> str:
        if self.kind == _REMOTE:
            return (
                f"Reranker(model={self.model_id!r}, kind='remote', api={self._backend.api!r}, "
                f"normalize={self.normalize!r})"
            )
        return (
            f"Reranker(model={self.model_id!r}, kind={self.kind!r}, normalize={self.normalize!r}, "
            f"batch_size={self.batch_size}, max_batch_tokens={self.max_batch_tokens}, max_length={self.max_length}, "
            f"overflow={self.overflow!r}, stride={self.stride}, max_windows={self.max_windows}, "
            + (f"template={self.template!r}, " if self.template is not None else "")
            + f"device={str(self.device)!r}, dtype={self.dtype!r}, engine={self.engine!r})"
        )



def reranker_option_names() -> frozenset[str]:
    """The keyword arguments :class:`Reranker` takes besides ``model`` (what ``options()`` may hold)."""
    import inspect

    return frozenset(inspect.signature(Reranker.__init__).parameters) - {"self", "model"}


def _restore_reranker(cls: type[Reranker], options: dict[str, Any]) -> Reranker:
    """Unpickle a :class:`Reranker` from its :meth:`Reranker.options`."""
    return cls(**options)
