"""Loading checks shared by every family (rerank_plugins/backends/base.py): the tokenizer's
vocabulary, weights transformers would initialise at random, the device, and the smallest max_length.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from rerank_plugins import ModelLoadError, Reranker
from rerank_plugins.backends.base import resolve_device
from rerank_plugins.backends.llm_yes import DEFAULT_PROMPT

QUERY = "When did the 1973 oil crisis begin?"
DOCS = ["The oil crisis of 1973 began when OPEC proclaimed an embargo.", "Paris is the capital of France."]


@pytest.fixture(scope="module")
def no_tokenizer_dir(tiny_bert, tmp_path_factory):
    """The tiny reranker's config and weights only: what a half-copied model folder looks like."""
    folder = tmp_path_factory.mktemp("no-tokenizer")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert / name, folder / name)
    return folder


@pytest.mark.parametrize("kind", ["auto", "cross-encoder", "sequence-classification"])
def test_folder_without_tokenizer_files_is_a_load_error(no_tokenizer_dir, kind):
    # Before: transformers 5 built a 5-token tokenizer, every word became [UNK], and scores came back.
    with pytest.raises(ModelLoadError) as info:
        Reranker(no_tokenizer_dir, kind=kind)
    message = str(info.value)
    assert str(no_tokenizer_dir) in message
    assert "no tokenizer files" in message and "tokenizer.json" in message and "vocab.txt" in message
    assert "only 0 regular tokens" in message


def test_llm_folder_without_tokenizer_files_is_a_load_error(tiny_gemma, tmp_path):
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (tiny_gemma / name).exists():
            shutil.copy(tiny_gemma / name, tmp_path / name)
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        Reranker(tmp_path)


@pytest.mark.parametrize(
    ("fixture", "kind", "missing"),
    [
        ("tiny_gemma", "sequence-classification", "score.weight"),
        ("tiny_gemma", "cross-encoder", "score.weight"),
        ("tiny_bert", "llm-yes", "cls.predictions"),
        ("tiny_bi_encoder", "sequence-classification", "classifier.weight"),
        ("tiny_bi_encoder", "cross-encoder", "classifier.weight"),
    ],
)
def test_kind_forced_onto_a_model_without_that_head_is_a_load_error(request, fixture, kind, missing):
    # Before: transformers initialised a random head, only logged it, and the scores were noise.
    path = request.getfixturevalue(fixture)
    with pytest.raises(ModelLoadError) as info:
        Reranker(path, kind=kind)
    message = str(info.value)
    assert str(path) in message and kind in message and missing in message
    assert "random" in message


def test_models_with_their_heads_still_load(tiny_bert, tiny_cross_encoder, tiny_xlmr):
    """The checks refuse only what is broken: complete models of every layout load and score."""
    for path, kind in ((tiny_bert, "cross-encoder"), (tiny_cross_encoder, "auto"), (tiny_xlmr, "auto")):
        scores = Reranker(path, kind=kind).score(QUERY, DOCS)
        assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.real
def test_real_folder_without_tokenizer_files_is_refused(ms_marco_dir, tmp_path):
    """The audit's probe: the real cross-encoder without its tokenizer scored both passages ~0.9997."""
    for name in ("config.json", "model.safetensors"):
        shutil.copy(ms_marco_dir / name, tmp_path / name)
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        Reranker(tmp_path)


# --------------------------------------------------------------------------- devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("fixture", ["tiny_cross_encoder", "tiny_xlmr", "tiny_gemma"])
def test_unavailable_cuda_is_one_clear_error_for_every_family(request, fixture, monkeypatch):
    """Before: cross-encoders failed clearly, the other families with a raw AssertionError after loading."""
    path = request.getfixturevalue(fixture)
    loads = []
    monkeypatch.setattr("rerank_plugins.core.load_backend", lambda *a: loads.append(a))
    with pytest.raises(ValueError, match=r"device='cuda' is not available: .*use device='cpu'"):
        Reranker(path, device="cuda")
    assert loads == []  # refused before any weights load


def test_unavailable_devices_are_refused_before_loading():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda:1' is not available"):
            resolve_device("cuda:1")
    else:
        with pytest.raises(ValueError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        with pytest.raises(ValueError, match="'mps' is not available"):
            resolve_device("mps")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("gpu-please")


# --------------------------------------------------------------------------- max_length


@pytest.mark.parametrize(
    ("fixture", "minimum"),
    [("tiny_bert", 5), ("tiny_cross_encoder", 5), ("tiny_xlmr", 6)],  # [CLS] q [SEP] d [SEP]; <s> q </s></s> d </s>
)
def test_max_length_below_the_special_tokens_is_refused(request, fixture, minimum):
    """Before: max_length=2 warned about truncation but did not truncate; long pairs crashed in the model."""
    path = request.getfixturevalue(fixture)
    with pytest.raises(ValueError, match=f"max_length={minimum - 1} is below the minimum of {minimum} tokens"):
        Reranker(path, max_length=minimum - 1)
    reranker = Reranker(path, max_length=minimum, normalize="none", overflow="truncate")
    long_doc = " ".join(["Paris is the capital and most populous city of France."] * 300)  # ~3,000 words
    # At the minimum every pair really is cut to one token of each text: a 3,000-word
    # document scores exactly as its first word does, and nothing crashes in the model.
    assert reranker.score("capital of France and more", [long_doc]) == pytest.approx(
        reranker.score("capital", ["Paris"]), abs=1e-5
    )


def test_llm_max_length_must_leave_room_for_the_passage(tiny_gemma, caplog):
    """The model card cuts the query to 3/4 of max_length; below the family's minimum the
    passage could not be cut at all and went to the model whole."""
    reranker = Reranker(tiny_gemma, max_length=1024)
    minimum = reranker.backend.min_max_length(reranker._options)
    with pytest.raises(ValueError, match=f"below the minimum of {minimum} tokens for this llm-yes model"):
        Reranker(tiny_gemma, max_length=8)
    at_min = Reranker(tiny_gemma, max_length=minimum, normalize="none")
    long_query = " ".join(["The quick brown fox jumps over the lazy dog."] * 20)
    long_doc = " ".join(["Water boils at one hundred degrees Celsius at sea level."] * 300)
    backend, options = at_min.backend, at_min._options
    (pair,) = backend.encode([long_query], [long_doc], options)
    ids = backend.truncated_row(pair, options)[0].ids  # the model card's own truncation
    sep = backend.tokenizer("\n", add_special_tokens=False)["input_ids"]
    tail = len(sep) + len(backend.tokenizer(DEFAULT_PROMPT, add_special_tokens=False)["input_ids"])
    assert len(ids) == minimum + tail  # query and passage both cut: the pair fills max_length exactly
    assert "cannot fit" not in caplog.text
