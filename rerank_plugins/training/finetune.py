"""Fine-tune a cross-encoder on your own retrieval data and measure it before and after.

The loop: split the data by document group; mine hard negatives for the
training questions with the package's first stage (bi-encoder + faiss, as
``rerank-plugins eval``); train with sentence-transformers'
``CrossEncoderTrainer`` (listwise ``MultipleNegativesRankingLoss`` by default,
or ``BinaryCrossEntropyLoss``); then run the two-stage evaluation
(:func:`rerank_plugins.evaluation.evaluate`) on the held-out questions with the
base model and with the trained one, and pair the two question by question.

Example:
    >>> from rerank_plugins.training import finetune
    >>> report = finetune("squad-dev.json", base="path/to/plain-encoder", output="my-reranker",
    ...                   train_queries=1000, eval_queries=300)  # doctest: +SKIP
    >>> print(report.format_table())  # doctest: +SKIP
    >>> Reranker("my-reranker").kind  # doctest: +SKIP
    'cross-encoder'
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank_plugins.errors import ModelLoadError, missing_extra
from rerank_plugins.evaluation.data import Dataset, load_dataset
from rerank_plugins.evaluation.metrics import PairedDifference, paired_bootstrap, per_query
from rerank_plugins.training.data import GroupSplit, MinedQuery, mine_hard_negatives, split_by_group

if TYPE_CHECKING:
    from rerank_plugins.evaluation.pipeline import EvalReport, QueryOutcome
    from rerank_plugins.evaluation.retrieval import BiEncoder

__all__ = ["LOSSES", "REPORT_METRICS", "TRAIN_DTYPES", "FinetuneReport", "finetune"]

logger = logging.getLogger(__name__)

REPORT_METRICS: tuple[str, ...] = ("hit@1", "hit@3", "hit@10", "mrr@10", "ndcg@10")
TRAIN_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
# The training objectives, by name, with the sentence-transformers loss each one uses.
LOSSES: dict[str, str] = {"bce": "BinaryCrossEntropyLoss", "listwise": "MultipleNegativesRankingLoss"}
_KS = (1, 3, 10)


@dataclass(frozen=True)
class FinetuneReport:
    """Held-out two-stage metrics before and after training, timings and the run's settings.

    Attributes:
        retrieval: the first stage alone on the held-out questions (``hit@1``,
            ``hit@3``, ``hit@10``, ``mrr@10``, ``ndcg@10``).
        base: the same after reranking with the base model (an untrained
            head when the base had none); ``None`` when ``evaluate_base=False``.
        trained: the same after reranking with the trained model.
        timing: wall seconds per step and training throughput.
        config: data, split sizes, models and hyper-parameters.
        output: the trained model's directory.
        trained_vs_base: per metric, the trained model's gain over the base on the same
            held-out questions with a 95% paired bootstrap interval and the number of
            questions that went up and down (``None`` when the base was not measured).
            With a few hundred questions the interval is often wider than the gain:
            read it before trusting a small difference either way.
        base_outcomes, trained_outcomes: each held-out question's first-stage and
            reranked lists (:class:`~rerank_plugins.evaluation.QueryOutcome`), for the
            base (empty when not measured) and the trained model; not part of :meth:`to_dict`.
    """

    retrieval: dict[str, float]
    base: dict[str, float] | None
    trained: dict[str, float]
    timing: dict[str, float]
    config: dict[str, Any]
    output: str
    trained_vs_base: dict[str, PairedDifference] | None = None
    base_outcomes: tuple[QueryOutcome, ...] = field(default=(), repr=False, compare=False)
    trained_outcomes: tuple[QueryOutcome, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: ``retrieval``, ``base``, ``trained``, ``timing``, ``config``, ``output``
        and ``trained_vs_base`` (each metric's :meth:`PairedDifference.to_dict`, or ``None``), a copy."""
        out = {key: copy.deepcopy(getattr(self, key))
               for key in ("retrieval", "base", "trained", "timing", "config", "output")}
        out["trained_vs_base"] = None if self.trained_vs_base is None else {
            key: diff.to_dict() for key, diff in self.trained_vs_base.items()}
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically (a temporary name, then a rename)."""
        path = Path(path)
        _atomic_write_text(path, self.to_json() + "\n")
        return path

    def below_base(self) -> list[str]:
        """The metrics on which the trained model ranks the held-out questions worse than the base.

        Empty when the base was not measured (``evaluate_base=False``). Anything listed
        means this run did not improve the base on its held-out questions; the table, the
        model card and a logged warning say so.

        Example:
            >>> if "mrr@10" in report.below_base():  # doctest: +SKIP
            ...     reranker = Reranker(base)
        """
        if self.base is None:
            return []
        return [key for key in REPORT_METRICS if self.trained[key] < self.base[key]]

    def _verdict(self) -> str | None:
        worse = self.below_base()
        if not worse:
            return None
        verdict = (f"trained is below the base on {', '.join(worse)} "
                   f"(mrr@10 {self.trained['mrr@10'] - self.base['mrr@10']:+.4f}): the base ranks these "
                   "held-out questions better")
        diff = (self.trained_vs_base or {}).get("mrr@10")
        if diff is not None and not diff.excludes_zero:
            verdict += (f", though mrr@10's {diff.confidence:.0%} interval includes 0: "
                        f"{diff.queries} questions are too few to tell the two apart")
        return verdict

    def _paired_line(self) -> str | None:
        if self.trained_vs_base is None:
            return None
        d = self.trained_vs_base["mrr@10"]
        return (f"trained - base, mrr@10: {d.mean:+.4f} ({d.confidence:.0%} paired bootstrap interval "
                f"{d.low:+.4f} to {d.high:+.4f}; of {d.queries} questions {d.better} up, {d.worse} down)")

    def format_table(self) -> str:
        """The before/after table: one row per metric, retrieval / base / trained columns."""
        rows = [("metric", "retrieval", "base", "trained")]
        for key in REPORT_METRICS:
            rows.append((key, *("-" if getattr(self, col) is None else f"{getattr(self, col)[key]:.4f}"
                                 for col in ("retrieval", "base", "trained"))))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        cfg, t = self.config, self.timing
        lines = [
            f"{cfg['eval_queries']} held-out questions ({cfg['split']['eval_groups']} held-out groups by "
            f"{cfg['split']['group_by']}); trained on {cfg['train_queries']} questions "
            f"({cfg['split']['train_groups']} groups), {cfg['train_pairs']} pairs",
        ]
        for i, row in enumerate(rows):
            lines.append("  ".join(f"{c:<{widths[0]}}" if j == 0 else f"{c:>{widths[j]}}" for j, c in enumerate(row)))
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        if (paired := self._paired_line()) is not None:
            lines.append(paired)
        lines.append(f"training: {t['train_s']:.1f} s, {t['train_pairs_per_s']:.1f} pairs/s; model: {self.output}")
        if (verdict := self._verdict()) is not None:
            lines.append(f"warning: {verdict}")
        return "\n".join(lines)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _positive_int(name: str, value: Any, *, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    return value


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _train_imports() -> tuple[Any, Any, Any, Any, Any, Any]:
    try:
        import datasets  # noqa: F401 - the trainer needs it; fail here with the extra's name
        from sentence_transformers.cross_encoder import (
            CrossEncoder,
            CrossEncoderTrainer,
            CrossEncoderTrainingArguments,
        )
        from sentence_transformers.cross_encoder.losses import (
            BinaryCrossEntropyLoss,
            MultipleNegativesRankingLoss,
        )
    except ImportError as exc:
        raise missing_extra("sentence-transformers[train]", "train", exc) from None
    from datasets import Dataset as HFDataset

    return (CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments, BinaryCrossEntropyLoss, HFDataset,
            MultipleNegativesRankingLoss)


def _base_has_head(base: str) -> bool:
    """True when ``base`` is already a one-logit sequence classifier (a reranker), read from its config."""
    path = Path(base)
    config_file = path / "config.json"
    if not config_file.is_file():
        return False
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    archs = config.get("architectures") or []
    labels = config.get("id2label") or {"0": None, "1": None}
    return any(str(a).endswith("ForSequenceClassification") for a in archs) and len(labels) == 1


# The config keys that hold attention-probability dropout (BERT, XLM-R, ELECTRA, ...; most decoders).
_ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def _attention_dropout(base: str) -> tuple[str, float] | None:
    """The key of ``base``'s config that sets attention dropout and its value (None: none known, or no config)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(base).to_dict()
    except Exception:  # noqa: BLE001 - an unreadable config is the loader's error to report
        return None
    return next(((k, config[k]) for k in _ATTENTION_DROPOUT_KEYS if k in config), None)


