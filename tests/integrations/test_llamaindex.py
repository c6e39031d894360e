"""RerankPostprocessor: the LlamaIndex node postprocessor over the core Reranker.

Mechanics run on the tiny random models (their rankings mean nothing, so every
expectation there is computed with ``Reranker.rerank``); ranking quality runs on
the real ms-marco cross-encoder over one SQuAD article (skipped without ../shared).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import importlib
import json
import logging
import math
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_index.core", reason="llama-index-core (the llamaindex extra) is not installed")

import _tiny  # noqa: E402  (tests/ is on sys.path via conftest)
from llama_index.core import Document, Settings, VectorStoreIndex  # noqa: E402
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.evaluation import RetrieverEvaluator  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle, TextNode  # noqa: E402

from rerank_plugins import ModelLoadError, Reranker  # noqa: E402
from rerank_plugins.integrations.llamaindex import RETRIEVAL_SCORE_KEY, RerankPostprocessor  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "llamaindex_query_engine.py"
QUERY = "What is the capital of France?"
SQUAD_TITLE = "Amazon_rainforest"
N_PARAGRAPHS = 12
QUESTION_PARAGRAPHS = (0, 2, 4, 6, 8, 10)  # the first question of each


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def mock_settings():
    """Mock LLM and embeddings as the global defaults; the real globals come back afterwards."""
    saved = {f.name: getattr(Settings, f.name) for f in dataclasses.fields(Settings)}
    Settings.llm = MockLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    yield
    for name, value in saved.items():
        setattr(Settings, name, value)


@pytest.fixture(scope="module")
def tiny_reranker(tiny_bert) -> Reranker:
    return Reranker(tiny_bert)


@pytest.fixture
def nodes() -> list[NodeWithScore]:
    """Eleven English nodes with first-stage scores of mixed types (float, numpy, None)."""
    out = []
    for i, text in enumerate(_tiny.ENGLISH):
        node = TextNode(
            id_=f"n{i}",
            text=text,
            metadata={"source": f"doc-{i}", "page": i},
            excluded_llm_metadata_keys=["page"],
        )
        score: float | None = 0.05 * i
        if i == 3:
            score = np.float32(0.5)
        elif i == 4:
            score = None
        out.append(NodeWithScore(node=node, score=score))
    return out


def snapshot(nodes: list[NodeWithScore]) -> list[dict]:
    return [{"score": n.score, "node": n.node.model_dump()} for n in nodes]


class EventCollector(BaseEventHandler):
    """Keeps every instrumentation event it sees."""

    events: list = []

    @classmethod
    def class_name(cls) -> str:
        return "EventCollector"

    def handle(self, event, **kwargs) -> None:
        self.events.append(event)

    def rerank_events(self) -> list:
        return [e for e in self.events if isinstance(e, (ReRankStartEvent, ReRankEndEvent))]


@pytest.fixture
def collector():
    root = get_dispatcher()
    handler = EventCollector(events=[])
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


def expected(
    reranker: Reranker,
    nodes: list[NodeWithScore],
    top_n: int | None = None,
    threshold: float | None = None,
    mode: MetadataMode = MetadataMode.EMBED,
) -> list[tuple[str, float]]:
    """(node id, score) the postprocessor must return, from the core reranker."""
    texts = [n.node.get_content(metadata_mode=mode) for n in nodes]
    results = reranker.rerank(QUERY, texts)
    kept = [(nodes[r.index].node.node_id, r.score) for r in results if threshold is None or r.score >= threshold]
    return kept[:top_n]


def ids_scores(nodes: list[NodeWithScore]) -> list[tuple[str, float]]:
    return [(n.node.node_id, n.score) for n in nodes]


# --------------------------------------------------------------------------- import and construction


def test_import_rerank_plugins_does_not_import_llama_index():
    code = (
        "import sys, rerank_plugins, rerank_plugins.integrations\n"
        "assert not any(m == 'llama_index' or m.startswith('llama_index.') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('llama_index'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_missing_llama_index_names_the_extra():
    """With llama_index uninstallable, importing the adapter raises an ImportError naming the extra."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'llama_index' or name.startswith('llama_index.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from rerank_plugins import MissingExtraError\n"
        "try:\n"
        "    import rerank_plugins.integrations.llamaindex\n"
        "except MissingExtraError as exc:\n"
        "    assert isinstance(exc, ImportError)\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('imported without llama_index')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "llama-index-core" in proc.stdout
    assert "pip install 'rerank-plugins[llamaindex]'" in proc.stdout


