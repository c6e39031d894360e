"""The framework-neutral reranker: one scoring loop behind every front door."""

from __future__ import annotations

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
    ScoringOptions,
    detect_kind,
    load_backend,
    resolve_device,
    resolve_dtype,
    resolve_model_id,
)

if TYPE_CHECKING:
    import numpy as np

    from rerank_plugins.backends.base import Backend

__all__ = ["NORMALIZATIONS", "Normalize", "Reranker", "Result", "select_results"]

logger = logging.getLogger(__name__)

Normalize = Literal["none", "sigmoid", "softmax"]
NORMALIZATIONS: tuple[str, ...] = ("none", "sigmoid", "softmax")
# Used only when a model states no length limit at all.
_FALLBACK_MAX_LENGTH = 512
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
        logit: the raw model logit, whatever the normalisation.
        text: the document text.
    """

    index: int
    score: float
    logit: float
    text: str


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


class Reranker:
    """Score and reorder documents for a query with a cross-encoder-style model.

    One API over three families: sentence-transformers ``CrossEncoder`` models,
    ``AutoModelForSequenceClassification`` rerankers (bge-reranker-v2-m3,
    ko-reranker) and LLM yes-logit rerankers (bge-reranker-v2-gemma). Models are
    shared: a second ``Reranker`` over the same (model, kind, device, dtype)
    reuses the loaded weights, and instances are safe to use from several
    threads.

    Args:
        model: a local model directory or a Hugging Face hub name.
        kind: ``"auto"`` (decide from the model's files), ``"cross-encoder"``,
            ``"sequence-classification"`` or ``"llm-yes"``.
        normalize: ``"sigmoid"`` (default; a score in [0, 1], as
            sentence-transformers' ``Sigmoid`` activation and bge's
            ``normalize=True``), ``"none"`` (the raw logit) or ``"softmax"``
            (over one query's candidates: ``exp(x - max) / sum``). The raw logit
            is always on ``Result.logit``.
        batch_size: pairs per forward pass.
        max_length: truncation length in tokens. ``None`` uses the family
            default: the CrossEncoder's own limit, 512 for sequence
            classification (the published usage), 1024 for LLM rerankers; never
            more than the model's position limit.
        device: ``"auto"`` picks cuda, then mps, then cpu; or any torch device string.
        dtype: ``None`` (float32), ``"float32"``, ``"float16"`` or ``"bfloat16"``
            (or a ``torch.dtype``).
        prompt: LLM rerankers only: the instruction after the pair.
        query_prefix: LLM rerankers only: text before the query (default ``"A: "``).
        passage_prefix: LLM rerankers only: text before the passage (default ``"B: "``).

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
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | Any = "auto",
        dtype: str | Any = None,
        prompt: str | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
    ) -> None:
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}; got {normalize!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        if kind != "auto" and kind not in KINDS:
            raise ValueError(f"kind must be 'auto' or one of: {', '.join(KINDS)}; got {kind!r}")
        for name, value in (
            ("prompt", prompt), ("query_prefix", query_prefix), ("passage_prefix", passage_prefix)
        ):
            if value is not None:
                check_text(value, name)

        self.model_id = resolve_model_id(model)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.kind = detect_kind(self.model_id) if kind == "auto" else kind
        if self.kind != "llm-yes" and any(
            v is not None for v in (prompt, query_prefix, passage_prefix)
        ):
            raise ValueError(
                f"prompt, query_prefix and passage_prefix apply to kind='llm-yes' only; "
                f"this model is {self.kind!r}"
            )
        self.normalize: Normalize = normalize
        self.batch_size = batch_size
        self._backend: Backend = load_backend(self.model_id, self.kind, self.device, self.dtype)

        limit = self._backend.max_positions
        if max_length is None:
            max_length = self._backend.default_max_length or limit or _FALLBACK_MAX_LENGTH
        elif limit is not None and max_length > limit:
            raise ValueError(
                f"max_length={max_length} exceeds the model's limit of {limit} positions"
            )
        self.max_length: int = max_length
        self._options = ScoringOptions(
            max_length=max_length,
            prompt=prompt,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
        )
        minimum = self._backend.min_max_length(self._options)
        if max_length < minimum:
            raise ValueError(
                f"max_length={max_length} is below the minimum of {minimum} tokens for this "
                f"{self.kind} model: its special and template tokens plus one token of the query "
                f"and one of the document"
            )

    def options(self) -> dict[str, Any]:
        """The constructor keyword arguments of this reranker: ``Reranker(**r.options())`` rebuilds it.

        Values are JSON-serialisable (the device and dtype as strings) and resolved
        (``kind``, ``max_length``, ``device`` and ``dtype`` as in effect, never ``"auto"``
        or ``None``), so a rebuilt reranker scores exactly like this one. The
        framework adapters serialise a reranker through this, and pickling or
        copying a Reranker uses it too (the copy shares the loaded model).

        Example:
            >>> Reranker("cross-encoder/ms-marco-MiniLM-L-12-v2").options()  # doctest: +SKIP
            {'model': 'cross-encoder/ms-marco-MiniLM-L-12-v2', 'kind': 'cross-encoder', 'normalize': 'sigmoid',
             'batch_size': 32, 'max_length': 512, 'device': 'cpu', 'dtype': 'float32', 'prompt': None,
             'query_prefix': None, 'passage_prefix': None}
        """
        return {
            "model": self.model_id,
            "kind": self.kind,
            "normalize": self.normalize,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
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
        return self._normalize(self._logits([query] * len(documents), documents)).tolist()

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
        logits = self._logits(flat_q, flat_d, show_progress=show_progress)
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
        """
        import asyncio

        return await asyncio.to_thread(self.rerank, query, documents, top_n, score_threshold=score_threshold)

    async def ascore(self, query: str, documents: Sequence[str]) -> list[float]:
        """:meth:`score` run in a worker thread, so the event loop stays free."""
        import asyncio

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
        logits = self._logits(queries, documents, show_progress=show_progress)
        ranked: list[list[Result]] = []
        for a, b in bounds:
            raw = logits[a:b].tolist()
            scores = self._normalize(logits[a:b]).tolist()
            # Stable sort: ties keep input order; a NaN score sorts last.
            order = sorted(range(b - a), key=lambda i: math.inf if math.isnan(scores[i]) else -scores[i])
            results = [Result(index=i, score=scores[i], logit=raw[i], text=documents[a + i]) for i in order]
            ranked.append(select_results(results, top_n=top_n, score_threshold=score_threshold))
        return ranked

    def _logits(
        self, queries: list[str], documents: list[str], *, show_progress: bool | None = None
    ) -> np.ndarray:
        """Raw logits in input order: length-sort, batch, score, restore order."""
        import numpy as np

        n = len(documents)
        out = np.empty(n, dtype=np.float32)
        if n == 0:
            return out
        import torch
        from tqdm.auto import tqdm

        backend = self._backend
        with backend.lock:
            lengths, truncated = backend.measure(queries, documents, self._options)
        n_truncated = sum(truncated)
        if n_truncated:
            logger.warning(
                "%d of %d pairs exceed max_length=%d tokens and were truncated",
                n_truncated, n, self.max_length,
            )
        # Longest first: the largest batch runs first, so memory errors surface at once.
        order = sorted(range(n), key=lambda i: -lengths[i])
        starts = range(0, n, self.batch_size)
        if show_progress is None:
            disable: bool | None = True if len(starts) < 2 else None  # None: only on a terminal
        else:
            disable = not show_progress
        for start in tqdm(starts, desc="Reranking", unit="batch", disable=disable):
            idx = order[start : start + self.batch_size]
            batch_q = [queries[i] for i in idx]
            batch_d = [documents[i] for i in idx]
            with backend.lock, torch.inference_mode():
                logits = backend.score_batch(batch_q, batch_d, self._options)
            out[idx] = logits.numpy()
        return out

    def _normalize(self, logits: np.ndarray) -> np.ndarray:
        import torch

        if self.normalize == "none" or len(logits) == 0:
            return logits
        tensor = torch.from_numpy(logits)
        if self.normalize == "sigmoid":
            return torch.sigmoid(tensor).numpy()
        return torch.softmax(tensor, dim=0).numpy()

    def __repr__(self) -> str:
        return (
            f"Reranker(model={self.model_id!r}, kind={self.kind!r}, normalize={self.normalize!r}, "
            f"batch_size={self.batch_size}, max_length={self.max_length}, "
            f"device={str(self.device)!r}, dtype={str(self.dtype).removeprefix('torch.')!r})"
        )



def _restore_reranker(cls: type[Reranker], options: dict[str, Any]) -> Reranker:
    """Unpickle a :class:`Reranker` from its :meth:`Reranker.options`."""
    return cls(**options)
