"""Property-based tests (Hypothesis) over the public API with hostile input.

Arbitrary Unicode (lone surrogates, NUL, combining marks, Hangul, astral characters),
arbitrary sizes and wrong types: every front door either returns results in input
order or raises the documented TypeError / ValueError naming the position, and
never changes the caller's objects.

The fixtures are module-scoped (one tiny model each, built once), so Hypothesis'
function-scoped-fixture health check does not apply; examples are few and run
without a deadline, because 2 shared CPU cores make timings noisy.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerank_plugins import Reranker

FAST = settings(max_examples=20, deadline=None, database=None)
FEWER = settings(max_examples=10, deadline=None, database=None)  # several model calls per example

CHARACTERS = st.one_of(
    st.characters(codec="utf-8"),  # any encodable character, astral ones included
    st.just("\x00"),
    st.characters(categories=["Mn", "Me"]),  # combining marks
    st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),  # Hangul syllables
    st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),  # Hangul jamo
    st.sampled_from(" \t\n.,?"),
    st.characters(min_codepoint=ord("a"), max_codepoint=ord("z")),
)
# Joined lists rather than st.text(): st.text() almost never yields a lone surrogate.
VALID_TEXTS = st.lists(CHARACTERS, max_size=30).map("".join)
WITH_SURROGATE = st.tuples(VALID_TEXTS, st.characters(categories=["Cs"]), VALID_TEXTS).map("".join)
# About one text in eight holds a lone surrogate, so that both outcomes are common.
TEXTS = st.integers(0, 7).flatmap(lambda k: WITH_SURROGATE if k == 0 else VALID_TEXTS)
DOCUMENTS = st.lists(TEXTS, max_size=6)
NOT_STR = st.one_of(
    st.none(), st.integers(), st.floats(), st.binary(max_size=4), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1), st.booleans(),
)


@pytest.fixture(scope="module")
def reranker(tiny_xlmr) -> Reranker:
    """Raw logits, and batches of 2 so that length sorting and order restoration are exercised."""
    return Reranker(tiny_xlmr, normalize="none", batch_size=2)


def surrogate_in(*texts: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for t in texts for ch in t)


@FAST
@given(query=TEXTS, documents=DOCUMENTS)
def test_any_unicode_scores_in_input_order_or_names_the_surrogate(reranker, query, documents):
    snapshot = copy.deepcopy(documents)
    if surrogate_in(query, *documents):
        bad = next((i for i, d in enumerate(documents) if surrogate_in(d)), None)
        first = "query" if surrogate_in(query) else f"documents[{bad}]"
        for call in (reranker.score, reranker.rerank):
            with pytest.raises(ValueError, match=re.escape(first) + " contains a lone surrogate"):
                call(query, documents)
    else:
        scores = reranker.score(query, documents)
        ranked = reranker.rerank(query, documents)
        assert len(scores) == len(documents) and all(type(s) is float for s in scores)
        assert sorted(r.index for r in ranked) == list(range(len(documents)))
        for r in ranked:
            assert r.text == documents[r.index] and r.logit == scores[r.index]
        # Input order: each score is the document's own, whatever the batching did.
        alone = [reranker.score(query, [d])[0] for d in documents]
        assert np.allclose(scores, alone, atol=1e-4)
    assert documents == snapshot


@FEWER
@given(queries=st.lists(TEXTS, max_size=3), data=st.data())
def test_score_many_equals_one_query_at_a_time(reranker, queries, data):
    lists = [data.draw(st.lists(TEXTS, max_size=4)) for _ in queries]
    snapshot = copy.deepcopy(lists)
    if surrogate_in(*queries, *(d for docs in lists for d in docs)):
        with pytest.raises(ValueError, match="contains a lone surrogate"):
            reranker.score_many(queries, lists)
    else:
        many = reranker.score_many(queries, lists)
        assert [len(s) for s in many] == [len(d) for d in lists]
        for q, docs, got in zip(queries, lists, many, strict=True):
            assert np.allclose(got, reranker.score(q, docs), atol=1e-4)
        ranked = reranker.rerank_many(queries, lists, top_n=2)
        assert [len(r) for r in ranked] == [min(2, len(d)) for d in lists]
    assert lists == snapshot


@FAST
@given(documents=st.lists(st.text(alphabet="abc ", max_size=5), min_size=1, max_size=5), bad=NOT_STR, data=st.data())
def test_wrong_types_are_a_type_error_naming_the_position(reranker, documents, bad, data):
    position = data.draw(st.integers(0, len(documents)))
    mixed = [*documents[:position], bad, *documents[position:]]
    snapshot = copy.deepcopy(mixed)
    for call in (reranker.score, reranker.rerank):
        message = f"documents[{position}] must be a str, got {type(bad).__name__}"
        with pytest.raises(TypeError, match=re.escape(message)):
            call("query", mixed)
    with pytest.raises(TypeError, match=f"query must be a str, got {type(bad).__name__}"):
        reranker.score(bad, documents)
    with pytest.raises(TypeError, match=re.escape(f"documents_per_query[0][{position}] must be a str")):
        reranker.score_many(["q"], [mixed])
    assert mixed == snapshot or any(x != x for x in mixed)  # NaN is never equal to itself


@FAST
@given(
    top_n=st.one_of(st.none(), st.integers(-3, 8), st.floats(allow_nan=True), st.booleans(), st.text(max_size=2),
                    st.integers(-3, 8).map(np.int64)),
    threshold=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2),
                        st.booleans(), st.floats(-2, 2).map(np.float32)),
)
def test_cut_settings_raise_the_documented_errors_or_cut(reranker, top_n, threshold):
    documents = ["Paris is the capital of France.", "서울은 수도이다.", "Water boils.", "x"]
    try:
        ranked = reranker.rerank("capital?", documents, top_n, score_threshold=threshold)
    except (TypeError, ValueError) as exc:
        assert re.match(r"(top_n|score_threshold)", str(exc)), exc
        return
    assert len(ranked) <= (len(documents) if top_n is None else int(top_n))
    if threshold is not None:
        assert all(r.score >= float(threshold) for r in ranked)
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)


# --------------------------------------------------------------------------- adapters


@FEWER
@given(query=TEXTS, texts=DOCUMENTS)
def test_langchain_compressor_never_mutates_and_keeps_input_texts(reranker, query, texts):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from rerank_plugins.integrations.langchain import RerankCompressor

    docs = [Document(page_content=t, metadata={"i": i, "nested": {"t": [t]}}) for i, t in enumerate(texts)]
    snapshot = [d.model_dump() for d in docs]
    compressor = RerankCompressor(reranker=reranker, top_n=None)
    if surrogate_in(query, *texts):
        with pytest.raises(ValueError, match="contains a lone surrogate"):
            compressor.compress_documents(docs, query)
    else:
        out = compressor.compress_documents(docs, query)
        readable = [i for i, t in enumerate(texts) if t.strip()]
        assert sorted(d.metadata["i"] for d in out) == readable
        for d in out:
            assert d.page_content == texts[d.metadata["i"]]
    assert [d.model_dump() for d in docs] == snapshot


@FEWER
@given(query=TEXTS, texts=DOCUMENTS)
def test_llamaindex_postprocessor_never_mutates_and_keeps_input_texts(reranker, query, texts):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode

    from rerank_plugins.integrations.llamaindex import RerankPostprocessor

    nodes = [NodeWithScore(node=TextNode(id_=f"n{i}", text=t, metadata={"k": [i]}), score=0.1) for i, t in
             enumerate(texts)]
    snapshot = [(n.score, n.node.model_dump()) for n in nodes]
    pp = RerankPostprocessor(reranker)
    if surrogate_in(query, *texts):
        with pytest.raises(ValueError, match="contains a lone surrogate"):
            pp.postprocess_nodes(nodes, query_str=query)
    else:
        out = pp.postprocess_nodes(nodes, query_str=query)
        assert sorted(n.node.node_id for n in out) == sorted(f"n{i}" for i, t in enumerate(texts) if t.strip())
        for n in out:
            assert n.node.get_content() == texts[int(n.node.node_id[1:])]
    assert [(n.score, n.node.model_dump()) for n in nodes] == snapshot
