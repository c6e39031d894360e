"""Training data for a reranker: a split by document group and hard negatives mined by the first stage.

* :func:`split_by_group` holds out whole document groups (SQuAD/KorQuAD
  articles, the JSONL ``group`` field, else single queries). Groups that share
  a positive document are merged first, so no held-out question's paragraph
  is ever a training positive.
* :func:`select_negatives` / :func:`mine_hard_negatives`: the first stage's
  top-ranked candidates that are neither positives nor likely false negatives
  (a candidate containing one of the question's answer texts).

Example:
    >>> from rerank_plugins.evaluation import load_dataset
    >>> from rerank_plugins.training import split_by_group
    >>> split = split_by_group(load_dataset("squad-dev.json"), eval_fraction=0.25, seed=0)  # doctest: +SKIP
    >>> len(split.train_groups), len(split.eval_groups)  # doctest: +SKIP
    (36, 12)
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rerank_plugins.evaluation.data import Dataset, Query

if TYPE_CHECKING:
    from rerank_plugins.evaluation.retrieval import BiEncoder, DenseIndex

__all__ = ["GroupSplit", "MinedQuery", "mine_hard_negatives", "select_negatives", "split_by_group"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupSplit:
    """Queries split into training and held-out parts by document group.

    Attributes:
        train: the training queries over the training corpus (every document
            except the held-out queries' positives).
        eval: the held-out queries over the full corpus.
        train_groups: the groups whose queries are in ``train``, sorted.
        eval_groups: the held-out groups, sorted.
        group_by: ``"group"`` (the queries' own groups) or ``"query"`` (none given).
        seed: the seed that shuffled the groups.
        eval_fraction: the share of groups held out.
    """

    train: Dataset
    eval: Dataset
    train_groups: tuple[str, ...]
    eval_groups: tuple[str, ...]
    group_by: str
    seed: int
    eval_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """The split as JSON-ready data (saved beside the trained model as ``split.json``)."""
        return {
            "group_by": self.group_by,
            "seed": self.seed,
            "eval_fraction": self.eval_fraction,
            "train_groups": list(self.train_groups),
            "eval_groups": list(self.eval_groups),
            "train_query_ids": [q.id for q in self.train.queries],
            "eval_query_ids": [q.id for q in self.eval.queries],
            "train_documents": len(self.train.doc_ids),
            "eval_documents": len(self.eval.doc_ids),
        }


def _check_fraction(eval_fraction: Any) -> float:
    if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)) or not (
        0.0 < eval_fraction < 1.0
    ):
        raise ValueError(f"eval_fraction must be a number strictly between 0 and 1, got {eval_fraction!r}")
    return float(eval_fraction)


def _group_components(queries: Sequence[Query], group_by: str) -> dict[str, str]:
    """Map each query's group label to a component label; groups sharing a positive merge."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    owner: dict[str, str] = {}
    for q in queries:
        label = _label(q, group_by)
        parent.setdefault(label, label)
        for doc in q.positives:
            if doc in owner:
                union(owner[doc], label)
            else:
                owner[doc] = label
    return {label: find(label) for label in parent}


def _label(q: Query, group_by: str) -> str:
    return f"group:{q.group}" if group_by == "group" else f"query:{q.id}"


def split_by_group(dataset: Dataset, *, eval_fraction: float = 0.25, seed: int = 0) -> GroupSplit:
    """Hold out whole document groups for evaluation.

    Groups are the queries' ``group`` (the article in the SQuAD layout); when
    no query has one, every query is its own group. Groups sharing a positive
    document are merged, so a held-out positive is never a training positive.
    ``round(eval_fraction * groups)`` groups (at least 1, at most all but 1)
    are held out, picked by ``seed``. The training corpus leaves out the
    held-out positives, so they are not even mined as negatives.

    Raises:
        ValueError: ``eval_fraction`` is not in (0, 1), fewer than two groups,
            or some queries have a group and others do not.

    Example:
        >>> split = split_by_group(dataset, eval_fraction=0.25, seed=0)  # doctest: +SKIP
        >>> set(split.train_groups) & set(split.eval_groups)  # doctest: +SKIP
        set()
    """
    eval_fraction = _check_fraction(eval_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    with_group = sum(q.group is not None for q in dataset.queries)
    if 0 < with_group < len(dataset.queries):
        first = next(q for q in dataset.queries if q.group is None)
        raise ValueError(
            f"{with_group} of {len(dataset.queries)} queries have a group and the others do not "
            f"(first without: query {first.id!r}); give every query a group or none"
        )
    group_by = "group" if with_group else "query"
    component = _group_components(dataset.queries, group_by)
    components = sorted(set(component.values()))
    if len(components) < 2:
        raise ValueError(
            f"cannot split by {group_by}: the queries form {len(components)} group(s) once groups "
            "sharing a positive document are merged; at least 2 are needed"
        )
    n_eval = min(max(1, round(eval_fraction * len(components))), len(components) - 1)
    shuffled = list(components)
    random.Random(seed).shuffle(shuffled)
    held_out = set(shuffled[:n_eval])

    train_q = tuple(q for q in dataset.queries if component[_label(q, group_by)] not in held_out)
    eval_q = tuple(q for q in dataset.queries if component[_label(q, group_by)] in held_out)
    held_docs = set().union(*(q.positives for q in eval_q))
    keep = [i for i, d in enumerate(dataset.doc_ids) if d not in held_docs]
    source = dict(dataset.source)
    train = Dataset(
        tuple(dataset.doc_ids[i] for i in keep), tuple(dataset.doc_texts[i] for i in keep), train_q,
        {**source, "split": "train"},
    )
    evaluation = Dataset(dataset.doc_ids, dataset.doc_texts, eval_q, {**source, "split": "eval"})

    def names(labels: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted({label.split(":", 1)[1] for label in labels}))

    train_labels = [label for label, c in component.items() if c not in held_out]
    eval_labels = [label for label, c in component.items() if c in held_out]
    logger.info(
        "split by %s: %d train groups (%d queries), %d held-out groups (%d queries)",
        group_by, len(components) - n_eval, len(train_q), n_eval, len(eval_q),
    )
    return GroupSplit(train, evaluation, names(train_labels), names(eval_labels), group_by, seed, eval_fraction)


@dataclass(frozen=True, slots=True)
class MinedQuery:
    """One training query with its positives and mined negatives.

    Attributes:
        query: the query.
        negatives: ids of the mined negatives, in first-stage rank order.
        skipped_false_negatives: candidates left out because they contain an answer text.
    """

    query: Query
    negatives: tuple[str, ...]
    skipped_false_negatives: tuple[str, ...]


def select_negatives(
    candidates: Sequence[str],
    positives: frozenset[str] | set[str],
    text_of: Mapping[str, str],
    answers: Sequence[str],
    k: int,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The first ``k`` candidates that are neither positives nor likely false negatives.

    A candidate is a likely false negative when it contains one of ``answers``
    (case-insensitively). Returns ``(negatives, skipped_false_negatives)``, both in
    candidate order; fewer than ``k`` negatives when the candidates run out.

    Example:
        >>> select_negatives(["a", "b", "c", "d"], {"a"}, {"a": "x", "b": "in 1973", "c": "y", "d": "z"},
        ...                  ["1973"], 2)
        (('c', 'd'), ('b',))
    """
    needles = [a.casefold() for a in answers if a.strip()]
    negatives: list[str] = []
    skipped: list[str] = []
    for doc in candidates:
        if len(negatives) >= k:
            break
        if doc in positives:
            continue
        text = text_of[doc].casefold()
        if any(n in text for n in needles):
            skipped.append(doc)
            continue
        negatives.append(doc)
    return tuple(negatives), tuple(skipped)


def mine_hard_negatives(
    dataset: Dataset,
    bi_encoder: BiEncoder,
    index: DenseIndex,
    *,
    negatives: int = 3,
    mine_k: int = 30,
    show_progress: bool | None = None,
) -> list[MinedQuery]:
    """Retrieve ``mine_k`` candidates per query with the first stage and keep the hard negatives.

    Args:
        dataset: the training queries and corpus.
        bi_encoder: the first-stage bi-encoder.
        index: an index over ``dataset``'s corpus (the documents mined from).
        negatives: negatives kept per query (the top-ranked eligible candidates).
        mine_k: candidates retrieved per query.
        show_progress: a tqdm bar while embedding the queries.

    Example:
        >>> mined = mine_hard_negatives(split.train, encoder, index, negatives=3, mine_k=30)  # doctest: +SKIP
    """
    for name, value in (("negatives", negatives), ("mine_k", mine_k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if index.doc_ids != dataset.doc_ids:
        raise ValueError("the index was not built over this dataset's corpus")
    text_of = dict(zip(dataset.doc_ids, dataset.doc_texts, strict=True))
    emb = bi_encoder.encode([q.text for q in dataset.queries], show_progress=show_progress, desc="training queries")
    hits = index.search(emb, mine_k)
    mined = []
    for q, row in zip(dataset.queries, hits, strict=True):
        negs, skipped = select_negatives([d for d, _ in row], q.positives, text_of, q.answers, negatives)
        mined.append(MinedQuery(q, negs, skipped))
    short = sum(len(m.negatives) < negatives for m in mined)
    if short:
        logger.warning("%d of %d queries got fewer than %d negatives from the top %d", short, len(mined),
                       negatives, mine_k)
    return mined
