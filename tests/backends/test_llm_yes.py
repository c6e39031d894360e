"""kind="llm-yes": bge-reranker-v2-gemma scoring, exact to its model card."""

from __future__ import annotations

import _tiny
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rerank_plugins import ModelLoadError, Reranker
from rerank_plugins.backends.llm_yes import DEFAULT_PROMPT

# The model card passes max_length to tokenizer.pad together with padding=True; transformers warns.
pytestmark = pytest.mark.filterwarnings("ignore:`max_length` is ignored when `padding`=`True`:UserWarning")

# --------------------------------------------------------------------------- the reference


def prepare_for_model_only_second(ids, pair_ids, max_length, truncation_side="right"):
    """transformers 4.x ``prepare_for_model(ids, pair_ids, truncation='only_second',
    max_length=max_length, add_special_tokens=False, padding=False)``: its
    ``truncate_sequences`` removes the excess from the second sequence if it can,
    and otherwise logs an error and leaves the pair as is."""
    num_tokens_to_remove = len(ids) + len(pair_ids) - max_length
    if num_tokens_to_remove > 0 and len(pair_ids) > num_tokens_to_remove:
        if truncation_side == "right":
            pair_ids = pair_ids[:-num_tokens_to_remove]
        else:
            pair_ids = pair_ids[num_tokens_to_remove:]
    return {"input_ids": ids + pair_ids}


def get_inputs(pairs, tokenizer, prompt=None, max_length=1024, query_prefix="A: ", passage_prefix="B: "):
    """The model card's ``get_inputs``, line by line, with prepare_for_model re-expressed."""
    if prompt is None:
        prompt = (
            "Given a query A and a passage B, determine whether the passage contains an answer to the query "
            "by providing a prediction of either 'Yes' or 'No'."
        )
    sep = "\n"
    prompt_inputs = tokenizer(prompt, return_tensors=None, add_special_tokens=False)["input_ids"]
    sep_inputs = tokenizer(sep, return_tensors=None, add_special_tokens=False)["input_ids"]
    inputs = []
    for query, passage in pairs:
        query_inputs = tokenizer(
            f"{query_prefix}{query}", return_tensors=None, add_special_tokens=False,
            max_length=max_length * 3 // 4, truncation=True,
        )
        passage_inputs = tokenizer(
            f"{passage_prefix}{passage}", return_tensors=None, add_special_tokens=False,
            max_length=max_length, truncation=True,
        )
        item = prepare_for_model_only_second(
            [tokenizer.bos_token_id] + query_inputs["input_ids"],
            sep_inputs + passage_inputs["input_ids"],
            max_length,
            tokenizer.truncation_side,
        )
        item["input_ids"] = item["input_ids"] + sep_inputs + prompt_inputs
        item["attention_mask"] = [1] * len(item["input_ids"])
        inputs.append(item)
    return tokenizer.pad(
        inputs, padding=True, max_length=max_length + len(sep_inputs) + len(prompt_inputs),
        pad_to_multiple_of=8, return_tensors="pt",
    )


def reference_scores(path, pairs, batch_size=4, **kwargs):
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    yes_loc = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    scores = []
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            inputs = get_inputs(pairs[i : i + batch_size], tokenizer, **kwargs)
            logits = model(**inputs, return_dict=True).logits
            # The card reads logits[:, -1]: the last real token under left padding. Under right
            # padding the last real token is at attention_mask.sum - 1.
            last = inputs["attention_mask"].sum(dim=1) - 1
            if tokenizer.padding_side == "left":
                last = torch.full_like(last, inputs["input_ids"].shape[1] - 1)
            scores.extend(logits[torch.arange(len(last)), last, yes_loc].float().tolist())
    return np.array(scores)


def ours(path, pairs, **kwargs):
    reranker = Reranker(path, normalize="none", overflow="truncate", **kwargs)
    return np.array(reranker.score_many([q for q, _ in pairs], [[d] for _, d in pairs])).ravel()


SHORT = [
    ("what is the capital of France?", "Paris is the capital and most populous city of France."),
    ("reranking", "Reranking reorders retrieved passages so that the answer comes first."),
    ("boiling point of water", "Water boils at one hundred degrees Celsius at sea level."),
    ("fox", "The quick brown fox jumps over the lazy dog near the river bank."),
    ("plants", "Photosynthesis converts light energy."),
    ("a", "b"),
]
KOREAN = [
    ("대한민국의 수도는?", "서울은 대한민국의 수도이며 가장 큰 도시이다."),
    ("한글은 누가 만들었나?", "한글은 세종대왕이 창제한 문자 체계이다."),
    ("김치", "김치는 배추와 고춧가루로 만드는 한국의 전통 음식이다. " * 3),
    ("부산", "Busan 부산은 대한민국 제2의 도시이자 최대의 항구 도시이다."),
]