def _load_base(
    base: str, *, max_length: int, device: str, seed: int, attention_dropout: float | None
) -> tuple[Any, bool]:
    """The base as a one-logit CrossEncoder (its attention dropout set, if asked) and whether it had a head."""
    CrossEncoder = _train_imports()[0]
    from transformers import set_seed

    from rerank_plugins.backends.base import one_line

    has_head = _base_has_head(base)
    found = _attention_dropout(base) if attention_dropout is not None else None
    config_kwargs = {found[0]: attention_dropout} if found else None
    set_seed(seed)  # a new head starts from the same weights for the same seed
    try:
        model = CrossEncoder(base, num_labels=1, max_length=max_length, device=device, config_kwargs=config_kwargs)
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear line
        raise ModelLoadError(f"could not load base model {base!r} as a CrossEncoder: {one_line(exc)}") from None
    if found:
        # The layers read the rate when they were built; the config goes back to the base's value, so
        # saved models (and anyone training them later) keep it.
        setattr(model.config, *found)
    return model, has_head


def _pairs(mined: list[MinedQuery], text_of: dict[str, str]) -> dict[str, list[Any]]:
    queries, passages, labels = [], [], []
    for m in mined:
        for doc in sorted(m.query.positives):
            queries.append(m.query.text)
            passages.append(text_of[doc])
            labels.append(1.0)
        for doc in m.negatives:
            queries.append(m.query.text)
            passages.append(text_of[doc])
            labels.append(0.0)
    return {"query": queries, "passage": passages, "label": labels}


