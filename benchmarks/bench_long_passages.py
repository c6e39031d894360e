"""Long passages: windowed scoring (MaxP) against truncation, and against scoring each paragraph.

SQuAD dev articles are cut into passages of consecutive paragraphs, each
1,000-1,500 tokens. A question counts when its answer paragraph starts past the
first ``max_length`` tokens of its passage (truncation cannot see it); its
candidates are the passages of the same article, so the topic alone cannot pick
the answer. For ``overflow="truncate"`` and ``overflow="window"`` (with each
stride given) the script reports hit@1 and MRR@10, the rows scored and the wall
time, and for windows how often the best window's ``span`` contains the answer.
The ceiling is scoring each paragraph separately (a passage scores its best
paragraph).

    python benchmarks/bench_long_passages.py                     # uses ../shared
    python benchmarks/bench_long_passages.py --questions 100 --strides 0 64 128 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from rerank_plugins import Reranker

SHARED = Path(os.environ.get("RERANK_PLUGINS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def build_cases(data: Path, tokenizer, *, max_length: int, questions: int, seed: int):
    """Passages of 1,000-1,500 tokens per article; questions whose answer lies past ``max_length`` tokens."""
    with data.open(encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    cases = []
    for article in articles:
        passages: list[list[dict]] = [[]]
        tokens = 0
        for para in article["paragraphs"]:
            n = len(tokenizer(para["context"], add_special_tokens=False)["input_ids"])
            if tokens >= 1000 and tokens + n > 1500:
                passages.append([])
                tokens = 0
            passages[-1].append(para)
            tokens += n
        texts = ["\n\n".join(p["context"] for p in group) for group in passages]
        for pi, group in enumerate(passages):
            offset = 0
            for para in group:
                before = len(tokenizer(texts[pi][:offset], add_special_tokens=False)["input_ids"])
                if before > max_length:
                    for qa in para["qas"]:
                        answers = qa["answers"]
                        answer = answers[0] if isinstance(answers[0], str) else answers[0]["text"]
                        cases.append({
                            "query": qa["question"], "passages": texts, "gold": pi, "answer": answer,
                            "paragraphs": [[p["context"] for p in g] for g in passages],
                        })
                offset += len(para["context"]) + 2
    random.Random(seed).shuffle(cases)
    return cases[:questions]


def metrics(scores: list[list[float]], gold: list[int]) -> tuple[float, float]:
    hit = mrr = 0.0
    for row, g in zip(scores, gold, strict=True):
        rank = 1 + sum(s > row[g] for s in row)
        hit += rank == 1
        mrr += 1 / rank if rank <= 10 else 0
    return hit / len(gold), mrr / len(gold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "ms-marco-MiniLM-L-12-v2")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "squad-v1.1-dev.json")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--strides", type=int, nargs="+", default=[0, 64, 128])
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    base = Reranker(args.model, normalize="none", dtype=args.dtype, overflow="truncate")
    cases = build_cases(args.data, base.backend.tokenizer, max_length=base.max_length,
                        questions=args.questions, seed=args.seed)
    queries = [c["query"] for c in cases]
    gold = [c["gold"] for c in cases]
    print(f"{len(cases)} questions whose answer lies past max_length={base.max_length} tokens; "
          f"{sum(len(c['passages']) for c in cases) / len(cases):.1f} candidate passages each; dtype {base.dtype}, "
          f"engine {base.engine}")

    rows = []
    start = time.perf_counter()
    truncated = base.score_many(queries, [c["passages"] for c in cases], show_progress=False)
    rows.append(("truncate", *metrics(truncated, gold), sum(len(c["passages"]) for c in cases),
                 time.perf_counter() - start, float("nan")))

    for stride in args.strides:
        windowed = Reranker(args.model, normalize="none", dtype=args.dtype, overflow="window", stride=stride,
                            max_windows=64)
        start = time.perf_counter()
        ranked = windowed.rerank_many(queries, [c["passages"] for c in cases], show_progress=False)
        seconds = time.perf_counter() - start
        scores = [[0.0] * len(c["passages"]) for c in cases]
        n_rows, span_hits = 0, 0
        for qi, results in enumerate(ranked):
            for r in results:
                scores[qi][r.index] = r.logit
                n_rows += r.windows
                if r.index == gold[qi]:
                    a, b = r.span
                    span_hits += cases[qi]["answer"] in r.text[a:b]
        rows.append((f"window stride {stride}", *metrics(scores, gold), n_rows, seconds, span_hits / len(cases)))

    start = time.perf_counter()
    per_para = [[max(base.score(c["query"], group)) for group in c["paragraphs"]] for c in cases]
    rows.append(("each paragraph (ceiling)", *metrics(per_para, gold),
                 sum(len(g) for c in cases for g in c["paragraphs"]), time.perf_counter() - start, float("nan")))

    print(f"{'mode':<26} {'hit@1':>6} {'MRR@10':>7} {'rows':>6} {'seconds':>8} {'span has answer':>16}")
    for name, hit, mrr, n, seconds, span in rows:
        span_text = "-" if np.isnan(span) else f"{span:.2f}"
        print(f"{name:<26} {hit:>6.3f} {mrr:>7.3f} {n:>6} {seconds:>8.1f} {span_text:>16}")


if __name__ == "__main__":
    main()