# --------------------------------------------------------------------------- parity


def test_auto_detects_causal_lm(tiny_gemma):
    assert Reranker(tiny_gemma).kind == "llm-yes"
    assert Reranker(tiny_gemma).max_length == 1024


@pytest.mark.parametrize("pairs", [SHORT, KOREAN], ids=["short", "korean"])
def test_parity_with_model_card(tiny_gemma, pairs):
    ref = reference_scores(tiny_gemma, pairs)
    got = ours(tiny_gemma, pairs, batch_size=3)
    assert np.abs(got - ref).max() <= 1e-5
    assert np.ptp(ref) > 0.05  # scores differ, so a shuffle would fail


def test_passage_far_beyond_max_length_truncates_the_second_sequence(tiny_gemma, caplog):
    long_passage = " ".join(_tiny.CORPUS) * 8  # thousands of tokens
    pairs = [(q, long_passage + f" {i}") for i, (q, _) in enumerate(SHORT)] + SHORT[:2]
    ref = reference_scores(tiny_gemma, pairs, max_length=64)
    got = ours(tiny_gemma, pairs, max_length=64, batch_size=4)
    assert np.abs(got - ref).max() <= 1e-5
    assert any("6 of 8 pairs exceed max_length=64" in r.getMessage() for r in caplog.records)
    # The pair part really is cut to 64 tokens: + "\n" + prompt, padded to a multiple of 8.
    tokenizer = AutoTokenizer.from_pretrained(tiny_gemma)
    width = get_inputs(pairs[:1], tokenizer, max_length=64)["input_ids"].shape[1]
    tail = len(tokenizer("\n" + DEFAULT_PROMPT, add_special_tokens=False)["input_ids"])
    assert 64 + tail <= width < 64 + tail + 8 + 2


def test_query_beyond_three_quarters_of_max_length(tiny_gemma):
    long_query = " ".join(_tiny.ENGLISH)  # > 3/4 of 80 tokens
    pairs = [(long_query, d) for _, d in SHORT] + [(long_query + " 서울", "서울은 수도")]
    tokenizer = AutoTokenizer.from_pretrained(tiny_gemma)
    assert len(tokenizer("A: " + long_query, add_special_tokens=False)["input_ids"]) > 80 * 3 // 4
    ref = reference_scores(tiny_gemma, pairs, max_length=80)
    got = ours(tiny_gemma, pairs, max_length=80)
    assert np.abs(got - ref).max() <= 1e-5


def test_max_length_too_small_for_the_pair_is_refused(tiny_gemma):
    """With a tiny max_length the query part alone would fill it and the passage would go to the
    model uncut (as prepare_for_model did); such a max_length is refused at construction."""
    with pytest.raises(ValueError, match="max_length=8 is below the minimum"):
        Reranker(tiny_gemma, max_length=8)


def test_left_and_right_padding_tokenizers_give_the_same_scores(tiny_gemma, tiny_gemma_right):
    pairs = SHORT + KOREAN
    left = ours(tiny_gemma, pairs, batch_size=5)
    right = ours(tiny_gemma_right, pairs, batch_size=5)
    assert np.abs(left - right).max() <= 1e-5
    assert np.abs(right - reference_scores(tiny_gemma_right, pairs)).max() <= 1e-5


def test_batch_scoring_equals_one_by_one(tiny_gemma):
    pairs = SHORT + KOREAN
    batched = ours(tiny_gemma, pairs, batch_size=16)
    single = np.array([ours(tiny_gemma, [p], batch_size=1)[0] for p in pairs])
    assert np.abs(batched - single).max() <= 1e-5


def test_tokenizer_without_pad_token_gets_eos(tiny_gemma_no_pad, tiny_gemma):
    reranker = Reranker(tiny_gemma_no_pad, normalize="none", overflow="truncate")
    tokenizer = reranker.backend.tokenizer
    assert tokenizer.pad_token == tokenizer.eos_token
    pairs = SHORT + KOREAN
    got = ours(tiny_gemma_no_pad, pairs, batch_size=5)
    assert np.abs(got - reference_scores(tiny_gemma_no_pad, pairs)).max() <= 1e-5
    assert np.abs(got - ours(tiny_gemma, pairs)).max() <= 1e-5