def _tuples(mined: list[MinedQuery], text_of: dict[str, str], negatives: int) -> dict[str, list[Any]]:
    """One row per (query, positive) with ``negatives`` negative columns; queries with fewer are left out."""
    rows: dict[str, list[Any]] = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(negatives)}}
    for m in mined:
        if len(m.negatives) < negatives:
            continue
        for doc in sorted(m.query.positives):
            rows["query"].append(m.query.text)
            rows["positive"].append(text_of[doc])
            for i, neg in enumerate(m.negatives[:negatives]):
                rows[f"negative_{i + 1}"].append(text_of[neg])
    return rows


def _paired(base: Sequence[QueryOutcome], trained: Sequence[QueryOutcome]) -> dict[str, PairedDifference]:
    """Trained minus base per report metric, paired over the same held-out questions."""
    base_of = {o.id: o for o in base}
    relevants = [o.positives for o in trained]
    before = [base_of[o.id].reranked for o in trained]
    after = [o.reranked for o in trained]
    return {key: paired_bootstrap(per_query(key, before, relevants), per_query(key, after, relevants))
            for key in REPORT_METRICS}


def _metrics(values: dict[str, float]) -> dict[str, float]:
    """The report's metrics; over a corpus of fewer than 10 documents, ``@10`` is ``@n`` (every document)."""
    out = {}
    for key in REPORT_METRICS:
        if key not in values:
            name = key.split("@")[0]
            key_n = max((k for k in values if k.startswith(f"{name}@")), key=lambda k: int(k.split("@")[1]))
            out[key] = values[key_n]
        else:
            out[key] = values[key]
    return out