def test_is_a_node_postprocessor_and_serialises(tiny_bert, tiny_reranker):
    pp = RerankPostprocessor(tiny_reranker, top_n=3, score_threshold=0.25, keep_retrieval_score=True)
    assert isinstance(pp, BaseNodePostprocessor)
    assert RerankPostprocessor.class_name() == "RerankPostprocessor"
    data = json.loads(pp.to_json())
    assert data == {
        "reranker": str(Path(tiny_bert).resolve()),
        "reranker_options": {k: v for k, v in tiny_reranker.options().items() if k != "model"},
        "top_n": 3,
        "score_threshold": 0.25,
        "keep_retrieval_score": True,
        "metadata_mode": "embed",
        "class_name": "RerankPostprocessor",
    }
    again = RerankPostprocessor.from_json(pp.to_json())
    assert (again.top_n, again.score_threshold, again.keep_retrieval_score) == (3, 0.25, True)
    assert again.metadata_mode is MetadataMode.EMBED
    assert again.reranker_instance.backend is tiny_reranker.backend  # the shared model, not a reload


def test_pickle_round_trip_reloads_the_shared_model(tiny_reranker, nodes):
    pp = RerankPostprocessor(tiny_reranker, top_n=3)
    again = pickle.loads(pickle.dumps(pp))  # the model is not pickled; it is reloaded from the id
    assert again.reranker_instance.backend is tiny_reranker.backend
    assert again.top_n == 3
    assert ids_scores(again.postprocess_nodes(nodes, query_str=QUERY)) == expected(tiny_reranker, nodes, top_n=3)


def test_reranker_field_accepts_instance_name_and_path(tiny_bert, tiny_reranker):
    given = RerankPostprocessor(tiny_reranker)
    assert given.reranker_instance is tiny_reranker
    assert given.reranker == tiny_reranker.model_id
    from_str = RerankPostprocessor(str(tiny_bert))
    from_path = RerankPostprocessor(Path(tiny_bert))
    for pp in (from_str, from_path):
        assert isinstance(pp.reranker_instance, Reranker)
        assert pp.reranker_instance.backend is tiny_reranker.backend
        assert pp.reranker == tiny_reranker.model_id


def test_model_validate_builds_the_reranker_lazily(tiny_reranker):
    pp = RerankPostprocessor.model_validate({"reranker": tiny_reranker, "top_n": 2})
    assert pp.reranker == tiny_reranker.model_id
    assert pp.reranker_instance.backend is tiny_reranker.backend


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"top_n": 0}, ValueError, "top_n must be >= 1"),
        ({"top_n": -2}, ValueError, "top_n must be >= 1"),
        ({"top_n": 2.0}, TypeError, "top_n must be an int"),
        ({"top_n": True}, TypeError, "top_n must be an int"),
        ({"top_n": "3"}, TypeError, "top_n must be an int"),
        ({"score_threshold": "0.5"}, TypeError, "score_threshold must be a number"),
        ({"score_threshold": False}, TypeError, "score_threshold must be a number"),
        ({"score_threshold": float("nan")}, ValueError, "score_threshold must not be NaN"),
        ({"metadata_mode": "sometimes"}, ValueError, "metadata_mode must be a MetadataMode or one of"),
    ],
)
def test_bad_settings_raise(tiny_reranker, kwargs, error, message):
    with pytest.raises(error, match=message):
        RerankPostprocessor(tiny_reranker, **kwargs)


def test_bad_reranker_raises():
    with pytest.raises(TypeError, match="reranker must be a Reranker, str or Path, got int"):
        RerankPostprocessor(3)
    with pytest.raises(ModelLoadError, match="does not exist"):
        RerankPostprocessor("/nonexistent/rerank-plugins/model")


# --------------------------------------------------------------------------- postprocessing


