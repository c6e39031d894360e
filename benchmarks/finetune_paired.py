"""Two rerankers on the fine-tuning benchmark's held-out questions, paired question by question.

The same SQuAD v1.1 dev split, first stage and evaluation as ``bench_finetune.py``
(split seed 0, 12 of 48 articles held out, embedded all-MiniLM-L6-v2 + faiss, top 30
reranked, top 10 kept, max length 256). Both rerankers see the same questions; the
script prints each one's MRR@10 and the gain of B over A with its 95% paired
bootstrap interval (``rerank_plugins.evaluation.paired_bootstrap``) and the number of
questions that went up and down.

Use it to ask how much a before/after figure depends on which held-out questions
were drawn: e.g. a model kept by ``bench_finetune.py --work-dir DIR --keep-models`` measured on
the 300-question sample (``--eval-queries 300``, the default) and on all 2,544.

Usage:
    HF_HUB_OFFLINE=1 python benchmarks/finetune_paired.py --b DIR [--a BASE] [--eval-queries 300]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import _heldout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", default=_heldout.RERANKER, help="reranker A (the base)")
    p.add_argument("--b", required=True, help="reranker B (e.g. a trained model's directory)")
    _heldout.add_arguments(p)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from rerank_plugins import Reranker
    from rerank_plugins.evaluation import evaluate, mrr_at_k, paired_bootstrap

    _, held_out, bi, index = _heldout.load(args)
    rr = []
    for model in (args.a, args.b):
        reranker = Reranker(model, kind="cross-encoder", batch_size=32, max_length=args.max_length, device="cpu")
        report = evaluate(held_out, reranker, bi, retrieve_k=args.retrieve_k, rerank_k=10, ks=(1, 3, 10),
                          index=index, show_progress=False)
        rr.append({o.id: mrr_at_k(o.reranked, o.positives, 10) for o in report.outcomes})
        print(f"{model}: MRR@10 {report.reranked['mrr@10']:.4f} on {len(held_out.queries)} held-out questions",
              flush=True)
    ids = sorted(rr[0])
    d = paired_bootstrap([rr[0][q] for q in ids], [rr[1][q] for q in ids])
    print(f"B - A, MRR@10: {d.mean:+.4f} (95% paired bootstrap interval {d.low:+.4f} to {d.high:+.4f}; "
          f"of {d.queries} questions {d.better} up, {d.worse} down)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"a": args.a, "b": args.b, "b_minus_a": d.to_dict()}, indent=2)
                                       + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
