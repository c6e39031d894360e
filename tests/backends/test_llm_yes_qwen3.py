"""kind="llm-yes", template="qwen3": Qwen3-Reranker scoring, exact to its model card."""

from __future__ import annotations

import functools
import json

import _tiny
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rerank_plugins import ModelLoadError, Reranker
from rerank_plugins.backends.base import ScoringOptions

# The model card passes max_length to tokenizer.pad together with padding=True; transformers warns.
pytestmark = pytest.mark.filterwarnings("ignore:`max_length` is ignored when `padding`=`True`:UserWarning")

# --------------------------------------------------------------------------- the reference (the model card)

CARD_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
CARD_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
CARD_TASK = "Given a web search query, retrieve relevant passages that answer the query"


def format_instruction(instruction, query, doc):
    if instruction is None:
        instruction = "Given a web search query, retrieve relevant passages that answer the query"
    output = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}".format(  # noqa: UP032 - the card
        instruction=instruction, query=query, doc=doc
    )
    return output


def process_inputs(pairs, tokenizer, prefix_tokens, suffix_tokens, max_length):
    inputs = tokenizer(
        pairs, padding=False, truncation="longest_first",
        return_attention_mask=False, max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
    )
    for i, ele in enumerate(inputs["input_ids"]):
        inputs["input_ids"][i] = prefix_tokens + ele + suffix_tokens
    inputs = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
    return inputs


@torch.no_grad()
def compute_logits(model, inputs, token_true_id, token_false_id):
    batch_scores = model(**inputs).logits[:, -1, :]
    true_vector = batch_scores[:, token_true_id]
    false_vector = batch_scores[:, token_false_id]
    batch_scores = torch.stack([false_vector, true_vector], dim=1)
    batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
    scores = batch_scores[:, 1].exp().tolist()
    return scores


@functools.cache
def card_model(path):
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    return tokenizer, model