def test_scores_equal_the_core_reranker(tiny_reranker, nodes):
    pp = RerankPostprocessor(tiny_reranker)
    out = pp.postprocess_nodes(nodes, query_str=QUERY)
    assert ids_scores(out) == expected(tiny_reranker, nodes)
    assert all(type(n.score) is float for n in out)
    scores = [n.score for n in out]
    assert scores == sorted(scores, reverse=True)
    # the same through a QueryBundle
    again = pp.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert ids_scores(again) == ids_scores(out)


@pytest.mark.parametrize("keep", [False, True])
def test_input_nodes_are_not_modified(tiny_reranker, nodes, keep):
    before = snapshot(nodes)
    pp = RerankPostprocessor(tiny_reranker, top_n=4, keep_retrieval_score=keep)
    out = pp.postprocess_nodes(nodes, query_str=QUERY)
    assert snapshot(nodes) == before
    originals = {id(n) for n in nodes} | {id(n.node) for n in nodes}
    assert not originals & ({id(n) for n in out} | {id(n.node) for n in out})
    # changing the results leaves the inputs alone too
    for n in out:
        n.node.metadata["touched"] = True
        n.node.excluded_llm_metadata_keys.append("touched")
        n.score = -1.0
    assert snapshot(nodes) == before


@pytest.mark.parametrize("top_n", [None, 1, 3, 20])
@pytest.mark.parametrize("threshold_rank", [None, 0, 4, "above-all", "below-all"])
@pytest.mark.parametrize("keep", [False, True])
def test_top_n_threshold_keep_combinations(tiny_reranker, nodes, top_n, threshold_rank, keep):
    ranked = expected(tiny_reranker, nodes)
    if threshold_rank is None:
        threshold = None
    elif threshold_rank == "above-all":
        threshold = math.nextafter(ranked[0][1], 1.0)  # just above the best score, still in [0, 1]
    elif threshold_rank == "below-all":
        threshold = 0.0
    else:
        threshold = ranked[threshold_rank][1]  # keeps exactly the first threshold_rank + 1 (no ties)
    pp = RerankPostprocessor(tiny_reranker, top_n=top_n, score_threshold=threshold, keep_retrieval_score=keep)
    out = pp.postprocess_nodes(nodes, query_str=QUERY)

    want = expected(tiny_reranker, nodes, top_n=top_n, threshold=threshold)
    assert ids_scores(out) == want
    n_pass = {None: 11, 0: 1, 4: 5, "above-all": 0, "below-all": 11}[threshold_rank]
    assert len(out) == min(n_pass, top_n or 11)

    first_stage = {n.node.node_id: n.score for n in nodes}
    for n in out:
        if keep:
            stored = n.node.metadata["retrieval_score"]
            original = first_stage[n.node.node_id]
            assert stored == (None if original is None else float(original))
            assert stored is None or type(stored) is float
            # hidden from what embedding models, rerankers and the LLM read
            for mode in (MetadataMode.EMBED, MetadataMode.LLM):
                assert "retrieval_score" not in n.node.get_content(metadata_mode=mode)
        else:
            assert "retrieval_score" not in n.node.metadata
    json.dumps([n.model_dump() for n in out])  # plain floats: the results serialise


def test_missing_query_raises_and_empty_input_returns_empty(tiny_reranker, nodes):
    pp = RerankPostprocessor(tiny_reranker)
    with pytest.raises(ValueError, match="needs a query"):
        pp.postprocess_nodes(nodes)
    with pytest.raises(ValueError, match="needs a query"):
        pp.postprocess_nodes([])
    assert pp.postprocess_nodes([], query_str=QUERY) == []


async def test_async_missing_query_and_empty_input(tiny_reranker, nodes):
    pp = RerankPostprocessor(tiny_reranker)
    with pytest.raises(ValueError, match="needs a query"):
        await pp.apostprocess_nodes(nodes)
    assert await pp.apostprocess_nodes([], query_str=QUERY) == []


def test_bad_nodes_raise_type_error_naming_the_position(tiny_reranker, nodes):
    pp = RerankPostprocessor(tiny_reranker)
    with pytest.raises(TypeError, match=r"nodes\[2\] must be a NodeWithScore, got TextNode"):
        pp.postprocess_nodes([nodes[0], nodes[1], nodes[2].node], query_str=QUERY)
    with pytest.raises(TypeError, match="query_bundle.query_str must be a str"):
        pp.postprocess_nodes(nodes, query_bundle=QueryBundle(query_str=None))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", [MetadataMode.EMBED, MetadataMode.LLM, MetadataMode.NONE, "all"])
