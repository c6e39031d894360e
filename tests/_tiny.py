"""Tiny rerankers built from configs with tokenizers trained in-process.

No network: every model here is random-initialised from a config and saved to
a temporary directory, then loaded by path through the public API.
"""

from __future__ import annotations

import random
from pathlib import Path

ENGLISH = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Paris is the capital and most populous city of France.",
    "Reranking reorders retrieved passages so that the answer comes first.",
    "A cross-encoder reads the query and the passage together in one pass.",
    "Bi-encoders embed queries and documents separately for fast vector search.",
    "The oil crisis of 1973 began when OPEC proclaimed an embargo.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The Amazon rainforest covers much of the Amazon basin of South America.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Neural networks learn representations from large amounts of data.",
    "Yes or no: does the passage contain an answer to the query?",
]
KOREAN = [
    "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "한국어 문서를 재순위화하면 검색 품질이 좋아진다.",
    "김치는 배추와 고춧가루로 만드는 한국의 전통 음식이다.",
    "한글은 세종대왕이 창제한 문자 체계이다.",
    "부산은 대한민국 제2의 도시이자 최대의 항구 도시이다.",
    "질문과 문단을 함께 읽는 교차 인코더는 정확하지만 느리다.",
    "제주도는 화산섬으로 한라산이 있다.",
    "이 문단은 질문에 대한 답을 포함하고 있습니까?",
]
CORPUS = ENGLISH + KOREAN


def training_text(repeat: int = 20) -> list[str]:
    return CORPUS * repeat


def mixed_pairs(n: int = 60, seed: int = 0, long_every: int = 9) -> list[tuple[str, str]]:
    """Pairs of very different lengths, English and Korean; some exceed 512 tokens."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        query = rng.choice(CORPUS)
        k = rng.choice([1, 1, 2, 3, 5, 8]) if i % long_every else 60
        passage = " ".join(rng.choice(CORPUS) for _ in range(k))
        pairs.append((query, passage))
    return pairs


def _bert_tokenizer(vocab_size: int = 600):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        training_text(), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def _xlmr_tokenizer(vocab_size: int = 800):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(
        training_text(),
        trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>"),
    )
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    # No model_max_length: the limit must come from max_position_embeddings - 2.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_input_names=["input_ids", "attention_mask"],
    )


def build_bert(path: Path, num_labels: int = 1, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = _bert_tokenizer()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=num_labels,
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertForSequenceClassification(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_xlmr(path: Path, num_labels: int = 1, seed: int = 1) -> Path:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    tokenizer = _xlmr_tokenizer()
    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=514, type_vocab_size=1,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=num_labels,
        initializer_range=0.2,
    )
    XLMRobertaForSequenceClassification(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_st_cross_encoder(path: Path, hf_dir: Path) -> Path:
    """Save a sentence-transformers CrossEncoder (its own config files) from an HF dir."""
    from sentence_transformers import CrossEncoder

    CrossEncoder(str(hf_dir), device="cpu").save(str(path))
    return path


def _bpe_tokenizer(vocab_size: int = 700, padding_side: str = "left", pad: bool = True, yes: bool = True):
    """A byte-level BPE tokenizer in which "\\n" and (with ``yes``) "Yes" are single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    text = training_text() + (["Yes\nNo\nYes Yes\n"] * 50 if yes else ["No\n"] * 50)
    tok.train_from_iterator(
        text,
        trainers.BpeTrainer(
            vocab_size=vocab_size if yes else 300, special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
        pad_token="<pad>" if pad else None, padding_side=padding_side,
        model_input_names=["input_ids", "attention_mask"],
    )


def build_gemma(
    path: Path, *, padding_side: str = "left", pad: bool = True, yes: bool = True,
    vocab_size: int | None = None, hidden_size: int = 32, layers: int = 2, seed: int = 2,
) -> Path:
    """A 2-layer Gemma causal LM; ``vocab_size`` may exceed the tokenizer's (for benchmarks)."""
    import torch
    from transformers import GemmaConfig, GemmaForCausalLM

    tokenizer = _bpe_tokenizer(padding_side=padding_side, pad=pad, yes=yes)
    torch.manual_seed(seed)
    config = GemmaConfig(
        vocab_size=max(vocab_size or 0, len(tokenizer)), hidden_size=hidden_size,
        intermediate_size=2 * hidden_size, num_hidden_layers=layers, num_attention_heads=2,
        num_key_value_heads=1, head_dim=hidden_size // 2, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if pad else tokenizer.eos_token_id,
        initializer_range=0.2,
    )
    GemmaForCausalLM(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# Qwen3-Reranker's chat template (the model card's prefix and suffix), so the tiny tokenizer learns it compactly.
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
# Qwen2/Qwen3's pre-tokenizer pattern (tokenizer.json): a leading space or symbol joins the next word.
_QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _qwen_tokenizer(vocab_size: int = 900, yes: bool = True):
    """A byte-level BPE tokenizer built like Qwen3's: its pre-tokenizer regex, ``<|im_start|>``,
    ``<|im_end|>`` and ``<|endoftext|>`` as special tokens, ``<think>`` / ``</think>`` as added
    tokens, no bos, pad = ``<|endoftext|>``, left padding; with ``yes``, "yes" and "no" are single tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    template = QWEN3_PREFIX + "<Instruct>: Given a web search query, retrieve relevant passages that answer the query"
    text = training_text() + [template + "\n<Query>: \n<Document>: " + QWEN3_SUFFIX] * 20
    text += ["yes no\nyes\nno\n"] * 50 if yes else ["n\ny\ne\ns\n"] * 50
    tok.train_from_iterator(
        text,
        trainers.BpeTrainer(
            vocab_size=vocab_size if yes else 290, special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok.add_tokens([AddedToken("<think>", normalized=False), AddedToken("</think>", normalized=False)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"], model_max_length=131072,
        model_input_names=["input_ids", "attention_mask"],
    )


def build_qwen3(path: Path, *, yes: bool = True, model_type: str = "qwen3", seed: int = 5) -> Path:
    """A 2-layer ``Qwen3ForCausalLM`` (or, with ``model_type="qwen2"``, a ``Qwen2ForCausalLM``)
    with the Qwen-style tokenizer above; tied embeddings and 40,960 positions, as Qwen3-Reranker."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    config_cls, model_cls = {"qwen3": (Qwen3Config, Qwen3ForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[
        model_type
    ]
    tokenizer = _qwen_tokenizer(yes=yes)
    torch.manual_seed(seed)
    config = config_cls(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=40960,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None, initializer_range=0.2,
    )
    model_cls(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