def test_custom_prompt_and_prefixes(tiny_gemma):
    prompt = "Does passage B answer question A? Answer Yes or No."
    kwargs = {"prompt": prompt, "query_prefix": "Q: ", "passage_prefix": "P: "}
    ref = reference_scores(tiny_gemma, SHORT, **kwargs)
    got = ours(tiny_gemma, SHORT, **kwargs)
    assert np.abs(got - ref).max() <= 1e-5
    assert np.abs(got - ours(tiny_gemma, SHORT)).max() > 1e-3  # the prompt really changed the input


def test_bfloat16_runs_on_cpu_close_to_float32(tiny_gemma):
    pairs = SHORT + KOREAN
    bf16 = Reranker(tiny_gemma, normalize="none", dtype="bfloat16")
    assert bf16.backend.model.dtype == torch.bfloat16
    got = np.array(bf16.score_many([q for q, _ in pairs], [[d] for _, d in pairs])).ravel()
    ref = ours(tiny_gemma, pairs)
    assert np.abs(got - ref).max() < 0.15
    assert np.corrcoef(got, ref)[0, 1] > 0.95


def test_only_the_last_position_logits_are_computed(tiny_gemma, monkeypatch):
    reranker = Reranker(tiny_gemma, normalize="none", batch_size=4)
    model = reranker.backend.model
    shapes = []
    original = model.forward

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        shapes.append((kwargs["input_ids"].shape, tuple(out.logits.shape)))
        return out

    monkeypatch.setattr(model, "forward", spy)
    reranker.score(SHORT[0][0], [d for _, d in SHORT])
    assert shapes, "the model was not called"
    for (batch, _seq), logits_shape in shapes:
        assert logits_shape == (batch, 1, model.config.vocab_size)


def test_yes_must_be_a_single_token(models_dir):
    path = _tiny.build_gemma(models_dir / "gemma-no-yes", yes=False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert len(tokenizer("Yes", add_special_tokens=False)["input_ids"]) > 1
    with pytest.raises(ModelLoadError, match="splits 'Yes' into .* tokens"):
        Reranker(path, kind="llm-yes")


def test_normalizations_apply_to_llm_logits(tiny_gemma):
    raw = np.array(Reranker(tiny_gemma, normalize="none").score(SHORT[0][0], [d for _, d in SHORT]))
    soft = np.array(Reranker(tiny_gemma, normalize="softmax").score(SHORT[0][0], [d for _, d in SHORT]))
    np.testing.assert_allclose(soft, np.exp(raw - raw.max()) / np.exp(raw - raw.max()).sum(), atol=1e-6)


# --------------------------------------------------------------------------- long passages: windows


def test_long_passages_are_windowed_and_every_window_keeps_the_prompt(tiny_gemma, monkeypatch):
    reranker = Reranker(tiny_gemma, normalize="none", max_length=64, stride=8, max_windows=200)
    backend = reranker.backend
    tokenizer = AutoTokenizer.from_pretrained(tiny_gemma)
    tail = (tokenizer("\n", add_special_tokens=False)["input_ids"]
            + tokenizer(DEFAULT_PROMPT, add_special_tokens=False)["input_ids"])
    seen = []
    forward = backend.forward

    def spy(rows, options):
        seen.extend(rows)
        return forward(rows, options)

    monkeypatch.setattr(backend, "forward", spy)
    query, passage = SHORT[0][0], " ".join(_tiny.CORPUS) * 3
    (r,) = reranker.rerank(query, [passage])
    assert r.windows == len(seen) > 2 and not r.truncated
    for row in seen:
        assert row.ids[-len(tail):] == tail  # the prompt the score reads is never cut
        assert len(row.ids) <= 64 + len(tail)
    # The first window is exactly the model card's truncated input.
    card = get_inputs([(query, passage)], tokenizer, max_length=64)
    card_row = card["input_ids"][0][card["attention_mask"][0].bool()].tolist()
    assert card_row in [row.ids for row in seen]
    singles = [forward([row], reranker._options)[0].item() for row in seen]
    assert r.logit == pytest.approx(max(singles), abs=1e-5)
    a, b = r.span
    assert 0 <= a < b <= len(passage)