def test_metadata_mode_picks_the_text_the_reranker_reads(tiny_reranker, nodes, mode, monkeypatch):
    seen: list[list[str]] = []
    real_rerank = tiny_reranker.rerank

    def spy(query, documents, top_n=None):
        seen.append(list(documents))
        return real_rerank(query, documents, top_n)

    monkeypatch.setattr(tiny_reranker, "rerank", spy)
    pp = RerankPostprocessor(tiny_reranker, metadata_mode=mode)
    out = pp.postprocess_nodes(nodes, query_str=QUERY)
    mode = MetadataMode(mode)
    assert seen == [[n.node.get_content(metadata_mode=mode) for n in nodes]]
    assert ids_scores(out) == expected(tiny_reranker, nodes, mode=mode)


def test_default_metadata_mode_is_embed(tiny_reranker):
    assert RerankPostprocessor(tiny_reranker).metadata_mode is MetadataMode.EMBED


# --------------------------------------------------------------------------- async


async def test_async_scores_off_the_event_loop(tiny_reranker, nodes, monkeypatch):
    threads: list[int] = []
    real_rerank = tiny_reranker.rerank

    def spy(query, documents, top_n=None, **kwargs):
        threads.append(threading.get_ident())
        return real_rerank(query, documents, top_n, **kwargs)

    pp = RerankPostprocessor(tiny_reranker, top_n=5, keep_retrieval_score=True)
    sync_out = pp.postprocess_nodes(nodes, query_str=QUERY)
    monkeypatch.setattr(tiny_reranker, "rerank", spy)
    before = snapshot(nodes)
    async_out = await pp.apostprocess_nodes(nodes, query_str=QUERY)
    assert threads and threading.get_ident() not in threads
    assert ids_scores(async_out) == ids_scores(sync_out)
    assert [n.node.metadata for n in async_out] == [n.node.metadata for n in sync_out]
    assert snapshot(nodes) == before


async def test_concurrent_async_calls_agree(tiny_reranker, nodes):
    pp = RerankPostprocessor(tiny_reranker, top_n=4)
    queries = [QUERY, "fox river", "energy in plants", QUERY]
    outs = await asyncio.gather(*(pp.apostprocess_nodes(nodes, query_str=q) for q in queries))
    for q, out in zip(queries, outs, strict=True):
        assert ids_scores(out) == ids_scores(pp.postprocess_nodes(nodes, query_str=q))


# --------------------------------------------------------------------------- instrumentation


@pytest.mark.parametrize("use_async", [False, True])
async def test_rerank_events_reach_the_dispatcher(tiny_reranker, nodes, collector, use_async):
    pp = RerankPostprocessor(tiny_reranker, top_n=2)
    if use_async:
        out = await pp.apostprocess_nodes(nodes, query_str=QUERY)
    else:
        out = pp.postprocess_nodes(nodes, query_str=QUERY)
    events = collector.rerank_events()
    assert [type(e) for e in events] == [ReRankStartEvent, ReRankEndEvent]
    start, end = events
    assert start.model_name == tiny_reranker.model_id
    assert start.top_n == 2
    assert start.query.query_str == QUERY
    assert [n.node.node_id for n in start.nodes] == [n.node.node_id for n in nodes]
    assert ids_scores(end.nodes) == ids_scores(out)
    # top_n=None reports how many nodes come back
    collector.events.clear()
    RerankPostprocessor(tiny_reranker).postprocess_nodes(nodes, query_str=QUERY)
    assert collector.rerank_events()[0].top_n == len(nodes)


def test_no_events_for_empty_input(tiny_reranker, collector):
    RerankPostprocessor(tiny_reranker).postprocess_nodes([], query_str=QUERY)
    assert collector.rerank_events() == []


def test_reranking_callback_event(tiny_reranker, nodes):
    debug = LlamaDebugHandler()
    pp = RerankPostprocessor(tiny_reranker, top_n=3, callback_manager=CallbackManager([debug]))
    out = pp.postprocess_nodes(nodes, query_str=QUERY)
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 1
    start, end = pairs[0]
    assert start.payload[EventPayload.QUERY_STR] == QUERY
    assert start.payload[EventPayload.MODEL_NAME] == tiny_reranker.model_id
    assert start.payload[EventPayload.TOP_K] == 3
    assert [n.node.node_id for n in start.payload[EventPayload.NODES]] == [n.node.node_id for n in nodes]
    assert ids_scores(end.payload[EventPayload.NODES]) == ids_scores(out)


