"""LlamaIndex adapter: a node postprocessor that reranks retrieved nodes with a :class:`Reranker`.

Install the extra with ``pip install 'rerank-plugins[llamaindex]'``.

Example:
    >>> from rerank_plugins.integrations.llamaindex import RerankPostprocessor
    >>> rerank = RerankPostprocessor("cross-encoder/ms-marco-MiniLM-L-12-v2", top_n=3)  # doctest: +SKIP
    >>> engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank])  # doctest: +SKIP
    >>> engine.query("Who proclaimed the 1973 oil embargo?").source_nodes  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rerank_plugins._validation import check_query, check_score_threshold, check_top_n
from rerank_plugins.core import Reranker, Result, select_results
from rerank_plugins.errors import missing_extra

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise missing_extra("llama-index-core", "llamaindex", exc) from exc

__all__ = ["RETRIEVAL_SCORE_KEY", "RerankPostprocessor"]

logger = logging.getLogger(__name__)
dispatcher = get_dispatcher(__name__)

#: Metadata key under which ``keep_retrieval_score=True`` stores the first-stage score.
RETRIEVAL_SCORE_KEY = "retrieval_score"
RELEVANCE_SPAN_KEY = "relevance_span"
"""Node metadata key of the best window's ``(start, end)`` character offsets in the text the reranker read."""
RELEVANCE_WINDOWS_KEY = "relevance_windows"
"""Node metadata key of how many windows of a long passage were scored (1 when it fit)."""


