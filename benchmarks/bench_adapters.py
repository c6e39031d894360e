"""The framework adapters against the frameworks' own rerankers, side by side, default settings.

The everyday shape of an adapter call: ~10 short documents per query (answer
sentence selection over a retrieved passage). Each call reranks the sentences of
one SQuAD paragraph for one of its questions, keeping the best 3.

- LangChain: ``RerankCompressor`` against ``CrossEncoderReranker`` over a
  ``BaseCrossEncoder`` that does what ``langchain_community``'s
  ``HuggingFaceCrossEncoder`` does (``CrossEncoder(model).predict(pairs)``;
  langchain-community is not a dependency of this package).
- LlamaIndex: ``RerankPostprocessor`` against ``SentenceTransformerRerank``.

One process, the same model, alternating the order each round; prints calls/s
per round, the median ratio and how often both keep the same top 3.

    python benchmarks/bench_adapters.py                       # uses ../shared
    python benchmarks/bench_adapters.py --calls 300 --rounds 3 --model PATH
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import time
from pathlib import Path

SHARED = Path(os.environ.get("RERANK_PLUGINS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def build_calls(data: Path, n: int, seed: int, docs_per_call: int) -> list[tuple[str, list[str]]]:
    with data.open(encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    rng = random.Random(seed)
    calls = []
    paragraphs = [p for a in articles for p in a["paragraphs"]]
    while len(calls) < n:
        p = rng.choice(paragraphs)
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", p["context"]) if s]
        if len(sentences) < 4:
            continue
        docs = sentences[:docs_per_call]
        while len(docs) < docs_per_call:  # pad with sentences of another paragraph
            docs.append(rng.choice(re.split(r"(?<=[.!?])\s+", rng.choice(paragraphs)["context"])))
        calls.append((rng.choice(p["qas"])["question"], docs))
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "ms-marco-MiniLM-L-12-v2")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "squad-v1.1-dev.json")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--docs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
    from langchain_classic.retrievers.document_compressors.cross_encoder import BaseCrossEncoder
    from langchain_core.documents import Document
    from llama_index.core.postprocessor import SentenceTransformerRerank
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from sentence_transformers import CrossEncoder

    from rerank_plugins import Reranker
    from rerank_plugins.integrations.langchain import RerankCompressor
    from rerank_plugins.integrations.llamaindex import RerankPostprocessor

    class HFCrossEncoder(BaseCrossEncoder):
        """``langchain_community.cross_encoders.HuggingFaceCrossEncoder``, in its own few lines."""

        def __init__(self, model: str) -> None:
            self.client = CrossEncoder(model)

        def score(self, text_pairs: list[tuple[str, str]]) -> list[float]:
            scores = self.client.predict(text_pairs)
            return scores if len(scores.shape) == 1 else scores[:, 1]

    calls = build_calls(args.data, args.calls, args.seed, args.docs)
    reranker = Reranker(args.model)
    print(f"{len(calls)} calls x {args.docs} sentences; ours: dtype {reranker.dtype}, engine {reranker.engine}")

    lc_ours = RerankCompressor(reranker=reranker, top_n=3)
    lc_peer = CrossEncoderReranker(model=HFCrossEncoder(str(args.model)), top_n=3)
    li_ours = RerankPostprocessor(reranker, top_n=3)
    li_peer = SentenceTransformerRerank(model=str(args.model), top_n=3, device="cpu")

    lc_docs = [[Document(page_content=d) for d in docs] for _, docs in calls]
    li_nodes = [[NodeWithScore(node=TextNode(text=d), score=1.0) for d in docs] for _, docs in calls]

    def run_lc(compressor):
        return [[d.page_content for d in compressor.compress_documents(docs, q)]
                for (q, _), docs in zip(calls, lc_docs, strict=True)]

    def run_li(post):
        return [[n.node.get_content() for n in post.postprocess_nodes(nodes, query_bundle=QueryBundle(q))]
                for (q, _), nodes in zip(calls, li_nodes, strict=True)]

    pairs = {
        "LangChain": (lambda: run_lc(lc_ours), lambda: run_lc(lc_peer), "CrossEncoderReranker"),
        "LlamaIndex": (lambda: run_li(li_ours), lambda: run_li(li_peer), "SentenceTransformerRerank"),
    }
    for name, (ours, peer, peer_name) in pairs.items():
        ours(), peer()  # warm-up
        ratios = []
        for r in range(args.rounds):
            timings, kept = {}, {}
            order = [("ours", ours), ("peer", peer)] if r % 2 == 0 else [("peer", peer), ("ours", ours)]
            for label, fn in order:
                start = time.perf_counter()
                kept[label] = fn()
                timings[label] = time.perf_counter() - start
            ratios.append(timings["peer"] / timings["ours"])
            same = sum(a == b for a, b in zip(kept["ours"], kept["peer"], strict=True)) / len(calls)
            print(f"{name} round {r + 1}: ours {len(calls) / timings['ours']:.1f} calls/s | {peer_name} "
                  f"{len(calls) / timings['peer']:.1f} calls/s | ratio {ratios[-1]:.2f}x | same top 3 {same:.2f}")
        print(f"{name}: median ratio (ours / {peer_name}) {statistics.median(ratios):.2f}x over {args.rounds} rounds")


if __name__ == "__main__":
    main()