# --------------------------------------------------------------------------- query engines (tiny model)


def tiny_index() -> VectorStoreIndex:
    docs = [Document(text=t, doc_id=f"d{i}") for i, t in enumerate(_tiny.ENGLISH)]
    return VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))


async def test_query_engine_with_tiny_model(tiny_reranker, collector):
    index = tiny_index()
    debug = LlamaDebugHandler()
    callback_manager = CallbackManager([debug])
    pp = RerankPostprocessor(tiny_reranker, top_n=4)
    engine = RetrieverQueryEngine.from_args(
        index.as_retriever(similarity_top_k=len(_tiny.ENGLISH)),
        llm=MockLLM(),
        node_postprocessors=[pp],
        callback_manager=callback_manager,
    )
    # the engine hands the postprocessor its callback manager; the model stays
    assert pp.callback_manager is callback_manager
    assert pp.reranker_instance is tiny_reranker

    retrieved = index.as_retriever(similarity_top_k=len(_tiny.ENGLISH)).retrieve(QUERY)
    want = expected(tiny_reranker, retrieved, top_n=4)
    assert len(want) == 4

    response = engine.query(QUERY)
    assert ids_scores(response.source_nodes) == want
    assert all(type(n.score) is float for n in response.source_nodes)
    assert len(debug.get_event_pairs(CBEventType.RERANKING)) == 1

    aresponse = await engine.aquery(QUERY)
    assert ids_scores(aresponse.source_nodes) == want
    assert len(debug.get_event_pairs(CBEventType.RERANKING)) == 2
    assert [type(e) for e in collector.rerank_events()] == [ReRankStartEvent, ReRankEndEvent] * 2


def test_global_settings_are_not_needed(tiny_reranker):
    """Everything passed explicitly: the engine works with the global LLM unset."""
    Settings._llm = None  # restored by mock_settings
    index = tiny_index()
    engine = index.as_query_engine(
        similarity_top_k=5, node_postprocessors=[RerankPostprocessor(tiny_reranker, top_n=2)], llm=MockLLM()
    )
    assert len(engine.query(QUERY).source_nodes) == 2


# --------------------------------------------------------------------------- real model on SQuAD


@pytest.fixture(scope="module")
def squad_setup(squad_articles):
    """One SQuAD article: (index, node id of each paragraph, [(question, gold node id)])."""
    article = next(a for a in squad_articles if a["title"] == SQUAD_TITLE)
    paragraphs = article["paragraphs"][:N_PARAGRAPHS]
    docs = [Document(text=p["context"], doc_id=f"p{i}") for i, p in enumerate(paragraphs)]
    # MockEmbedding makes every paragraph equally similar; the first-stage order is then
    # decided by node id, so fixed ids make the baseline repeatable (and uninformative).
    splitter = SentenceSplitter(chunk_size=1024, id_func=lambda i, doc: f"{doc.doc_id}-{i}")
    index = VectorStoreIndex.from_documents(
        docs, embed_model=MockEmbedding(embed_dim=8), transformations=[splitter]
    )
    node_of = {n.ref_doc_id: n.node_id for n in index.docstore.docs.values()}
    assert len(node_of) == N_PARAGRAPHS  # one node per paragraph
    questions = [(paragraphs[i]["qas"][0]["question"], node_of[f"p{i}"]) for i in QUESTION_PARAGRAPHS]
    return index, questions


@pytest.fixture(scope="module")
def ms_marco(ms_marco_dir) -> Reranker:
    return Reranker(ms_marco_dir)


def gold_first_rate(responses, questions) -> float:
    hits = [r.source_nodes[0].node.node_id == gold for r, (_, gold) in zip(responses, questions, strict=True)]
    return sum(hits) / len(hits)


def check_sources(response, n_expected: int) -> None:
    scores = [n.score for n in response.source_nodes]
    assert len(scores) == n_expected
    assert all(type(s) is float for s in scores)
    assert scores == sorted(scores, reverse=True)