class RerankPostprocessor(BaseNodePostprocessor):
    """Rerank retrieved nodes with a cross-encoder, sequence-classification or LLM reranker.

    Drop it into any query engine's ``node_postprocessors``. Each call scores
    every ``(query, node text)`` pair with the shared :class:`~rerank_plugins.Reranker`,
    drops nodes scoring below ``score_threshold``, keeps the best ``top_n`` and
    returns them best first. The caller's nodes are never modified: the result
    holds new ``NodeWithScore`` objects over copies of the nodes, each ``score``
    a Python ``float`` (the reranker's normalised score).

    Args:
        reranker: a :class:`~rerank_plugins.Reranker`, or a model name or path
            (loaded as ``Reranker(reranker)``; the weights are shared with every
            other Reranker over the same model). The field then holds the
            model's id, so the postprocessor serialises to JSON.
        top_n: keep this many nodes (``None``: all that pass the threshold).
        score_threshold: drop nodes whose score is below this value, before
            ``top_n`` is applied. The score is the reranker's normalised one
            (``sigmoid`` by default: a value in [0, 1]).
        keep_retrieval_score: store each node's first-stage score in a copy of
            its metadata under ``"retrieval_score"`` (hidden from the text that
            embedding models, rerankers and LLMs read).
        metadata_mode: which text of a node the reranker reads (default
            ``MetadataMode.EMBED``: the text plus the metadata shown to embedding models).
        callback_manager: a LlamaIndex callback manager; a query engine sets its own.

    Raises:
        TypeError: ``reranker`` is not a Reranker, str or Path; ``top_n`` or
            ``score_threshold`` has the wrong type.
        ValueError: ``top_n < 1``; ``score_threshold`` is NaN; an unknown ``metadata_mode``.
        rerank_plugins.ModelLoadError: the model cannot be loaded.

    Example:
        >>> from llama_index.core import VectorStoreIndex
        >>> from rerank_plugins import Reranker
        >>> rerank = RerankPostprocessor(Reranker("cross-encoder/ms-marco-MiniLM-L-12-v2"),
        ...                              top_n=3, keep_retrieval_score=True)  # doctest: +SKIP
        >>> engine = VectorStoreIndex.from_documents(docs).as_query_engine(
        ...     similarity_top_k=20, node_postprocessors=[rerank])  # doctest: +SKIP
        >>> [round(n.score, 3) for n in engine.query("what is reranking?").source_nodes]  # doctest: +SKIP
        [0.981, 0.412, 0.007]
    """

    reranker: str = Field(
        description="Model name or path of the reranker (a Reranker passed in is recorded by its model id)."
    )
    top_n: int | None = Field(
        default=None, description="Number of nodes to return, best first (None: all)."
    )
    score_threshold: float | None = Field(
        default=None,
        description="Drop nodes whose reranker score is below this value (applied before top_n).",
    )
    keep_retrieval_score: bool = Field(
        default=False,
        description=f"Keep the first-stage score in node metadata under {RETRIEVAL_SCORE_KEY!r}.",
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="Which node text the reranker reads."
    )

    _reranker: Reranker | None = PrivateAttr(default=None)

    def __init__(
        self,
        reranker: Reranker | str | Path,
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        keep_retrieval_score: bool = False,
        metadata_mode: MetadataMode | str = MetadataMode.EMBED,
        **kwargs: Any,
    ) -> None:
        # Checked here as well as by the field validators, so that bad values raise
        # plain TypeError / ValueError before any model is loaded.
        top_n = check_top_n(top_n)
        score_threshold = check_score_threshold(score_threshold)
        metadata_mode = _check_metadata_mode(metadata_mode)
        model = _as_reranker(reranker)
        super().__init__(
            reranker=model.model_id,
            top_n=top_n,
            score_threshold=score_threshold,
            keep_retrieval_score=keep_retrieval_score,
            metadata_mode=metadata_mode,
            **kwargs,
        )
        self._reranker = model

    @classmethod
    def class_name(cls) -> str:
        return "RerankPostprocessor"

    # ------------------------------------------------------------------ validation

    @field_validator("reranker", mode="before")
    @classmethod
    def _validate_reranker(cls, value: Any) -> str:
        if isinstance(value, Reranker):
            return value.model_id
        if isinstance(value, Path):
            return str(value)
        if not isinstance(value, str):
            raise TypeError(f"reranker must be a Reranker, str or Path, got {type(value).__name__}")
        return value

    @field_validator("top_n", mode="before")
    @classmethod
    def _validate_top_n(cls, value: Any) -> int | None:
        return check_top_n(value)

    @field_validator("score_threshold", mode="before")
    @classmethod
    def _validate_threshold(cls, value: Any) -> float | None:
        return check_score_threshold(value)

    # ------------------------------------------------------------------ public helpers

    @property
    def reranker_instance(self) -> Reranker:
        """The :class:`~rerank_plugins.Reranker` that scores the nodes."""
        if self._reranker is None:
            # Built through model_validate / model_construct rather than __init__:
            # load (or reuse) the shared model from the recorded id.
            self._reranker = Reranker(self.reranker)
        return self._reranker

    # ------------------------------------------------------------------ postprocessing

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query, texts = self._prepare(nodes, query_bundle)
        if not texts:
            return []
        with self._reranking(nodes, query_bundle, query) as done:
            return done(self.reranker_instance.rerank(query, texts))

    @dispatcher.span
    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query, texts = self._prepare(nodes, query_bundle)
        if not texts:
            return []
        with self._reranking(nodes, query_bundle, query) as done:
            # Scoring runs in a worker thread; the event loop stays free.
            return done(await self.reranker_instance.arerank(query, texts))

    @contextmanager
    def _reranking(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None, query: str
    ) -> Iterator[Callable[[list[Result]], list[NodeWithScore]]]:
        """Start/end instrumentation events and the RERANKING callback event around one scoring.

        Yields ``done(results) -> reranked nodes``, which selects, copies and closes the events.
        """
        self._start_event(nodes, query_bundle)
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._callback_payload(nodes, query)
        ) as event:

            def done(results: list[Result]) -> list[NodeWithScore]:
                reranked = self._select(nodes, results)
                event.on_end(payload={EventPayload.NODES: reranked})
                dispatcher.event(ReRankEndEvent(nodes=reranked))
                return reranked

            yield done

    def _prepare(
        self, nodes: Sequence[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[str]]:
        if query_bundle is None:
            raise ValueError(f"{self.class_name()} needs a query: pass query_bundle or query_str")
        query = check_query(query_bundle.query_str, "query_bundle.query_str")
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
            raise TypeError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
        texts = []
        for i, item in enumerate(nodes):
            if not isinstance(item, NodeWithScore):
                raise TypeError(f"nodes[{i}] must be a NodeWithScore, got {type(item).__name__}")
            texts.append(item.node.get_content(metadata_mode=self.metadata_mode))
        return query, texts

    def _select(self, nodes: Sequence[NodeWithScore], results: list[Result]) -> list[NodeWithScore]:
        """Threshold, then top_n, over results sorted best first; copies of the kept nodes."""
        selected = select_results(results, top_n=self.top_n, score_threshold=self.score_threshold)
        kept = [self._copy(nodes[r.index], r) for r in selected]
        logger.debug("reranked %d nodes, kept %d", len(nodes), len(kept))
        return kept

    def _copy(self, item: NodeWithScore, result: Result) -> NodeWithScore:
        node = item.node.model_copy(deep=True)
        added = {RELEVANCE_SPAN_KEY: result.span, RELEVANCE_WINDOWS_KEY: result.windows}
        if self.keep_retrieval_score:
            added[RETRIEVAL_SCORE_KEY] = None if item.score is None else float(item.score)
        node.metadata.update(added)
        # Bookkeeping, not content: hidden from the text embedding models and LLMs read.
        for hidden in (node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys):
            hidden.extend(key for key in added if key not in hidden)
        return NodeWithScore(node=node, score=float(result.score))

    def _start_event(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> None:
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=list(nodes),
                top_n=self.top_n if self.top_n is not None else len(nodes),
                model_name=self.reranker,
            )
        )

    def _callback_payload(self, nodes: list[NodeWithScore], query: str) -> dict[str, Any]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.reranker,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }


def _check_metadata_mode(value: Any) -> MetadataMode:
    try:
        return MetadataMode(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in MetadataMode)
        raise ValueError(f"metadata_mode must be a MetadataMode or one of {choices}; got {value!r}") from None


def _as_reranker(reranker: Any) -> Reranker:
    if isinstance(reranker, Reranker):
        return reranker
    if isinstance(reranker, (str, Path)):
        return Reranker(reranker)
    raise TypeError(f"reranker must be a Reranker, str or Path, got {type(reranker).__name__}")
