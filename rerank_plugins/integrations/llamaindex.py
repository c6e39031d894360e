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

from rerank_plugins._validation import (
    check_query,
    check_score_threshold,
    check_top_n,
    is_blank,
    safe_deepcopy,
)
from rerank_plugins.core import Reranker, Result, reranker_option_names, select_results
from rerank_plugins.errors import missing_extra

try:
    from llama_index.core.bridge.pydantic import (
        ConfigDict,
        Field,
        PrivateAttr,
        ValidationInfo,
        field_validator,
        model_validator,
    )
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

# Reranker constructor options other than the model (see Reranker.options()).


class RerankPostprocessor(BaseNodePostprocessor):
    """Rerank retrieved nodes with a cross-encoder, sequence-classification or LLM reranker.

    Drop it into any query engine's ``node_postprocessors``. Each call scores
    every ``(query, node text)`` pair with the shared :class:`~rerank_plugins.Reranker`,
    drops nodes scoring below ``score_threshold``, keeps the best ``top_n`` and
    returns them best first. The caller's nodes are never modified: the result
    holds new ``NodeWithScore`` objects over copies of the nodes, each ``score``
    a Python ``float`` (the reranker's normalised score). Nodes without text of
    their own (an ``ImageNode``, an empty ``TextNode``) are not scored and not
    returned; a warning names their positions.

    Settings are validated at construction and on assignment. The postprocessor
    serialises (``to_json``/``from_json``, ``to_dict``/``from_dict``,
    ``model_dump``/``model_validate``, pickle, ``copy.deepcopy``) with every
    setting of its Reranker: the field ``reranker`` holds the model's id and
    ``reranker_options`` the rest of :meth:`Reranker.options`.

    Args:
        reranker: a :class:`~rerank_plugins.Reranker`, or a model name or path
            (loaded as ``Reranker(reranker, **reranker_options)``; the weights are
            shared with every other Reranker over the same model).
        reranker_options: with a model name or path: the Reranker's other
            constructor options (``normalize``, ``max_length``, ``batch_size``,
            ``device``, ``dtype``, ...). Filled in from the Reranker when one is given.
        top_n: keep this many nodes (``None``: all that pass the threshold).
        score_threshold: drop nodes whose score is below this value, before
            ``top_n`` is applied. The score is the reranker's normalised one
            (``sigmoid`` by default: a value in [0, 1]), so the threshold must lie
            in [0, 1] unless the reranker uses ``normalize="none"``.
        keep_retrieval_score: store each node's first-stage score in a copy of
            its metadata under ``"retrieval_score"`` (hidden from the text that
            embedding models, rerankers and LLMs read).
        metadata_mode: which text of a node the reranker reads (default
            ``MetadataMode.EMBED``: the text plus the metadata shown to embedding models).
        callback_manager: a LlamaIndex callback manager; a query engine sets its own.

    Raises:
        TypeError: ``reranker`` is not a Reranker, str or Path; ``top_n`` or
            ``score_threshold`` has the wrong type.
        ValueError: ``top_n < 1``; ``score_threshold`` is NaN or outside the scores' range;
            an unknown ``metadata_mode`` or reranker option.
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

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=True)

    reranker: str = Field(
        description="Model name or path of the reranker (a Reranker passed in is recorded by its model id)."
    )
    reranker_options: dict[str, Any] = Field(
        default_factory=dict,
        description="The Reranker's other constructor options (Reranker.options() without 'model').",
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
    # The (reranker, reranker_options) that _reranker was built from.
    _built_from: tuple[str, dict[str, Any]] | None = PrivateAttr(default=None)

    def __init__(
        self,
        reranker: Reranker | str | Path,
        *,
        reranker_options: dict[str, Any] | None = None,
        top_n: int | None = None,
        score_threshold: float | None = None,
        keep_retrieval_score: bool = False,
        metadata_mode: MetadataMode | str = MetadataMode.EMBED,
        **kwargs: Any,
    ) -> None:
        # Checked here as well as by the field validators, so that bad values raise
        # plain TypeError / ValueError before any model is loaded.
        top_n = check_top_n(top_n)
        options = _check_options(reranker_options or {})
        normalize = reranker.normalize if isinstance(reranker, Reranker) else options.get("normalize", "sigmoid")
        score_threshold = check_score_threshold(score_threshold, normalize)
        metadata_mode = _check_metadata_mode(metadata_mode)
        model = _as_reranker(reranker, options)
        options = _options_of(model)
        super().__init__(
            reranker=model.model_id,
            reranker_options=options,
            top_n=top_n,
            score_threshold=score_threshold,
            keep_retrieval_score=keep_retrieval_score,
            metadata_mode=metadata_mode,
            **kwargs,
        )
        self._reranker = model
        self._built_from = (model.model_id, options)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "reranker":
            # Assigning a model swaps the Reranker itself, with its options; nothing changes
            # when the new reranker's scale does not fit the threshold.
            model = _as_reranker(value, {})
            check_score_threshold(self.score_threshold, model.normalize)
            options = _options_of(model)
            super().__setattr__("reranker_options", options)
            super().__setattr__("reranker", model.model_id)
            self._reranker = model
            self._built_from = (model.model_id, options)
            return
        super().__setattr__(name, value)

    @classmethod
    def class_name(cls) -> str:
        return "RerankPostprocessor"

    # ------------------------------------------------------------------ validation

    @model_validator(mode="before")
    @classmethod
    def _split_reranker(cls, data: Any) -> Any:
        """``model_validate({"reranker": Reranker(...)})`` keeps the Reranker's options."""
        if isinstance(data, dict) and isinstance(data.get("reranker"), Reranker):
            model = data["reranker"]
            data = {**data, "reranker": model.model_id}
            data.setdefault("reranker_options", _options_of(model))
        return data

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

    @field_validator("reranker_options", mode="before")
    @classmethod
    def _validate_options(cls, value: Any, info: ValidationInfo) -> dict[str, Any]:
        options = _check_options(value)
        check_score_threshold(info.data.get("score_threshold"), options.get("normalize", "sigmoid"))
        return options

    @field_validator("top_n", mode="before")
    @classmethod
    def _validate_top_n(cls, value: Any) -> int | None:
        return check_top_n(value)

    @field_validator("score_threshold", mode="before")
    @classmethod
    def _validate_threshold(cls, value: Any, info: ValidationInfo) -> float | None:
        options = info.data.get("reranker_options") or {}
        return check_score_threshold(value, options.get("normalize", "sigmoid"))

    @field_validator("metadata_mode", mode="before")
    @classmethod
    def _validate_metadata_mode(cls, value: Any) -> MetadataMode:
        return _check_metadata_mode(value)

    # ------------------------------------------------------------------ public helpers

    @property
    def reranker_instance(self) -> Reranker:
        """The :class:`~rerank_plugins.Reranker` that scores the nodes."""
        wanted = (self.reranker, dict(self.reranker_options))
        if self._reranker is None or self._built_from != wanted:
            # Built through model_validate / model_construct rather than __init__, or the
            # options were assigned: load (or reuse) the shared model from the fields.
            self._reranker = Reranker(self.reranker, **self.reranker_options)
            self._built_from = wanted
        return self._reranker

    # ------------------------------------------------------------------ postprocessing

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query, scored, texts = self._prepare(nodes, query_bundle)
        if not texts:
            return []
        with self._reranking(nodes, scored, query_bundle, query) as done:
            return done(self.reranker_instance.rerank(query, texts))

    @dispatcher.span
    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query, scored, texts = self._prepare(nodes, query_bundle)
        if not texts:
            return []
        with self._reranking(nodes, scored, query_bundle, query) as done:
            # Scoring runs in a worker thread; the event loop stays free.
            return done(await self.reranker_instance.arerank(query, texts))

    @contextmanager
    def _reranking(
        self,
        nodes: list[NodeWithScore],
        scored: list[NodeWithScore],
        query_bundle: QueryBundle | None,
        query: str,
    ) -> Iterator[Callable[[list[Result]], list[NodeWithScore]]]:
        """Start/end instrumentation events and the RERANKING callback event around one scoring.

        Yields ``done(results) -> reranked nodes``, which selects, copies and closes the events.
        """
        self._start_event(nodes, query_bundle)
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._callback_payload(nodes, query)
        ) as event:

            def done(results: list[Result]) -> list[NodeWithScore]:
                reranked = self._select(scored, results)
                event.on_end(payload={EventPayload.NODES: reranked})
                dispatcher.event(ReRankEndEvent(nodes=reranked))
                return reranked

            yield done

    def _prepare(
        self, nodes: Sequence[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[NodeWithScore], list[str]]:
        """The query, the nodes that have text of their own, and the texts the reranker reads."""
        if query_bundle is None:
            raise ValueError(f"{self.class_name()} needs a query: pass query_bundle or query_str")
        query = check_query(query_bundle.query_str, "query_bundle.query_str")
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
            raise TypeError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
        scored: list[NodeWithScore] = []
        texts: list[str] = []
        skipped: list[int] = []
        for i, item in enumerate(nodes):
            if not isinstance(item, NodeWithScore):
                raise TypeError(f"nodes[{i}] must be a NodeWithScore, got {type(item).__name__}")
            own_text = item.node.get_content(metadata_mode=MetadataMode.NONE)
            if not isinstance(own_text, str) or is_blank(own_text):
                skipped.append(i)  # an ImageNode or empty node: nothing a text reranker can judge
                continue
            scored.append(item)
            texts.append(item.node.get_content(metadata_mode=self.metadata_mode))
        if skipped:
            logger.warning(
                "%s: nodes %s have no text (image or empty nodes); they are not scored and not returned",
                self.class_name(), skipped,
            )
        return query, scored, texts

    def _select(self, nodes: Sequence[NodeWithScore], results: list[Result]) -> list[NodeWithScore]:
        """Threshold, then top_n, over results sorted best first; copies of the kept nodes."""
        selected = select_results(results, top_n=self.top_n, score_threshold=self.score_threshold)
        kept = [self._copy(nodes[r.index], r) for r in selected]
        logger.debug("reranked %d nodes, kept %d", len(nodes), len(kept))
        return kept

    def _copy(self, item: NodeWithScore, result: Result) -> NodeWithScore:
        # A deep copy, field by field, that shares what cannot be copied (a lock in the metadata).
        node = item.node.model_copy(update={k: safe_deepcopy(v) for k, v in item.node.__dict__.items()})
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


def _check_options(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"reranker_options must be a dict, got {type(value).__name__}")
    names = reranker_option_names()
    unknown = sorted(str(k) for k in value if k not in names)
    if unknown:
        raise ValueError(
            f"unknown reranker option(s) {', '.join(unknown)}; expected some of {', '.join(sorted(names))}"
        )
    return dict(value)


def _options_of(model: Reranker) -> dict[str, Any]:
    options = model.options()
    del options["model"]
    return options


def _as_reranker(reranker: Any, options: dict[str, Any]) -> Reranker:
    if isinstance(reranker, Reranker):
        if options and any(_options_of(reranker).get(k) != v for k, v in options.items()):
            raise ValueError("pass reranker_options with a model name or path, not with a Reranker instance")
        return reranker
    if isinstance(reranker, (str, Path)):
        return Reranker(reranker, **options)
    raise TypeError(f"reranker must be a Reranker, str or Path, got {type(reranker).__name__}")