@pytest.mark.real
async def test_real_query_engine_puts_gold_first(squad_setup, ms_marco):
    index, questions = squad_setup
    engine = index.as_query_engine(
        similarity_top_k=N_PARAGRAPHS,
        node_postprocessors=[RerankPostprocessor(ms_marco)],
        llm=MockLLM(),
    )
    responses = [engine.query(q) for q, _ in questions]
    for r in responses:
        check_sources(r, N_PARAGRAPHS)
    sync_rate = gold_first_rate(responses, questions)

    aresponses = await asyncio.gather(*(engine.aquery(q) for q, _ in questions))
    for r in aresponses:
        check_sources(r, N_PARAGRAPHS)
    assert [ids_scores(r.source_nodes) for r in aresponses] == [ids_scores(r.source_nodes) for r in responses]

    # baseline: MockEmbedding gives every paragraph the same similarity, so the
    # first-stage order carries no information
    retriever = index.as_retriever(similarity_top_k=N_PARAGRAPHS)
    baseline = sum(retriever.retrieve(q)[0].node.node_id == gold for q, gold in questions) / len(questions)
    print(f"gold first: reranked {sync_rate:.2f} (sync and async), first stage {baseline:.2f}")
    assert sync_rate >= 0.7
    assert sync_rate > baseline


@pytest.mark.real
def test_real_retriever_evaluator_improves_with_rerank(squad_setup, ms_marco):
    index, questions = squad_setup
    k = 3
    metrics = ["hit_rate", "mrr"]

    def evaluate(evaluator) -> dict[str, float]:
        results = [evaluator.evaluate(q, expected_ids=[gold]) for q, gold in questions]
        return {m: sum(r.metric_vals_dict[m] for r in results) / len(results) for m in metrics}

    base_k = evaluate(
        RetrieverEvaluator.from_metric_names(metrics, retriever=index.as_retriever(similarity_top_k=k))
    )
    base_all = evaluate(
        RetrieverEvaluator.from_metric_names(metrics, retriever=index.as_retriever(similarity_top_k=N_PARAGRAPHS))
    )
    reranked_k = evaluate(
        RetrieverEvaluator.from_metric_names(
            metrics,
            retriever=index.as_retriever(similarity_top_k=N_PARAGRAPHS),
            node_postprocessors=[RerankPostprocessor(ms_marco, top_n=k)],
        )
    )
    print(f"first stage @{k}: {base_k}; first stage @all: {base_all}; reranked @{k}: {reranked_k}")
    assert base_all["hit_rate"] == 1.0  # every paragraph retrieved: the gold is always there
    assert reranked_k["hit_rate"] > base_k["hit_rate"]
    assert reranked_k["hit_rate"] >= 0.8
    # reranked to 3 beats the whole first-stage list (mrr over 12 ranks) and the first-stage top 3
    assert reranked_k["mrr"] > base_all["mrr"]
    assert reranked_k["mrr"] > base_k["mrr"]
    assert reranked_k["mrr"] >= 0.7


# --------------------------------------------------------------------------- example