def card_scores(path, pairs, *, instruction=CARD_TASK, max_length=8192, batch_size=4):
    """The card's usage block: probabilities of "yes", batch by batch."""
    tokenizer, model = card_model(path)
    token_false_id = tokenizer.convert_tokens_to_ids("no")
    token_true_id = tokenizer.convert_tokens_to_ids("yes")
    prefix_tokens = tokenizer.encode(CARD_PREFIX, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(CARD_SUFFIX, add_special_tokens=False)
    scores = []
    for i in range(0, len(pairs), batch_size):
        texts = [format_instruction(instruction, q, d) for q, d in pairs[i : i + batch_size]]
        inputs = process_inputs(texts, tokenizer, prefix_tokens, suffix_tokens, max_length)
        scores.extend(compute_logits(model, inputs, token_true_id, token_false_id))
    return np.array(scores)


def ours(path, pairs, *, normalize="sigmoid", **kwargs):
    # The card truncates; overflow="truncate" is the exact card path (windows are tested below).
    reranker = Reranker(path, normalize=normalize, overflow="truncate", **kwargs)
    return np.array(reranker.score_many([q for q, _ in pairs], [[d] for _, d in pairs])).ravel()


def log_odds(p):
    return np.log(p) - np.log1p(-p)


SHORT = [
    ("what is the capital of France?", "Paris is the capital and most populous city of France."),
    ("reranking", "Reranking reorders retrieved passages so that the answer comes first."),
    ("boiling point of water", "Water boils at one hundred degrees Celsius at sea level."),
    ("fox", "The quick brown fox jumps over the lazy dog near the river bank."),
    ("plants", "\nPhotosynthesis converts light energy."),  # a newline merges with "<Document>: "'s space
    ("a", "-b"),
    ("yes or no?", "yes"),
    ("empty", ""),
]
KOREAN = [
    ("대한민국의 수도는?", "서울은 대한민국의 수도이며 가장 큰 도시이다."),
    ("한글은 누가 만들었나?", "한글은 세종대왕이 창제한 문자 체계이다."),
    ("김치", "김치는 배추와 고춧가루로 만드는 한국의 전통 음식이다. " * 3),
    ("부산", "Busan 부산은 대한민국 제2의 도시이자 최대의 항구 도시이다."),
]
LONG_PASSAGE = " ".join(_tiny.CORPUS) * 6  # thousands of tokens


def fixed_tokens(path) -> int:
    tokenizer = AutoTokenizer.from_pretrained(path)
    return len(tokenizer.encode(CARD_PREFIX, add_special_tokens=False)) + len(
        tokenizer.encode(CARD_SUFFIX, add_special_tokens=False)
    )


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("pairs", [SHORT, KOREAN], ids=["short", "korean"])
def test_parity_with_model_card(tiny_qwen3, pairs):
    ref = card_scores(tiny_qwen3, pairs)
    got = ours(tiny_qwen3, pairs, batch_size=3)
    assert np.abs(got - ref).max() <= 1e-5
    # Result.logit is the log-odds logit(yes) - logit(no): sigmoid of it is the card's probability.
    raw = ours(tiny_qwen3, pairs, normalize="none", batch_size=3)
    assert np.abs(raw - log_odds(ref)).max() <= 1e-4
    assert np.ptp(ref) > 0.02  # scores differ, so a shuffle would fail


def test_over_long_inputs_cut_the_middle_text_and_keep_the_prompt_tail(tiny_qwen3, caplog):
    max_length = fixed_tokens(tiny_qwen3) + 48
    long_query = " ".join(_tiny.ENGLISH)  # alone longer than the 48 tokens left: cuts into the query
    pairs = [(q, LONG_PASSAGE + f" {i}") for i, (q, _) in enumerate(SHORT[:4])]
    pairs += [(long_query, "short passage"), ("서울", "서울은 수도 " * 40)] + SHORT[:2]
    ref = card_scores(tiny_qwen3, pairs, max_length=max_length)
    got = ours(tiny_qwen3, pairs, max_length=max_length, batch_size=3)
    assert np.abs(got - ref).max() <= 1e-5
    assert any(f"6 of 8 pairs exceed max_length={max_length}" in r.getMessage() for r in caplog.records)

    reranker = Reranker(tiny_qwen3, max_length=max_length)
    backend = reranker.backend
    template = backend.template_for(reranker._options)
    suffix = AutoTokenizer.from_pretrained(tiny_qwen3).encode(CARD_SUFFIX, add_special_tokens=False)
    for pair in template.encode([q for q, _ in pairs[:6]], [d for _, d in pairs[:6]], max_length):
        row, cut = template.card_ids(pair, max_length)
        assert cut and len(row) == max_length
        assert row[-len(suffix) :] == suffix  # the tail the score reads is whole


def test_custom_instruction(tiny_qwen3):
    instruction = "Given a question, judge whether the passage answers it"
    ref = card_scores(tiny_qwen3, SHORT + KOREAN, instruction=instruction)
    got = ours(tiny_qwen3, SHORT + KOREAN, instruction=instruction)
    assert np.abs(got - ref).max() <= 1e-5
    assert np.abs(got - ours(tiny_qwen3, SHORT + KOREAN)).max() > 1e-3  # the instruction really changed the input


def test_batch_scoring_equals_one_by_one(tiny_qwen3):
    pairs = SHORT + KOREAN + [("fox", LONG_PASSAGE)]
    batched = ours(tiny_qwen3, pairs, batch_size=16, max_length=256)
    single = np.array([ours(tiny_qwen3, [p], batch_size=1, max_length=256)[0] for p in pairs])
    assert np.abs(batched - single).max() <= 1e-5
    card_single = card_scores(tiny_qwen3, pairs, max_length=256, batch_size=1)
    assert np.abs(single - card_single).max() <= 1e-5


# --------------------------------------------------------------------------- the template interface


def test_qwen3_template_splits_each_pair_around_the_passage(tiny_qwen3):
    reranker = Reranker(tiny_qwen3)
    template = reranker.backend.template_for(reranker._options)
    tokenizer = reranker.backend.tokenizer
    prefix = tokenizer.encode(CARD_PREFIX, add_special_tokens=False)
    pairs = SHORT + KOREAN
    merged_boundary = 0
    for (q, d), pair in zip(pairs, template.encode([q for q, _ in pairs], [d for _, d in pairs], 8192), strict=True):
        # head[fixed:] + passage is the card's one tokenisation of the formatted text.
        assert pair.head[: pair.fixed] == prefix
        assert pair.head[pair.fixed :] + pair.passage == tokenizer(
            format_instruction(CARD_TASK, q, d), add_special_tokens=False
        )["input_ids"]
        assert pair.tail == tokenizer.encode(CARD_SUFFIX, add_special_tokens=False)
        assert len(pair.offsets) == len(pair.passage)
        if not d:
            assert pair.passage == []
            continue
        ends = [e for _, e in pair.offsets]
        assert ends == sorted(ends) and ends[-1] == len(d)
        assert all(0 <= s <= e <= len(d) for s, e in pair.offsets)
        decoded = tokenizer.decode(pair.passage)
        assert decoded.endswith(d)
        # The head ends at "<Document>:" or "<Document>: ": a token straddling the boundary is the passage's.
        text, lead = format_instruction(CARD_TASK, q, d), tokenizer.decode(pair.head[pair.fixed :])
        assert text.startswith(lead) and len(text) - len(d) - 1 <= len(lead) <= len(text) - len(d)
        merged_boundary += decoded != d  # the first passage token carries "<Document>: "'s space
    assert merged_boundary >= 2  # "\nPhotosynthesis" and the Korean passages straddle the boundary


def test_bge_gemma_template_splits_each_pair_around_the_passage(tiny_gemma):
    reranker = Reranker(tiny_gemma)
    assert reranker.template == "bge-gemma"
    template = reranker.backend.template_for(reranker._options)
    tokenizer = reranker.backend.tokenizer
    pairs = [("q", "Paris is the capital."), ("김치", "김치는 음식이다."), ("x", "\nnew line")]
    for (q, d), pair in zip(pairs, template.encode([q for q, _ in pairs], [d for _, d in pairs], 1024), strict=True):
        bos = [tokenizer.bos_token_id]
        query = tokenizer(f"A: {q}", add_special_tokens=False)["input_ids"]
        assert pair.head[: pair.fixed] == bos + query
        sep = tokenizer("\n", add_special_tokens=False)["input_ids"]
        assert pair.head[pair.fixed :] + pair.passage == sep + tokenizer(f"B: {d}", add_special_tokens=False)[
            "input_ids"
        ]
        assert tokenizer.decode(pair.passage).endswith(d) and pair.offsets[-1][1] == len(d)


# --------------------------------------------------------------------------- template choice and errors


def test_auto_detects_the_template_from_model_type(tiny_qwen3, tiny_gemma):
    qwen = Reranker(tiny_qwen3)
    assert (qwen.kind, qwen.template, qwen.max_length) == ("llm-yes", "qwen3", 8192)  # the card's max_length
    assert "template='qwen3'" in repr(qwen)
    gemma = Reranker(tiny_gemma)
    assert (gemma.template, gemma.max_length) == ("bge-gemma", 1024)
    assert Reranker(tiny_gemma, template="bge-gemma").template == "bge-gemma"
    assert Reranker(tiny_qwen3, template="bge-gemma").max_length == 1024  # the template's card decides


def test_unknown_model_type_needs_an_explicit_template(models_dir):
    path = _tiny.build_qwen3(models_dir / "qwen2", model_type="qwen2")
    with pytest.raises(ValueError, match=r"model_type 'qwen2'.*pass template= one of: bge-gemma, qwen3"):
        Reranker(path)
    # Named explicitly, the template works on any causal LM with the right tokens, with its card's max_length.
    assert Reranker(path, template="qwen3").max_length == 8192
    pairs = SHORT[:4] + KOREAN[:2]
    got = ours(path, pairs, template="qwen3")
    assert np.abs(got - card_scores(path, pairs)).max() <= 1e-5


def test_yes_split_into_several_tokens_is_a_clear_load_error(models_dir):
    path = _tiny.build_qwen3(models_dir / "qwen3-no-yes", yes=False)
    assert len(AutoTokenizer.from_pretrained(path)("yes", add_special_tokens=False)["input_ids"]) > 1
    with pytest.raises(ModelLoadError, match=r"splits 'yes' into \d+ tokens .*the qwen3 template .* single token"):
        Reranker(path)


def test_options_that_the_template_does_not_take_are_refused(tiny_qwen3, tiny_gemma, tiny_bert):
    with pytest.raises(ValueError, match="prompt apply to the bge-gemma template only"):
        Reranker(tiny_qwen3, prompt="Is it relevant?")
    with pytest.raises(ValueError, match="query_prefix, passage_prefix apply to the bge-gemma template only"):
        Reranker(tiny_qwen3, query_prefix="Q: ", passage_prefix="P: ")
    with pytest.raises(ValueError, match="instruction applies to the qwen3 template only"):
        Reranker(tiny_gemma, instruction="Find passages")
    with pytest.raises(ValueError, match="apply to kind='llm-yes' only"):
        Reranker(tiny_bert, template="qwen3")
    with pytest.raises(ValueError, match="apply to kind='llm-yes' only"):
        Reranker(tiny_bert, instruction="Find passages")
    with pytest.raises(ValueError, match="template must be 'auto' or one of: bge-gemma, qwen3; got 'qwen'"):
        Reranker(tiny_qwen3, template="qwen")
    with pytest.raises(TypeError, match="template must be a str, got int"):
        Reranker(tiny_qwen3, template=3)
    with pytest.raises(TypeError, match="instruction must be a str, got bytes"):
        Reranker(tiny_qwen3, instruction=b"x")
    fixed = fixed_tokens(tiny_qwen3)
    with pytest.raises(ValueError, match=f"max_length={fixed} leaves no room.*take {fixed} tokens"):
        Reranker(tiny_qwen3, max_length=fixed)


def test_resolve_options_settles_auto(tiny_qwen3):
    backend = Reranker(tiny_qwen3).backend
    resolved = backend.resolve_options(ScoringOptions(max_length=512, template="auto"))
    assert resolved.template == "qwen3" and resolved.max_length == 512


# --------------------------------------------------------------------------- every front door


def test_rerank_and_score_many(tiny_qwen3):
    query = "what is the capital of France?"
    docs = [d for _, d in SHORT + KOREAN]
    ref = card_scores(tiny_qwen3, [(query, d) for d in docs])
    reranker = Reranker(tiny_qwen3, batch_size=5)
    results = reranker.rerank(query, docs, top_n=4)
    assert [r.index for r in results] == list(np.argsort(-ref, kind="stable")[:4])
    assert [r.score for r in results] == pytest.approx(np.sort(ref)[::-1][:4], abs=1e-5)
    assert [1 / (1 + np.exp(-r.logit)) for r in results] == pytest.approx([r.score for r in results], abs=1e-6)

    queries = [query, "대한민국의 수도는?"]
    many = reranker.score_many(queries, [docs, docs[:3]])
    ref2 = card_scores(tiny_qwen3, [(queries[1], d) for d in docs[:3]])
    assert np.abs(np.array(many[0]) - ref).max() <= 1e-5
    assert np.abs(np.array(many[1]) - ref2).max() <= 1e-5


def test_langchain_compressor(tiny_qwen3):
    from langchain_core.documents import Document

    from rerank_plugins.integrations.langchain import RerankCompressor

    query, docs = KOREAN[0][0], [d for _, d in KOREAN + SHORT[:3]]
    ref = card_scores(tiny_qwen3, [(query, d) for d in docs])
    out = RerankCompressor(reranker=str(tiny_qwen3), top_n=3).compress_documents(
        [Document(page_content=d) for d in docs], query
    )
    assert [d.page_content for d in out] == [docs[i] for i in np.argsort(-ref, kind="stable")[:3]]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(np.sort(ref)[::-1][:3], abs=1e-5)


def test_llamaindex_postprocessor(tiny_qwen3):
    from llama_index.core.schema import NodeWithScore, TextNode

    from rerank_plugins.integrations.llamaindex import RerankPostprocessor

    query, docs = SHORT[0][0], [d for _, d in SHORT[:5] + KOREAN[:2]]
    ref = card_scores(tiny_qwen3, [(query, d) for d in docs])
    nodes = [NodeWithScore(node=TextNode(text=d), score=0.5) for d in docs]
    out = RerankPostprocessor(str(tiny_qwen3), top_n=2).postprocess_nodes(nodes, query_str=query)
    assert [n.node.get_content() for n in out] == [docs[i] for i in np.argsort(-ref, kind="stable")[:2]]
    assert [n.score for n in out] == pytest.approx(np.sort(ref)[::-1][:2], abs=1e-5)


def test_cli_score(tiny_qwen3, capsys):
    from rerank_plugins.cli import main

    query, docs = "capital of France?", [d for _, d in SHORT[:4]]
    instruction = "Judge whether the passage names a capital"
    rc = main(["score", "--reranker", str(tiny_qwen3), "--device", "cpu", "--no-progress",
               "--instruction", instruction, "--query", query, *docs])
    assert rc == 0
    results = json.loads(capsys.readouterr().out)["results"]
    ref = card_scores(tiny_qwen3, [(query, d) for d in docs], instruction=instruction)
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert np.abs(np.array([r["score"] for r in results]) - ref).max() <= 1e-5

    rc = main(["score", "--reranker", str(tiny_qwen3), "--device", "cpu", "--template", "bge-gemma",
               "--instruction", instruction, "--query", query, *docs])
    assert rc == 1
    assert "instruction applies to the qwen3 template only" in capsys.readouterr().err


def test_long_documents_are_windowed_and_every_window_keeps_the_suffix(tiny_qwen3, monkeypatch):
    max_length = fixed_tokens(tiny_qwen3) + 64
    reranker = Reranker(tiny_qwen3, normalize="none", max_length=max_length, stride=8, max_windows=200)
    suffix = AutoTokenizer.from_pretrained(tiny_qwen3).encode(CARD_SUFFIX, add_special_tokens=False)
    seen = []
    forward = reranker.backend.forward

    def spy(rows, options):
        seen.extend(rows)
        return forward(rows, options)

    monkeypatch.setattr(reranker.backend, "forward", spy)
    (r,) = reranker.rerank("fox", [LONG_PASSAGE])
    assert r.windows == len(seen) > 2 and not r.truncated
    for row in seen:
        assert row.ids[-len(suffix):] == suffix and len(row.ids) <= max_length
    # The first window is exactly the card's truncated input.
    truncate = Reranker(tiny_qwen3, normalize="none", max_length=max_length, overflow="truncate")
    template = truncate.backend.template_for(truncate._options)
    (pair,) = template.encode(["fox"], [LONG_PASSAGE], max_length)
    assert template.card_ids(pair, max_length)[0] in [row.ids for row in seen]
    singles = [forward([row], reranker._options)[0].item() for row in seen]
    assert r.logit == pytest.approx(max(singles), abs=1e-5)