@contextlib.contextmanager
def _work_dir(output: Path) -> Iterator[Path]:
    """A fresh temporary directory beside ``output``, removed unless it was renamed away.

    Its name is new on every call: the shared model cache is keyed by path, so a second run
    into the same ``output`` must not find the first run's models under the same name.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp_model: Path, output: Path, overwrite: bool) -> None:
    """Rename the finished model into place; an existing output is replaced only with ``overwrite``."""
    old = None
    if output.exists():
        if not overwrite:
            raise FileExistsError(f"output {str(output)!r} already exists (pass overwrite=True / --overwrite)")
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.replace(output, old)
    os.replace(tmp_model, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _model_card(report: FinetuneReport, split: GroupSplit) -> str:
    cfg = report.config
    table = ["| metric | retrieval | base | trained |", "|---|---:|---:|---:|"]
    for key in REPORT_METRICS:
        base = "-" if report.base is None else f"{report.base[key]:.4f}"
        table.append(f"| {key} | {report.retrieval[key]:.4f} | {base} | {report.trained[key]:.4f} |")
    data = cfg["data"]
    data_line = ", ".join(f"{k}: `{v}`" for k, v in data.items() if k in ("format", "data", "corpus"))
    train = cfg["training"]
    return "\n".join([
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        "tags: [cross-encoder, reranker, rerank-plugins]",
        "---",
        "",
        f"# Reranker fine-tuned from `{cfg['base']['model']}`",
        "",
        "Trained with `rerank-plugins train` (sentence-transformers `CrossEncoderTrainer`, "
        f"`{train['loss']}`). Load it with `rerank_plugins.Reranker(\"<this directory>\")` "
        "(kind `cross-encoder`) or `sentence_transformers.CrossEncoder`.",
        "",
        "## Base",
        f"- model: `{cfg['base']['model']}`",
        "- head: " + ("its own reranking head (continued training)" if cfg["base"]["had_head"]
                      else "a new one-logit head"),
        "",
        "## Data",
        f"- {data_line}",
        f"- split by {split.group_by} (seed {split.seed}, {split.eval_fraction:.0%} of groups held out): "
        f"{len(split.train_groups)} training groups, {len(split.eval_groups)} held-out groups; "
        "the held-out questions' paragraphs are in no training pair; the full split is in `split.json`",
        f"- training: {cfg['train_queries']} questions, {cfg['train_pairs']} pairs (positives + "
        f"{cfg['negatives']} hard negatives each, mined from the top {cfg['mine_k']} of "
        f"`{cfg['bi_encoder']['model']}`, {cfg['skipped_false_negatives']} likely false negatives skipped)",
        f"- evaluation: {cfg['eval_queries']} held-out questions over {cfg['documents']} documents",
        "",
        "## Training",
        f"- epochs {train['epochs']}, batch size {train['batch_size']}, learning rate {train['learning_rate']}, "
        f"warmup ratio {train['warmup_ratio']}, "
        + ("" if train["pos_weight"] is None else f"positive weight {train['pos_weight']:g}, ")
        + "attention dropout "
        f"{'as the base' if train['attention_dropout'] is None else train['attention_dropout']}, "
        f"max length {train['max_length']}, dtype {train['dtype']}, "
        f"seed {train['seed']}" + (f", max steps {train['max_steps']}" if train["max_steps"] else ""),
        f"- wall time {report.timing['train_s']:.1f} s ({report.timing['train_pairs_per_s']:.1f} pairs/s)",
        "",
        "## Held-out two-stage metrics",
        f"Retrieve the top {cfg['retrieve_k']} with the bi-encoder, rerank them, keep the top {cfg['rerank_k']}.",
        "",
        *table,
        "",
        *([] if (paired := report._paired_line()) is None else [paired[0].upper() + paired[1:] + ".", ""]),
        *([] if (verdict := report._verdict()) is None else [f"**Warning**: {verdict}.", ""]),
    ])


def finetune(
    data: Dataset | str | Path,
    *,
    base: str | Path,
    output: str | Path,
    format: str | None = None,
    corpus: str | Path | None = None,
    bi_encoder: BiEncoder | str | Path | None = None,
    train_queries: int | None = None,
    eval_queries: int | None = None,
    eval_fraction: float = 0.25,
    negatives: int = 3,
    mine_k: int = 30,
    loss: str = "listwise",
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 1e-4,
    warmup_ratio: float = 0.1,
    pos_weight: float | str = "balanced",
    attention_dropout: float | None = 0.0,
    max_length: int = 256,
    dtype: str = "bfloat16",
    max_steps: int | None = None,
    seed: int = 0,
    split_seed: int | None = None,
    evaluate_base: bool = True,
    retrieve_k: int = 30,
    rerank_k: int = 10,
    eval_batch_size: int = 32,
    device: str = "auto",
    embeddings_cache: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    save_steps: int | None = None,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> FinetuneReport:
    """Train a cross-encoder reranker on ``data`` and measure it on held-out document groups.

    Args:
        data: a :class:`~rerank_plugins.evaluation.Dataset`, or the path of a
            SQuAD-layout JSON file or a JSONL queries file (see ``load_dataset``).
        base: a plain encoder (a new one-logit head is added) or an existing
            one-logit reranker (trained further), as a local directory or hub name.
        output: the directory the trained CrossEncoder is written to (with
            ``README.md``, the model card, ``split.json`` and ``report.json``).
        format: the layout of a ``data`` path (``None``: from the suffix).
        corpus: the JSONL corpus file (JSONL layout only).
        bi_encoder: the first stage for mining and evaluation: a ``BiEncoder``,
            a model directory, or ``None`` for the embedded all-MiniLM-L6-v2.
        train_queries: train on a random sample of this many training questions (``None``: all).
        eval_queries: evaluate on a random sample of this many held-out questions (``None``: all).
        eval_fraction: the share of document groups held out.
        negatives: hard negatives per training question.
        mine_k: first-stage candidates retrieved per training question to mine from.
        loss: ``"listwise"`` (default): softmax cross-entropy over each question's
            positive, its hard negatives and one other question's passage
            (sentence-transformers' ``MultipleNegativesRankingLoss``); only the order
            is learned; questions with fewer than ``negatives`` mined negatives are
            left out. ``"bce"``: binary cross-entropy on each (question, passage)
            pair, which keeps the scores calibrated (a threshold keeps its meaning).
            Measured on SQuAD (the README's fine-tuning section): from a plain
            MiniLM-L6 encoder listwise beat the first stage after 500 questions
            where bce stayed on a constant score, and continuing a trained reranker
            it lost less than bce on a 300-question sample and gained 0.004 MRR@10 on
            all 2,544 held-out questions.
        epochs, batch_size, learning_rate, warmup_ratio, max_steps: the trainer's
            settings (``max_steps`` overrides ``epochs`` when given). ``batch_size``
            counts pairs scored per step for either loss (listwise: whole questions,
            ``negatives + 2`` pairs each, at least 2 questions).
        pos_weight: the weight of a positive pair in the binary cross-entropy (``"bce"`` only;
            a number with another loss is an error):
            ``"balanced"`` (default) weighs positives by the mined negatives per
            positive, as sentence-transformers' hard-negative examples do, so the
            model cannot settle on "everything is a negative"; a number sets it
            (``1.0``: unweighted).
        attention_dropout: dropout on the attention probabilities while training.
            ``0.0`` (default) lets torch use its fused attention kernel: a training
            step ran about 2x faster on a 2-core CPU (measured; with dropout,
            attention falls back to an unfused path). ``None`` keeps the base's own value.
            The saved model's config keeps the base's value either way.
        max_length: truncation length in tokens, for training and evaluation (saved with the model).
        dtype: ``"bfloat16"`` (default: bf16 autocast, which is faster and learns
            well on CPUs and recent GPUs), ``"float16"`` (GPU) or ``"float32"``.
            The saved weights are float32 either way.
        seed: the new head's initial weights and the training data order.
        split_seed: the split and the question samples (``None``: ``seed``); fix it
            to compare training seeds on the same held-out questions.
        evaluate_base: measure the base model too; ``False`` skips that (``base``
            is then ``None``), e.g. when an earlier run already measured it.
        retrieve_k, rerank_k: the held-out two-stage evaluation (as ``rerank-plugins eval``).
        eval_batch_size: pairs per forward pass when reranking for evaluation.
        device: ``"auto"`` or a torch device string.
        embeddings_cache: a ``.npz`` file for the corpus embeddings, reused when it matches.
        checkpoint_dir: keep the trainer's checkpoints here; ``None`` keeps them
            only while training (in the temporary directory).
        save_steps: checkpoint every this many steps (``None``: once per epoch).
        overwrite: replace an existing ``output`` directory.
        show_progress: tqdm bars (``None``: on a terminal).

    Returns:
        A :class:`FinetuneReport`; the same report is saved as ``report.json`` in ``output``.

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is false (checked before any work).
        ValueError: a bad setting, or data that cannot be split.
        ModelLoadError: the base model or the bi-encoder cannot be loaded.
        MissingExtraError: the ``train`` or ``eval`` extra is not installed.
    """
    from rerank_plugins import Reranker
    from rerank_plugins.backends.base import resolve_device, resolve_model_id
    from rerank_plugins.evaluation.pipeline import evaluate
    from rerank_plugins.evaluation.retrieval import BiEncoder, DenseIndex

    total_start = time.perf_counter()
    train_queries = _positive_int("train_queries", train_queries, allow_none=True)
    eval_queries = _positive_int("eval_queries", eval_queries, allow_none=True)
    negatives = _positive_int("negatives", negatives)
    mine_k = _positive_int("mine_k", mine_k)
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    max_length = _positive_int("max_length", max_length)
    max_steps = _positive_int("max_steps", max_steps, allow_none=True)
    save_steps = _positive_int("save_steps", save_steps, allow_none=True)
    eval_batch_size = _positive_int("eval_batch_size", eval_batch_size)
    learning_rate = _positive_float("learning_rate", learning_rate)
    if isinstance(warmup_ratio, bool) or not isinstance(warmup_ratio, (int, float)) or not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio!r}")
    if pos_weight != "balanced":
        if isinstance(pos_weight, bool) or not isinstance(pos_weight, (int, float)) or not pos_weight > 0:
            raise ValueError(f"pos_weight must be 'balanced' or a positive number, got {pos_weight!r}")
        pos_weight = float(pos_weight)
    if attention_dropout is not None and (
        isinstance(attention_dropout, bool) or not isinstance(attention_dropout, (int, float))
        or not 0 <= attention_dropout < 1
    ):
        raise ValueError(f"attention_dropout must be None or in [0, 1), got {attention_dropout!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    if loss != "bce" and pos_weight != "balanced":
        raise ValueError(f"pos_weight applies to loss='bce' only; the {loss} loss has no positive weight "
                         f"(got pos_weight={pos_weight!r})")
    if dtype not in TRAIN_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(TRAIN_DTYPES)}; got {dtype!r}")
    for name, value in (("seed", seed), ("split_seed", split_seed)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    split_seed = seed if split_seed is None else split_seed
    retrieve_k = _positive_int("retrieve_k", retrieve_k)
    rerank_k = _positive_int("rerank_k", rerank_k)
    if rerank_k < 10:
        raise ValueError(f"rerank_k must be at least 10 (the report goes to hit@10, mrr@10, ndcg@10), got {rerank_k}")
    if rerank_k > retrieve_k:
        raise ValueError(f"rerank_k ({rerank_k}) must not exceed retrieve_k ({retrieve_k})")
    output = Path(output).expanduser()
    if output.exists() and not overwrite:
        raise FileExistsError(f"output {str(output)!r} already exists (pass overwrite=True / --overwrite)")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"the parent directory of output {str(output)!r} does not exist")
    base_id = resolve_model_id(base)
    torch_device = resolve_device(device)
    if dtype == "float16" and torch_device.type == "cpu":
        raise ValueError("dtype float16 needs a GPU; on CPU use bfloat16 or float32")
    _train_imports()  # fail before loading data and models when the extra is missing

    # Data, split and samples.
    dataset = data if isinstance(data, Dataset) else load_dataset(data, format=format, corpus=corpus)
    split = split_by_group(dataset, eval_fraction=eval_fraction, seed=split_seed)
    available = (len(split.train.queries), len(split.eval.queries))
    train_set = split.train.sample(train_queries, seed=split_seed)
    eval_set = split.eval.sample(eval_queries, seed=split_seed)
    split = GroupSplit(train_set, eval_set, split.train_groups, split.eval_groups, split.group_by, split_seed,
                       split.eval_fraction)

    timing: dict[str, float] = {}
    with _work_dir(output) as work:
        # The base as a CrossEncoder (loaded first: a bad base fails before minutes of embedding),
        # saved so the "base" column measures exactly the starting point.
        start = time.perf_counter()
        model, had_head = _load_base(base_id, max_length=max_length, device=str(torch_device), seed=seed,
                                     attention_dropout=attention_dropout)
        base_dir = work / "base"
        model.save(str(base_dir))
        timing["load_base_s"] = time.perf_counter() - start

        # First stage: one corpus embedding, reused for mining (training corpus rows) and evaluation.
        start = time.perf_counter()
        if not isinstance(bi_encoder, BiEncoder):
            bi_encoder = BiEncoder(bi_encoder, device=device)
        full_index = DenseIndex.from_corpus(bi_encoder, dataset.doc_ids, dataset.doc_texts,
                                            cache=embeddings_cache, show_progress=show_progress)
        row_of = {d: i for i, d in enumerate(dataset.doc_ids)}
        train_index = DenseIndex(train_set.doc_ids,
                                 full_index.embeddings[[row_of[d] for d in train_set.doc_ids]])
        timing["index_s"] = time.perf_counter() - start

        start = time.perf_counter()
        mined = mine_hard_negatives(train_set, bi_encoder, train_index, negatives=negatives, mine_k=mine_k,
                                    show_progress=show_progress)
        text_of = dict(zip(train_set.doc_ids, train_set.doc_texts, strict=True))
        pairs = _pairs(mined, text_of)
        timing["mine_s"] = time.perf_counter() - start
        n_pairs = len(pairs["label"])
        skipped = sum(len(m.skipped_false_negatives) for m in mined)
        n_positives = int(sum(pairs["label"]))
        logger.info("mined %d training pairs (%d positives), skipped %d likely false negatives",
                    n_pairs, n_positives, skipped)
        positive_weight = None  # bce only
        if loss == "bce":
            train_rows, step_rows, pairs_per_row = pairs, batch_size, 1
            positive_weight = (n_pairs - n_positives) / max(n_positives, 1) if pos_weight == "balanced" else pos_weight
        else:
            train_rows = _tuples(mined, text_of, negatives)
            dropped = sum(len(m.negatives) < negatives for m in mined)
            if dropped:
                logger.info("listwise: left out %d questions with fewer than %d negatives", dropped, negatives)
            if not train_rows["query"]:
                raise ValueError(f"no training question has {negatives} mined negatives; lower negatives "
                                 "or raise mine_k")
            pairs_per_row = negatives + 2  # the positive, the hard negatives and one in-batch negative
            step_rows = max(2, batch_size // pairs_per_row)
        scored_per_epoch = len(train_rows["query"]) * pairs_per_row

        def measure(model_dir: Path) -> EvalReport:
            reranker = Reranker(str(model_dir), kind="cross-encoder", batch_size=eval_batch_size,
                                max_length=max_length, device=device)
            return evaluate(eval_set, reranker, bi_encoder, retrieve_k=retrieve_k, rerank_k=rerank_k,
                            ks=_KS, index=full_index, show_progress=show_progress)

        base_report = None
        if evaluate_base:
            start = time.perf_counter()
            base_report = measure(base_dir)
            timing["eval_base_s"] = time.perf_counter() - start
        shutil.rmtree(base_dir, ignore_errors=True)

        start = time.perf_counter()
        _train(model, train_rows, loss=loss, work=work, checkpoint_dir=checkpoint_dir, epochs=epochs,
               batch_size=step_rows,
               learning_rate=learning_rate, warmup_ratio=warmup_ratio, pos_weight=positive_weight, dtype=dtype,
               max_steps=max_steps, save_steps=save_steps, seed=seed, use_cpu=torch_device.type == "cpu",
               show_progress=show_progress)
        timing["train_s"] = time.perf_counter() - start
        timing["train_pairs_per_s"] = scored_per_epoch * epochs / timing["train_s"] if not max_steps else (
            min(scored_per_epoch * epochs, max_steps * step_rows * pairs_per_row) / timing["train_s"])

        model_dir = work / "model"
        model.save(str(model_dir))
        start = time.perf_counter()
        trained_report = measure(model_dir)
        timing["eval_trained_s"] = time.perf_counter() - start
        timing["total_s"] = time.perf_counter() - total_start

        config = {
            "data": dict(dataset.source),
            "documents": len(dataset.doc_ids),
            "base": {"model": str(base), "path": base_id, "had_head": had_head},
            "bi_encoder": trained_report.config["bi_encoder"],
            "split": {
                "group_by": split.group_by, "seed": split_seed, "eval_fraction": split.eval_fraction,
                "train_groups": len(split.train_groups), "eval_groups": len(split.eval_groups),
                "train_queries_available": available[0], "eval_queries_available": available[1],
            },
            "train_queries": len(train_set.queries),
            "eval_queries": len(eval_set.queries),
            "train_pairs": n_pairs,
            "negatives": negatives,
            "mine_k": mine_k,
            "skipped_false_negatives": skipped,
            "retrieve_k": trained_report.config["retrieve_k"],
            "rerank_k": trained_report.config["rerank_k"],
            "training": {
                "trainer": "sentence_transformers.cross_encoder.CrossEncoderTrainer",
                "loss": LOSSES[loss],
                "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "warmup_ratio": warmup_ratio, "pos_weight": positive_weight,
                "pairs_scored_per_epoch": scored_per_epoch,
                "attention_dropout": attention_dropout, "max_length": max_length, "dtype": dtype,
                "max_steps": max_steps, "seed": seed, "device": str(torch_device),
            },
        }
        report = FinetuneReport(
            retrieval=_metrics(trained_report.retrieval),
            base=None if base_report is None else _metrics(base_report.reranked),
            trained=_metrics(trained_report.reranked),
            timing=timing,
            config=config,
            output=str(output),
            trained_vs_base=None if base_report is None else _paired(base_report.outcomes, trained_report.outcomes),
            base_outcomes=() if base_report is None else base_report.outcomes,
            trained_outcomes=trained_report.outcomes,
        )
        (model_dir / "README.md").write_text(_model_card(report, split), encoding="utf-8")
        (model_dir / "split.json").write_text(json.dumps(split.to_dict(), indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
        report.write_json(model_dir / "report.json")
        _publish(model_dir, output, overwrite)
    logger.info("wrote the trained reranker to %s", output)
    if (verdict := report._verdict()) is not None:
        logger.warning("%s", verdict)
    return report


def _train(
    model: Any, rows: dict[str, list[Any]], *, loss: str, work: Path, checkpoint_dir: str | Path | None, epochs: int,
    batch_size: int, learning_rate: float, warmup_ratio: float, pos_weight: float | None, dtype: str,
    max_steps: int | None,
    save_steps: int | None, seed: int, use_cpu: bool, show_progress: bool | None,
) -> None:
    import torch

    (_, CrossEncoderTrainer, CrossEncoderTrainingArguments, BinaryCrossEntropyLoss, HFDataset,
     MultipleNegativesRankingLoss) = _train_imports()
    if show_progress is None:
        import sys

        show_progress = sys.stderr.isatty()
    args = CrossEncoderTrainingArguments(
        output_dir=str(checkpoint_dir if checkpoint_dir is not None else work / "checkpoints"),
        num_train_epochs=epochs,
        max_steps=max_steps if max_steps is not None else -1,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=float(warmup_ratio),  # a float below 1 is a ratio of the total steps (transformers 5)
        bf16=dtype == "bfloat16",
        fp16=dtype == "float16",
        use_cpu=use_cpu,
        seed=seed,
        data_seed=seed,
        save_strategy="steps" if save_steps else "epoch",
        save_steps=save_steps or 500,
        save_total_limit=2,
        save_only_model=True,
        logging_steps=max(1, min(50, (max_steps or 10**9))),
        report_to="none",
        disable_tqdm=not show_progress,
        dataloader_num_workers=0,
        # Listwise takes its in-batch negative from the other questions' passages: no text twice in a
        # batch, so it is never the question's own positive (SQuAD questions share paragraphs).
        batch_sampler="no_duplicates" if loss == "listwise" else "batch_sampler",
    )
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=HFDataset.from_dict(rows),
        loss=BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(pos_weight)) if loss == "bce"
        else MultipleNegativesRankingLoss(model, num_negatives=1),  # one other question's passage: an easy negative
    )
    trainer.train()