def load_example():
    spec = importlib.util.spec_from_file_location("llamaindex_query_engine_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.real
def test_example_runs_offline_with_a_path(ms_marco_dir, capsys):
    example = load_example()
    rc = example.main(
        ["--reranker", str(ms_marco_dir), "--embeddings", "mock", "--top-n", "2",
         "--similarity-top-k", str(len(example.CORPUS)), "--query", "Which city is the capital of France?"]
    )
    assert rc == 0
    out = capsys.readouterr().out
    before, after = out.split("After reranking", 1)
    assert "Before reranking" in before
    assert sum(line.lstrip()[:1].isdigit() for line in before.splitlines()) == len(example.CORPUS)
    after_lines = after.strip().splitlines()[1:]
    assert len(after_lines) == 2
    assert "Paris is the capital" in after_lines[0]


def test_example_fails_with_one_line_when_the_model_cannot_load(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--embeddings", "mock"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "cross-encoder/ms-marco-MiniLM-L-12-v2" in lines[0]
    assert proc.stdout == ""


# --------------------------------------------------------------------------- hostile input (issue 12)


@pytest.fixture(scope="module")
def raw_reranker(tiny_bert) -> Reranker:
    """Settings that differ from every default: a round trip that drops them shows."""
    return Reranker(tiny_bert, normalize="none", batch_size=3, max_length=64)


def round_trips(pp: RerankPostprocessor) -> dict[str, RerankPostprocessor]:
    return {
        "json": RerankPostprocessor.from_json(pp.to_json()),
        "dict": RerankPostprocessor.from_dict(json.loads(json.dumps(pp.to_dict()))),
        "pickle": pickle.loads(pickle.dumps(pp)),
        "model_validate": RerankPostprocessor.model_validate(pp.model_dump()),
        "model_validate_json": RerankPostprocessor.model_validate_json(pp.model_dump_json()),
        "deepcopy": copy.deepcopy(pp),
    }


def test_round_trips_keep_every_reranker_setting(raw_reranker, nodes, caplog):
    """Before: round trips rebuilt Reranker(model) with default settings: raw logits of 10 became
    sigmoids of 1.0 and a threshold of 0.5 meant something else; pickle logged a removed attribute."""
    pp = RerankPostprocessor(raw_reranker, top_n=4, score_threshold=0.5)
    want = ids_scores(pp.postprocess_nodes(nodes, query_str=QUERY))
    with caplog.at_level(logging.WARNING):
        copies = round_trips(pp)
    assert "unpickleable" not in caplog.text
    for name, again in copies.items():
        assert again.reranker_instance.options() == raw_reranker.options(), name
        assert again.reranker_instance.backend is raw_reranker.backend, name  # shared, not reloaded
        assert (again.top_n, again.score_threshold) == (4, 0.5), name
        assert ids_scores(again.postprocess_nodes(nodes, query_str=QUERY)) == want, name
    assert want == expected(raw_reranker, nodes, top_n=4, threshold=0.5)


def test_model_validate_with_a_reranker_keeps_its_settings(raw_reranker):
    pp = RerankPostprocessor.model_validate({"reranker": raw_reranker, "score_threshold": 3.0})
    assert pp.reranker_instance.options() == raw_reranker.options()


def test_reranker_options_are_checked(tiny_bert, raw_reranker):
    pp = RerankPostprocessor(str(tiny_bert), reranker_options={"normalize": "none", "max_length": 64})
    assert pp.reranker_instance.normalize == "none" and pp.reranker_instance.max_length == 64
    with pytest.raises(ValueError, match="unknown reranker option"):
        RerankPostprocessor(str(tiny_bert), reranker_options={"normalise": "none"})
    with pytest.raises(ValueError, match="not with a Reranker instance"):
        RerankPostprocessor(raw_reranker, reranker_options={"normalize": "sigmoid"})


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"score_threshold": 5.0}, ValueError, r"score_threshold=5.0 is outside \[0, 1\]"),
        ({"score_threshold": -0.1}, ValueError, r"outside \[0, 1\]"),
        ({"top_n": np.int64(0)}, ValueError, "top_n must be >= 1"),
    ],
)
def test_thresholds_off_the_score_scale_are_refused(tiny_reranker, kwargs, error, message):
    """Before: score_threshold=5.0 with sigmoid scores was accepted and always returned []."""
    with pytest.raises(error, match=message):
        RerankPostprocessor(tiny_reranker, **kwargs)


def test_assignments_are_validated_and_leave_the_postprocessor_unchanged(tiny_reranker, raw_reranker, nodes):
    """Before: top_n=0 and score_threshold="0.5" were accepted after construction and failed later."""
    pp = RerankPostprocessor(tiny_reranker, top_n=2, score_threshold=0.25)
    for name, value, error in [("top_n", 0, ValueError), ("top_n", "3", TypeError),
                               ("score_threshold", "0.5", TypeError), ("score_threshold", 5.0, ValueError),
                               ("metadata_mode", "sometimes", ValueError)]:
        with pytest.raises(error):
            setattr(pp, name, value)
        assert (pp.top_n, pp.score_threshold, pp.metadata_mode) == (2, 0.25, MetadataMode.EMBED)
    pp.top_n = np.int64(3)
    assert pp.top_n == 3 and type(pp.top_n) is int


