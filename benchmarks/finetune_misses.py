"""Where a reranker misses on the fine-tuning benchmark's held-out questions, and why.

The same SQuAD v1.1 dev split and 300 held-out questions as ``bench_finetune.py``
(split seed 0, 12 of 48 articles held out), the same first stage (embedded
all-MiniLM-L6-v2 + faiss, top 30). For every question whose own paragraph is not
ranked first it prints the question, its answers and the paragraph ranked above,
and sorts the misses into:

- ``not retrieved``: the first stage never offered the paragraph (no reranker can help);
- ``answer above``: a paragraph ranked above it contains one of the answer texts
  (the question's label says "wrong", the reader would not);
- ``other``: the rest, read by hand (context-dependent wording such as "the article",
  a question another paragraph answers differently, or a plain ranking error).

It bounds what training can gain on this benchmark: MRR@10 can rise by at most
what the ``answer above`` and ``other`` misses cost.

Usage:
    HF_HUB_OFFLINE=1 python benchmarks/finetune_misses.py [--reranker DIR] [--json-out misses.json]
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
    p.add_argument("--reranker", default=_heldout.RERANKER)
    _heldout.add_arguments(p)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from rerank_plugins import Reranker
    from rerank_plugins.evaluation.metrics import mrr_at_k

    dataset, held_out, bi, index = _heldout.load(args)
    text_of = dict(zip(dataset.doc_ids, dataset.doc_texts, strict=True))
    hits = index.search(bi.encode([q.text for q in held_out.queries]), args.retrieve_k)
    reranker = Reranker(args.reranker, kind="cross-encoder", max_length=args.max_length, device="cpu")

    rows, mrr = [], 0.0
    for q, candidates in zip(held_out.queries, hits, strict=True):
        ids = [d for d, _ in candidates]
        scores = reranker.score(q.text, [text_of[d] for d in ids])
        ranked = [d for _, d in sorted(zip(scores, ids, strict=True), key=lambda t: -t[0])]
        rank = next((i + 1 for i, d in enumerate(ranked) if d in q.positives), None)
        mrr += mrr_at_k(ranked, q.positives, 10)
        if rank == 1:
            continue
        above = ranked[: (rank or len(ranked) + 1) - 1]
        answer_above = any(a.lower() in text_of[d].lower() for d in above for a in q.answers)
        kind = "not retrieved" if rank is None else "answer above" if answer_above else "other"
        rows.append({"question": q.text, "answers": list(q.answers), "rank": rank, "kind": kind,
                     "ranked_first": text_of[ranked[0]]})
    n = len(held_out.queries)
    for r in rows:
        print(f"[{r['kind']}] rank {r['rank']}: {r['question']!r} answers {r['answers'][:2]}\n"
              f"    ranked first: {r['ranked_first'][:200]}...\n")
    counts = {k: sum(r["kind"] == k for r in rows) for k in ("not retrieved", "answer above", "other")}
    print(f"{args.reranker}: MRR@10 {mrr / n:.4f} on {n} held-out questions; {len(rows)} not ranked first: "
          + ", ".join(f"{v} {k}" for k, v in counts.items()))
    print(f"MRR@10 ceiling with this first stage (every retrieved paragraph ranked first): "
          f"{(n - counts['not retrieved']) / n:.4f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"mrr@10": mrr / n, "counts": counts, "misses": rows},
                                                  indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
