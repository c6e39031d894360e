"""Score and rerank passages with any supported reranker.

    python examples/quickstart.py                                   # hub model (needs network)
    python examples/quickstart.py --reranker ../shared/models/ms-marco-MiniLM-L-12-v2
    python examples/quickstart.py --reranker BAAI/bge-reranker-v2-gemma --normalize none --dtype bfloat16
"""

from __future__ import annotations

import argparse
import sys

from rerank_plugins import ModelLoadError, Reranker

QUERY = "When did the 1973 oil crisis begin?"
PASSAGES = [
    "Paris is the capital and most populous city of France.",
    "The 1973 oil crisis began in October 1973 when the members of OPEC proclaimed an oil embargo.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The crisis ended in March 1974, but oil prices stayed high for the rest of the decade.",
    "1973년 석유 파동은 1973년 10월 OPEC의 석유 금수 조치로 시작되었다.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reranker", default="cross-encoder/ms-marco-MiniLM-L-12-v2", help="model path or hub name")
    parser.add_argument("--kind", default="auto", help="auto, cross-encoder, sequence-classification or llm-yes")
    parser.add_argument("--normalize", default="sigmoid", choices=["sigmoid", "none", "softmax"])
    parser.add_argument("--dtype", default=None, help="float32 (default), float16 or bfloat16")
    parser.add_argument("--top-n", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        reranker = Reranker(args.reranker, kind=args.kind, normalize=args.normalize, dtype=args.dtype)
    except (ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(reranker)
    print(f"query: {QUERY}")
    print("scores in input order:", [round(s, 4) for s in reranker.score(QUERY, PASSAGES)])
    for rank, result in enumerate(reranker.rerank(QUERY, PASSAGES, top_n=args.top_n), 1):
        print(f"{rank}. [{result.index}] score={result.score:.4f} logit={result.logit:.3f}  {result.text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