def test_assigning_a_reranker_scores_with_it(tiny_reranker, raw_reranker, tiny_xlmr, nodes):
    """Before: the field changed but scoring kept the old model."""
    pp = RerankPostprocessor(tiny_reranker)
    xlmr = Reranker(tiny_xlmr)
    pp.reranker = xlmr
    assert pp.reranker_instance is xlmr and pp.reranker == xlmr.model_id
    assert ids_scores(pp.postprocess_nodes(nodes, query_str=QUERY)) == expected(xlmr, nodes)
    pp.reranker = raw_reranker  # raw logits: the options follow the reranker
    assert pp.reranker_options["normalize"] == "none"
    pp.score_threshold = 5.0  # allowed on the raw scale
    with pytest.raises(ValueError, match="outside"):
        pp.reranker = tiny_reranker  # sigmoid scores cannot meet 5.0: refused, nothing changes
    assert pp.reranker_instance is raw_reranker and pp.reranker_options["normalize"] == "none"
    pp.reranker_options = {**pp.reranker_options, "max_length": 32}
    assert pp.reranker_instance.max_length == 32 and pp.reranker_instance.backend is raw_reranker.backend


def test_uncopyable_metadata_and_model_dump_json(tiny_reranker, nodes):
    """Before: a lock in a node's metadata crashed postprocessing (deep copy); model_dump_json failed."""
    lock = threading.Lock()
    nodes[0].node.metadata["handle"] = lock
    nodes[0].node.excluded_embed_metadata_keys.append("handle")
    pp = RerankPostprocessor(tiny_reranker, keep_retrieval_score=True)
    out = pp.postprocess_nodes(nodes, query_str=QUERY)
    first = next(n for n in out if n.node.node_id == "n0")
    assert first.node.metadata["handle"] is lock and first.node is not nodes[0].node
    assert RETRIEVAL_SCORE_KEY not in nodes[0].node.metadata
    assert json.loads(pp.model_dump_json())["reranker_options"]["normalize"] == "sigmoid"


def test_nodes_without_text_are_not_scored(tiny_reranker, nodes, caplog):
    """Before: ImageNode and empty-text nodes were scored as "" and could outrank real passages."""
    mixed = list(nodes)
    mixed.insert(1, NodeWithScore(node=ImageNode(image="aGVsbG8=", metadata={"source": "img"}), score=0.9))
    mixed.insert(4, NodeWithScore(node=TextNode(text="   ", metadata={"source": "blank"}), score=0.8))
    pp = RerankPostprocessor(tiny_reranker)
    out = pp.postprocess_nodes(mixed, query_str=QUERY)
    assert ids_scores(out) == expected(tiny_reranker, nodes)
    assert "nodes [1, 4] have no text" in caplog.text
    assert pp.postprocess_nodes([mixed[1]], query_str=QUERY) == []


def test_window_metadata_is_added_and_hidden_from_embed_and_llm_text(tiny_bert):
    from rerank_plugins.integrations.llamaindex import RELEVANCE_SPAN_KEY, RELEVANCE_WINDOWS_KEY

    long_text = " ".join(_tiny.ENGLISH) * 8
    items = [NodeWithScore(node=TextNode(id_="long", text=long_text), score=0.5),
             NodeWithScore(node=TextNode(id_="short", text=_tiny.ENGLISH[1]), score=0.4)]
    reranker = Reranker(tiny_bert, max_length=64, stride=16)
    post = RerankPostprocessor(reranker, metadata_mode="none")
    out = {n.node.id_: n for n in post.postprocess_nodes(items, query_str=QUERY)}
    expected = {r.text: r for r in reranker.rerank(QUERY, [long_text, _tiny.ENGLISH[1]])}
    for node_id, text in (("long", long_text), ("short", _tiny.ENGLISH[1])):
        meta = out[node_id].node.metadata
        assert meta[RELEVANCE_SPAN_KEY] == expected[text].span
        assert meta[RELEVANCE_WINDOWS_KEY] == expected[text].windows
        for mode in (MetadataMode.EMBED, MetadataMode.LLM):
            assert "relevance_span" not in out[node_id].node.get_content(metadata_mode=mode)
    assert out["long"].node.metadata[RELEVANCE_WINDOWS_KEY] > 1
    assert out["short"].node.metadata[RELEVANCE_SPAN_KEY] == (0, len(_tiny.ENGLISH[1]))
    assert "relevance_span" not in items[0].node.metadata  # the caller's node is untouched
