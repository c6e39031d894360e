"""Input checks shared by every front door (rerank_plugins/_validation.py), and Reranker.options():
lone surrogates, numpy integers, empty queries, pickling and copying a Reranker.
"""

from __future__ import annotations

import copy
import logging
import pickle
import threading

import numpy as np
import pytest

import rerank_plugins.core
from rerank_plugins import Reranker
from rerank_plugins.core import CPU_MAX_BATCH_TOKENS, DEFAULT_STRIDE

QUERY = "What is the capital of France?"
DOCS = ["Paris is the capital and most populous city of France.", "서울은 대한민국의 수도이다.", "Water boils."]


@pytest.fixture(scope="module")
def reranker(tiny_xlmr):
    return Reranker(tiny_xlmr, normalize="none", batch_size=2)


# --------------------------------------------------------------------------- lone surrogates


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.score("q\ud800", DOCS), r"query contains a lone surrogate '\\ud800' at character 1"),
        (lambda r: r.rerank(QUERY, [*DOCS, "x\udfffy"]), r"documents\[3\] contains a lone surrogate '\\udfff' at"),
        (lambda r: r.score_many([QUERY, "\ud83d"], [DOCS, DOCS]), r"queries\[1\] contains a lone surrogate"),
        (lambda r: r.rerank_many([QUERY], [["ok", "\ud83dok"]]), r"documents_per_query\[0\]\[1\] contains"),
    ],
)
def test_lone_surrogates_are_a_value_error_naming_the_position(reranker, call, message):
    # Before: "TypeError: TextInputSequence must be str" from inside the tokenizer, no position.
    with pytest.raises(ValueError, match=message):
        call(reranker)


async def test_async_front_doors_check_surrogates_too(reranker):
    with pytest.raises(ValueError, match=r"documents\[0\] contains a lone surrogate"):
        await reranker.arerank(QUERY, ["\udc80"])
    with pytest.raises(ValueError, match="query contains a lone surrogate"):
        await reranker.ascore("\udc80", DOCS)


def test_llm_prompt_with_a_surrogate_is_refused(tiny_gemma):
    with pytest.raises(ValueError, match="prompt contains a lone surrogate"):
        Reranker(tiny_gemma, prompt="Yes or no?\ud800")


def test_valid_astral_text_is_not_a_surrogate(reranker):
    from rerank_plugins._validation import find_surrogate

    assert find_surrogate("emoji \U0001f600 and 한글") is None
    assert len(reranker.score("\U0001f600 capital?", ["Paris \U0001f1eb\U0001f1f7", "\x00nul"])) == 2


# --------------------------------------------------------------------------- top_n, empty query


def test_numpy_integers_are_accepted_for_top_n(reranker):
    # Before: np.int64(1) was refused while numpy floats were accepted for thresholds.
    from rerank_plugins._validation import check_top_n

    assert check_top_n(np.int64(2)) == 2 and type(check_top_n(np.int32(1))) is int
    ranked = reranker.rerank(QUERY, DOCS, top_n=np.int64(1))
    assert [r.index for r in ranked] == [reranker.rerank(QUERY, DOCS)[0].index]
    with pytest.raises(ValueError, match="top_n must be >= 1"):
        reranker.rerank(QUERY, DOCS, top_n=np.int64(0))
    with pytest.raises(TypeError, match="top_n must be an int"):
        reranker.rerank(QUERY, DOCS, top_n=np.float64(1.0))


def test_an_empty_query_is_warned_about_once(reranker, caplog, monkeypatch):
    # Before: an empty or whitespace-only query was scored without a word.
    monkeypatch.setattr(rerank_plugins.core, "_blank_query_reported", False)
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        scores = reranker.score("   ", DOCS)
        reranker.rerank("", DOCS)
        reranker.score_many(["\t"], [DOCS])
        reranker.score(QUERY, DOCS)
    warnings = [r.getMessage() for r in caplog.records if "empty or whitespace" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("query is empty or whitespace only")
    assert len(scores) == 3  # still scored: the warning does not change results


# --------------------------------------------------------------------------- options, pickle, copy


def test_options_rebuild_an_equal_reranker(tiny_xlmr, tiny_gemma):
    reranker = Reranker(tiny_xlmr, normalize="softmax", batch_size=3, max_length=40, dtype="float32")
    options = reranker.options()
    assert options == {
        "model": str(tiny_xlmr.resolve()), "kind": "sequence-classification", "normalize": "softmax",
        "batch_size": 3, "max_batch_tokens": CPU_MAX_BATCH_TOKENS, "overflow": "window", "stride": DEFAULT_STRIDE,
        "max_windows": 32,
        "max_length": 40, "device": "cpu", "dtype": "float32", "engine": "torch", "template": "auto",
        "instruction": None, "prompt": None, "query_prefix": None, "passage_prefix": None,
    }
    again = Reranker(**options)
    assert again.backend is reranker.backend and again.options() == options
    llm = Reranker(tiny_gemma, prompt="Relevant?", query_prefix="Q: ", passage_prefix="P: ", max_length=64)
    assert Reranker(**llm.options()).score("q", ["p"]) == llm.score("q", ["p"])


def test_a_reranker_pickles_and_deep_copies_sharing_the_model(reranker):
    # Before: "cannot pickle '_thread.lock' object".
    for again in (pickle.loads(pickle.dumps(reranker)), copy.deepcopy(reranker), copy.copy(reranker)):
        assert type(again) is Reranker and again is not reranker
        assert again.options() == reranker.options()
        assert again.backend is reranker.backend  # the loaded weights are shared, never copied
        assert again.score(QUERY, DOCS) == reranker.score(QUERY, DOCS)


def test_safe_deepcopy_shares_only_what_cannot_be_copied():
    from rerank_plugins._validation import safe_deepcopy

    lock = threading.Lock()
    original = {"nested": {"list": [1, 2]}, "lock": lock, "pair": (lock, [3])}
    copied = safe_deepcopy(original)
    assert copied == original
    assert copied["nested"] is not original["nested"] and copied["nested"]["list"] is not original["nested"]["list"]
    assert copied["lock"] is lock and copied["pair"][0] is lock and copied["pair"][1] is not original["pair"][1]
