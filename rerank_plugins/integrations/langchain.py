"""LangChain adapter: :class:`RerankCompressor`, a document compressor that reranks.

Drop it into ``langchain_classic.retrievers.ContextualCompressionRetriever`` (or
call it from any chain) to reorder a first-stage retriever's candidates with a
:class:`rerank_plugins.Reranker`, keep the best, and record each document's score.

Needs the ``langchain`` extra (``pip install 'rerank-plugins[langchain]'``).

Example:
    >>> from langchain_classic.retrievers import ContextualCompressionRetriever  # doctest: +SKIP
    >>> from rerank_plugins.integrations.langchain import RerankCompressor  # doctest: +SKIP
    >>> retriever = ContextualCompressionRetriever(  # doctest: +SKIP
    ...     base_compressor=RerankCompressor(reranker="cross-encoder/ms-marco-MiniLM-L-12-v2", top_n=3),
    ...     base_retriever=vector_store.as_retriever(search_kwargs={"k": 20}),
    ... )
    >>> retriever.invoke("when did the oil crisis begin?")[0].metadata["relevance_score"]  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rerank_plugins._validation import check_query, check_score_threshold, check_top_n, is_blank, safe_deepcopy
from rerank_plugins.core import Reranker, Result, select_results
from rerank_plugins.errors import missing_extra

try:
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager, Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
except ImportError as exc:  # pragma: no cover - exercised by a test that hides langchain-core
    raise missing_extra("langchain-core", "langchain", exc) from exc

from pydantic import ConfigDict, ValidationInfo, field_serializer, field_validator

__all__ = [
    "PREVIOUS_RELEVANCE_SCORE_KEY",
    "RELEVANCE_SCORE_KEY",
    "RERANK_EVENT",
    "RerankCompressor",
]

logger = logging.getLogger(__name__)

RELEVANCE_SCORE_KEY = "relevance_score"
"""Metadata key of the reranker's score on every returned document."""

RELEVANCE_SPAN_KEY = "relevance_span"
"""Metadata key of the best window's ``(start, end)`` character offsets in ``page_content``."""
RELEVANCE_WINDOWS_KEY = "relevance_windows"
"""Metadata key of how many windows of a long passage were scored (1 when it fit)."""
PREVIOUS_RELEVANCE_SCORE_KEY = "previous_relevance_score"
"""Metadata key that keeps a ``relevance_score`` the document carried in from an earlier stage."""

RERANK_EVENT = "rerank_plugins.rerank"
"""Name of the custom callback event sent with every candidate's score."""


