"""Two-stage retrieval measured from Python: the library calls behind ``rerank-plugins eval``.

Run from the repository root (needs ``pip install 'rerank-plugins[eval]'``):

    python examples/two_stage_eval.py --reranker cross-encoder/ms-marco-MiniLM-L-12-v2
    python examples/two_stage_eval.py --reranker ../shared/models/ms-marco-MiniLM-L-12-v2 --queries 50

It retrieves the top 30 passages of the shipped SQuAD sample with the embedded
all-MiniLM-L6-v2 bi-encoder and faiss, reranks them, keeps the top 10, prints
the before/after table and writes ``two_stage_report.json`` and ``two_stage_hit_at_k.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rerank_plugins import Reranker
from rerank_plugins.evaluation import BiEncoder, evaluate, load_dataset, plot_hit_curves

SAMPLE = Path(__file__).resolve().parent / "data" / "squad_sample.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reranker", default="cross-encoder/ms-marco-MiniLM-L-12-v2",
                        help="reranker directory or hub name")
    parser.add_argument("--bi-encoder", default=None, help="bi-encoder (default: the embedded all-MiniLM-L6-v2)")
    parser.add_argument("--data", default=str(SAMPLE), help="SQuAD-layout JSON (default: the shipped sample)")
    parser.add_argument("--queries", type=int, default=50, help="questions sampled (default: 50)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument("--out", default=".", help="folder for the JSON report and the plot (default: .)")
    args = parser.parse_args(argv)

    dataset = load_dataset(args.data).sample(args.queries, seed=args.seed)
    report = evaluate(
        dataset,
        Reranker(args.reranker),
        BiEncoder(args.bi_encoder),
        retrieve_k=30,
        rerank_k=10,
    )
    print(report.format_table())
    out = Path(args.out)
    report.write_json(out / "two_stage_report.json")
    plot_hit_curves(report, out / "two_stage_hit_at_k.png")
    print(f"MRR@10: {report.retrieval['mrr@10']:.3f} -> {report.reranked['mrr@10']:.3f}")


if __name__ == "__main__":
    main()