class RerankCompressor(BaseDocumentCompressor):
    """Rerank documents for a query and keep the best, with their scores in the metadata.

    Order of operations: score and sort all documents, drop those scoring under
    ``score_threshold``, then keep the first ``top_n``.

    Every returned document is a NEW ``Document`` (same ``id``, ``page_content``
    and metadata, the metadata deep-copied; values that cannot be copied, such
    as locks, are shared) with these metadata keys:

    * ``relevance_score``: the reranker's score, a Python ``float`` on the
      reranker's ``normalize`` scale (in [0, 1] with the default ``"sigmoid"``).
    * ``relevance_span``: ``(start, end)`` character offsets in ``page_content``
      of the window that scored best (the whole text when it fit in ``max_length``);
      ``relevance_windows``: how many windows were scored (see ``Reranker(overflow=)``).
    * ``previous_relevance_score``: only when the document came in with a
      ``relevance_score`` of its own (from an earlier retriever or reranker):
      that earlier value, so it is never silently overwritten. If that key is
      also taken (a third stage), older values move along to
      ``previous_relevance_score_2``, ``previous_relevance_score_3``, ... so the
      plain key always holds the immediately preceding stage's score.

    Documents whose ``page_content`` is empty or whitespace only are not scored
    and not returned (a warning names their positions). The compressor pickles,
    deep-copies and serialises (``model_dump``/``model_dump_json``, with the
    reranker as its :meth:`Reranker.options`; ``model_validate`` takes them back).

    The caller's documents are never modified. When callbacks are given, the
    scores of all candidates (before the threshold and ``top_n`` cut) are sent
    to them as a custom event named ``"rerank_plugins.rerank"`` with data
    ``{"query": str, "scores": [float, ...] in input order, "kept": [input indices in output order]}``
    (``None`` for a document without text).

    Attributes:
        reranker: the :class:`rerank_plugins.Reranker` that scores. A model name
            or path may be given instead; it builds ``Reranker(path)`` with the
            default options, which shares the loaded model with every other
            Reranker over the same path. A dict is taken as ``Reranker(**dict)``
            (the form :meth:`Reranker.options` and ``model_dump`` give).
        top_n: how many documents to return (``None``: all that pass the threshold).
        score_threshold: drop documents scoring under this (``None``: keep all).
            It is on the reranker's ``normalize`` scale, so it must lie in
            [0, 1] unless the reranker uses ``normalize="none"`` (raw logits).

    Example:
        >>> from langchain_core.documents import Document  # doctest: +SKIP
        >>> compressor = RerankCompressor(  # doctest: +SKIP
        ...     reranker="cross-encoder/ms-marco-MiniLM-L-12-v2", top_n=1)
        >>> docs = [Document("Berlin is in Germany."),  # doctest: +SKIP
        ...         Document("Paris is the capital of France.")]
        >>> best = compressor.compress_documents(docs, "capital of France?")  # doctest: +SKIP
        >>> best[0].page_content, round(best[0].metadata["relevance_score"], 2)  # doctest: +SKIP
        ('Paris is the capital of France.', 0.99)
    """

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        extra="forbid",
        validate_assignment=True,
    )

    reranker: Reranker
    top_n: int | None = 3
    score_threshold: float | None = None

    # ------------------------------------------------------------------ validation

    @field_validator("reranker", mode="before")
    @classmethod
    def _build_reranker(cls, value: Any) -> Any:
        if isinstance(value, Reranker):
            return value
        if isinstance(value, (str, Path)):
            # ModelLoadError (an OSError) passes through pydantic unchanged.
            return Reranker(value)
        if isinstance(value, dict):  # Reranker.options(), as model_dump writes it
            return Reranker(**value)
        raise ValueError(
            "reranker must be a rerank_plugins.Reranker, a model name/path or a dict of Reranker options, "
            f"got {type(value).__name__}"
        )

    @field_serializer("reranker")
    def _dump_reranker(self, value: Reranker) -> dict[str, Any]:
        return value.options()

    @field_validator("top_n", "score_threshold", mode="before")
    @classmethod
    def _check_number(cls, value: Any, info: ValidationInfo) -> Any:
        check = check_top_n if info.field_name == "top_n" else check_score_threshold
        try:
            return check(value)
        except TypeError as exc:  # pydantic reports ValueErrors as validation errors
            raise ValueError(str(exc)) from None

    # The scale check runs as field validators (not a model validator) so that a
    # rejected assignment leaves the compressor unchanged.
    @field_validator("reranker", mode="after")
    @classmethod
    def _check_reranker_scale(cls, value: Reranker, info: ValidationInfo) -> Reranker:
        value.check_score_threshold(info.data.get("score_threshold"))
        return value

    @field_validator("score_threshold", mode="after")
    @classmethod
    def _check_threshold_scale(cls, value: float | None, info: ValidationInfo) -> float | None:
        reranker = info.data.get("reranker")
        if reranker is not None:
            reranker.check_score_threshold(value)
        return value

    # ------------------------------------------------------------------ compression

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query``; return new documents, best first.

        Args:
            documents: the retrieved documents (not modified).
            query: the query.
            callbacks: LangChain callbacks; they receive the ``"rerank_plugins.rerank"`` event.

        Returns:
            New ``Document`` objects sorted by score, after ``score_threshold`` and
            ``top_n``, each with ``metadata["relevance_score"]``. Empty input gives
            ``[]`` without running the model.

        Raises:
            TypeError: ``query`` is not a str, or a document is not a ``Document`` or
                its ``page_content`` is not a str (the message names its position).
        """
        query, scored, texts = self._check_inputs(documents, query)
        if not texts:
            return []
        results = self.reranker.rerank(query, texts)
        output, kept = self._select(documents, scored, results)
        if callbacks is not None:
            manager = CallbackManager.configure(inheritable_callbacks=callbacks)
            manager.on_custom_event(
                RERANK_EVENT,
                self._event_data(query, len(documents), scored, results, kept),
                run_id=manager.parent_run_id,
            )
        return output

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """:meth:`compress_documents` with the scoring run in a worker thread.

        The event loop stays free while the model runs, and many concurrent
        calls are safe: they share the model under its lock.
        """
        query, scored, texts = self._check_inputs(documents, query)
        if not texts:
            return []
        results = await self.reranker.arerank(query, texts)
        output, kept = self._select(documents, scored, results)
        if callbacks is not None:
            manager = AsyncCallbackManager.configure(inheritable_callbacks=callbacks)
            await manager.on_custom_event(
                RERANK_EVENT,
                self._event_data(query, len(documents), scored, results, kept),
                run_id=manager.parent_run_id,
            )
        return output

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_inputs(documents: Any, query: Any) -> tuple[str, list[int], list[str]]:
        """The query, the input positions of the documents to score, and their texts."""
        query = check_query(query)
        if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
            raise TypeError(
                f"documents must be a sequence of Document (a list or tuple), got {type(documents).__name__}"
            )
        scored: list[int] = []
        texts: list[str] = []
        for i, doc in enumerate(documents):
            if not isinstance(doc, Document):
                raise TypeError(
                    f"documents[{i}] must be a langchain_core.documents.Document, got {type(doc).__name__}"
                )
            if not isinstance(doc.page_content, str):
                raise TypeError(
                    f"documents[{i}].page_content must be a str, got {type(doc.page_content).__name__}"
                )
            if is_blank(doc.page_content):
                continue
            scored.append(i)
            texts.append(doc.page_content)
        if len(scored) < len(documents):
            skipped = sorted(set(range(len(documents))) - set(scored))
            logger.warning("documents %s have no text; they are not scored and not returned", skipped)
        return query, scored, texts

    def _select(
        self, documents: Sequence[Document], scored: list[int], results: list[Result]
    ) -> tuple[list[Document], list[int]]:
        """Apply the threshold, then ``top_n``; build the new documents; kept input positions."""
        results = select_results(results, top_n=self.top_n, score_threshold=self.score_threshold)
        kept = [scored[r.index] for r in results]
        output = [
            documents[i].model_copy(
                update={"metadata": {
                    **_scored_metadata(documents[i].metadata, r.score),
                    RELEVANCE_SPAN_KEY: r.span,
                    RELEVANCE_WINDOWS_KEY: r.windows,
                }}
            )
            for i, r in zip(kept, results, strict=True)
        ]
        logger.debug("reranked %d documents, kept %d", len(documents), len(output))
        return output, kept

    @staticmethod
    def _event_data(
        query: str, n_documents: int, scored: list[int], results: list[Result], kept: list[int]
    ) -> dict[str, Any]:
        scores: list[float | None] = [None] * n_documents  # None: a document without text, not scored
        for r in results:
            scores[scored[r.index]] = float(r.score)
        return {"query": query, "scores": scores, "kept": kept}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(reranker={self.reranker!r}, top_n={self.top_n!r}, "
            f"score_threshold={self.score_threshold!r})"
        )

    __str__ = __repr__


def _scored_metadata(metadata: dict[str, Any], score: float) -> dict[str, Any]:
    """A deep copy of ``metadata`` with ``score`` as ``relevance_score``; earlier scores move aside."""
    new = dict(safe_deepcopy(metadata))
    if RELEVANCE_SCORE_KEY in new:
        # The chain of earlier scores, most recent first: relevance_score,
        # previous_relevance_score, previous_relevance_score_2, ...
        keys = [PREVIOUS_RELEVANCE_SCORE_KEY]
        while keys[-1] in new:
            keys.append(f"{PREVIOUS_RELEVANCE_SCORE_KEY}_{len(keys) + 1}")
        # Shift each value one key further back, oldest first, so nothing is overwritten.
        sources = [RELEVANCE_SCORE_KEY, *keys[:-1]]
        for source, target in reversed(list(zip(sources, keys, strict=True))):
            new[target] = new[source]
    new[RELEVANCE_SCORE_KEY] = float(score)
    return new
