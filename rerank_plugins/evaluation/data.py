"""Retrieval test sets: a corpus of documents and queries with their relevant document ids.

Two layouts load into one :class:`Dataset`:

* **SQuAD layout** (SQuAD v1.1/v2.0, KorQuAD, KLUE MRC exports):
  ``{"data": [{"title": ..., "paragraphs": [{"context": ..., "qas": [{"id": ..., "question": ...}]}]}]}``.
  Every distinct paragraph text becomes one corpus document (duplicates are
  merged, so a question's gold is the paragraph *text* it was asked on);
  every question is a query whose one relevant document is its paragraph.
  A query also records its article (``title``, else its position) as its
  ``group`` and its answer texts (``answers`` as strings or ``{"text": ...}``
  objects) as ``answers``; fine-tuning splits by group and uses the answers
  to spot false negatives.
  Questions marked ``"is_impossible": true`` (SQuAD 2.0, KLUE MRC) are left
  out: their paragraph does not answer them.
* **JSONL layout**: a queries file, one JSON object a line,
  ``{"query": "...", "positives": ["doc-id", ...]}`` (optional ``"id"``,
  ``"group"`` and ``"answers"``: a list of answer strings), and a
  corpus file, one ``{"id": "...", "text": "..."}`` a line. Ids may be strings
  or integers (compared as strings); blank lines are skipped.

Malformed files raise :class:`DataFormatError` naming the file and the line
(JSONL) or the key path (SQuAD), e.g. ``data[3].paragraphs[2].context``.

Example:
    >>> from rerank_plugins.evaluation import load_dataset
    >>> ds = load_dataset("examples/data/squad_sample.json")  # doctest: +SKIP
    >>> len(ds.doc_ids), len(ds.queries)  # doctest: +SKIP
    (157, 304)
    >>> ds.sample(20, seed=0).queries[0].positives  # doctest: +SKIP
    frozenset({'p103'})
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rerank_plugins._validation import find_surrogate

__all__ = [
    "FORMATS",
    "DataFormatError",
    "Dataset",
    "Query",
    "detect_format",
    "load_dataset",
    "load_jsonl",
    "load_squad",
]

logger = logging.getLogger(__name__)

Format = Literal["squad", "jsonl"]
FORMATS: tuple[str, ...] = ("squad", "jsonl")


class DataFormatError(ValueError):
    """A data file does not follow its layout; the message names the file and the line or key."""


@dataclass(frozen=True, slots=True)
class Query:
    """One evaluation query.

    Attributes:
        id: the query id (the question id in SQuAD layout, else its position).
        text: the query text.
        positives: ids of the relevant corpus documents (never empty).
        group: the document group the query belongs to (its article in the
            SQuAD layout, the optional ``group`` field in JSONL), or ``None``.
        answers: known answer texts (may be empty). ``group`` and ``answers``
            take no part in equality.
    """

    id: str
    text: str
    positives: frozenset[str]
    group: str | None = field(default=None, compare=False)
    answers: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Dataset:
    """A corpus and the queries asked against it.

    Attributes:
        doc_ids: corpus document ids, unique, in file order.
        doc_texts: the document texts, parallel to ``doc_ids``.
        queries: the queries; every positive id is in ``doc_ids``.
        source: where the data came from (paths and format), for reports.
    """

    doc_ids: tuple[str, ...]
    doc_texts: tuple[str, ...]
    queries: tuple[Query, ...]
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.doc_ids) != len(self.doc_texts):
            raise ValueError(f"{len(self.doc_ids)} doc ids but {len(self.doc_texts)} doc texts")
        if len(set(self.doc_ids)) != len(self.doc_ids):
            raise ValueError("doc_ids must be unique")
        known = set(self.doc_ids)
        for q in self.queries:
            if not q.positives:
                raise ValueError(f"query {q.id!r} has no positives")
            missing = sorted(q.positives - known)
            if missing:
                raise ValueError(f"query {q.id!r}: positive ids not in the corpus: {missing[:5]}")

    def sample(self, n: int | None, seed: int = 0) -> Dataset:
        """A reproducible random subset of ``n`` queries over the same corpus.

        ``None`` or ``n >= len(queries)`` keeps every query (in file order); the
        same ``(n, seed)`` always picks the same queries, in the same order.

        Example:
            >>> ds.sample(30, seed=1) == ds.sample(30, seed=1)  # doctest: +SKIP
            True
        """
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"the number of queries must be a positive int, got {n!r}")
        if n is None or n >= len(self.queries):
            return self
        picked = random.Random(seed).sample(range(len(self.queries)), n)
        return Dataset(
            self.doc_ids,
            self.doc_texts,
            tuple(self.queries[i] for i in picked),
            {**self.source, "sampled": n, "seed": seed},
        )


# --------------------------------------------------------------------------- helpers


def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a directory; expected a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _jsonl_objects(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in enumerate(_read_text(path, what).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}, line {lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"{path}, line {lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def _as_id(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataFormatError(f"{where} must be a string or integer id, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise DataFormatError(f"{where} is an empty id")
    _check_unicode(text, where)
    return text


def _nonempty_str(obj: dict[str, Any], key: str, where: str) -> str:
    if key not in obj:
        raise DataFormatError(f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, str):
        raise DataFormatError(f"{where}: key {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataFormatError(f"{where}: key {key!r} is empty")
    _check_unicode(value, f"{where}: key {key!r}")
    return value


def _check_unicode(text: str, where: str) -> None:
    """JSON may escape a lone surrogate (``"\\ud83d"``): valid JSON, but no text a model can read."""
    pos = find_surrogate(text)
    if pos is not None:
        raise DataFormatError(f"{where}: lone surrogate {text[pos]!r} at character {pos} (not valid Unicode text)")
def _answer_texts(raw: Any, where: str) -> tuple[str, ...]:
    """Answer strings from a list of strings or ``{"text": str}`` objects; blank ones dropped."""
    if raw is None:
        return ()
    _expect(raw, list, where)
    texts: list[str] = []
    for i, item in enumerate(raw):
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise DataFormatError(
                f"{where}[{i}] must be a string or an object with a string 'text', got {type(item).__name__}"
            )
        if text.strip() and text not in texts:
            texts.append(text)
    return tuple(texts)


# --------------------------------------------------------------------------- SQuAD layout


def _expect(value: Any, kind: type, where: str) -> None:
    """Raise naming ``where`` unless ``value`` is a dict (a JSON object) or a list."""
    if not isinstance(value, kind):
        expected = "an object" if kind is dict else "a list"
        raise DataFormatError(f"{where} must be {expected}, got {type(value).__name__}")


def load_squad(path: str | Path) -> Dataset:
    """Load a SQuAD-layout file (SQuAD, KorQuAD, KLUE MRC) as a retrieval set.

    Args:
        path: the JSON file.

    Returns:
        A :class:`Dataset` whose documents are the distinct paragraphs (ids
        ``p0``, ``p1``, ... in order of first appearance) and whose queries are
        the answerable questions, each with its paragraph as the one positive.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: invalid JSON (line and column named) or a missing or
            mistyped key (its path named, e.g. ``data[0].paragraphs[3].qas[1].question``).

    Example:
        >>> ds = load_squad("examples/data/squad_sample.json")  # doctest: +SKIP
    """
    path = Path(path)
    text = _read_text(path, "data file")
    try:
        root = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(root, dict) or "data" not in root:
        raise DataFormatError(f"{path}: missing key 'data' (expected the SQuAD layout {{\"data\": [...]}})")
    articles = root["data"]
    if not isinstance(articles, list):
        raise DataFormatError(f"{path}: key 'data' must be a list, got {type(articles).__name__}")

    id_by_text: dict[str, str] = {}
    texts: list[str] = []
    queries: list[Query] = []
    seen_qids: set[str] = set()
    skipped_impossible = 0
    for ai, article in enumerate(articles):
        where = f"{path}: data[{ai}]"
        _expect(article, dict, where)
        if "paragraphs" not in article:
            raise DataFormatError(f"{where}: missing key 'paragraphs'")
        paragraphs = article["paragraphs"]
        _expect(paragraphs, list, f"{where}.paragraphs")
        title = article.get("title")
        group = title if isinstance(title, str) and title.strip() else f"data[{ai}]"
        for pi, paragraph in enumerate(paragraphs):
            pwhere = f"{where}.paragraphs[{pi}]"
            _expect(paragraph, dict, pwhere)
            context = _nonempty_str(paragraph, "context", pwhere)
            doc_id = id_by_text.get(context)
            if doc_id is None:
                doc_id = id_by_text[context] = f"p{len(texts)}"
                texts.append(context)
            qas = paragraph.get("qas", [])
            _expect(qas, list, f"{pwhere}.qas")
            for qi, qa in enumerate(qas):
                qwhere = f"{pwhere}.qas[{qi}]"
                _expect(qa, dict, qwhere)
                question = _nonempty_str(qa, "question", qwhere)
                if qa.get("is_impossible") is True:
                    skipped_impossible += 1
                    continue
                qid = _as_id(qa["id"], f"{qwhere}.id") if "id" in qa else f"q{len(queries)}"
                if qid in seen_qids:  # ids must stay unique for per-query output
                    qid = f"{qid}#{len(queries)}"
                seen_qids.add(qid)
                answers = _answer_texts(qa.get("answers"), f"{qwhere}.answers")
                queries.append(Query(qid, question, frozenset({doc_id}), group, answers))
    if not texts:
        raise DataFormatError(f"{path}: no paragraphs found under 'data'")
    if not queries:
        raise DataFormatError(f"{path}: no answerable questions found under 'data[].paragraphs[].qas'")
    if skipped_impossible:
        logger.info("%s: left out %d unanswerable (is_impossible) questions", path, skipped_impossible)
    logger.info("%s: %d paragraphs, %d questions", path, len(texts), len(queries))
    ids = tuple(f"p{i}" for i in range(len(texts)))
    return Dataset(ids, tuple(texts), tuple(queries), {"format": "squad", "data": str(path)})


# --------------------------------------------------------------------------- JSONL layout


def load_jsonl(queries_path: str | Path, corpus_path: str | Path) -> Dataset:
    """Load the JSONL layout: a queries file and a corpus file.

    Args:
        queries_path: one ``{"query": str, "positives": [id, ...], "id"?: str, "group"?: str,
            "answers"?: [str, ...]}`` a line.
        corpus_path: one ``{"id": str | int, "text": str}`` a line; ids unique.

    Raises:
        FileNotFoundError: a file does not exist.
        DataFormatError: a line is not a JSON object, lacks a key, has a
            mistyped value, repeats a corpus id or names a positive that is not
            in the corpus (the message names the file and line).

    Example:
        >>> ds = load_jsonl("queries.jsonl", "corpus.jsonl")  # doctest: +SKIP
    """
    queries_path, corpus_path = Path(queries_path), Path(corpus_path)
    ids: list[str] = []
    texts: list[str] = []
    line_of: dict[str, int] = {}
    for lineno, obj in _jsonl_objects(corpus_path, "corpus file"):
        where = f"{corpus_path}, line {lineno}"
        if "id" not in obj:
            raise DataFormatError(f"{where}: missing key 'id'")
        doc_id = _as_id(obj["id"], f"{where}: key 'id'")
        text = _nonempty_str(obj, "text", where)
        if doc_id in line_of:
            raise DataFormatError(f"{where}: duplicate id {doc_id!r} (first on line {line_of[doc_id]})")
        line_of[doc_id] = lineno
        ids.append(doc_id)
        texts.append(text)
    if not ids:
        raise DataFormatError(f"{corpus_path}: no documents (expected one {{\"id\", \"text\"}} object a line)")

    queries: list[Query] = []
    seen_qids: set[str] = set()
    for lineno, obj in _jsonl_objects(queries_path, "queries file"):
        where = f"{queries_path}, line {lineno}"
        text = _nonempty_str(obj, "query", where)
        if "positives" not in obj:
            raise DataFormatError(f"{where}: missing key 'positives'")
        raw = obj["positives"]
        if not isinstance(raw, list) or not raw:
            raise DataFormatError(f"{where}: key 'positives' must be a non-empty list of document ids")
        positives = frozenset(_as_id(p, f"{where}: positives[{i}]") for i, p in enumerate(raw))
        unknown = sorted(p for p in positives if p not in line_of)
        if unknown:
            raise DataFormatError(f"{where}: positive id {unknown[0]!r} is not in the corpus {corpus_path}")
        qid = _as_id(obj["id"], f"{where}: key 'id'") if "id" in obj else str(len(queries))
        if qid in seen_qids:
            raise DataFormatError(f"{where}: duplicate query id {qid!r}")
        seen_qids.add(qid)
        group = _as_id(obj["group"], f"{where}: key 'group'") if obj.get("group") is not None else None
        answers = _answer_texts(obj.get("answers"), f"{where}: key 'answers'")
        queries.append(Query(qid, text, positives, group, answers))
    if not queries:
        raise DataFormatError(f"{queries_path}: no queries (expected one {{\"query\", \"positives\"}} object a line)")
    logger.info("%s: %d queries over %d documents", queries_path, len(queries), len(ids))
    return Dataset(
        tuple(ids), tuple(texts), tuple(queries),
        {"format": "jsonl", "data": str(queries_path), "corpus": str(corpus_path)},
    )


# --------------------------------------------------------------------------- dispatch


def detect_format(path: str | Path) -> Format:
    """``"jsonl"`` for ``*.jsonl`` / ``*.ndjson`` files, else ``"squad"``."""
    return "jsonl" if Path(path).suffix.lower() in {".jsonl", ".ndjson"} else "squad"


def load_dataset(
    path: str | Path, format: str | None = None, corpus: str | Path | None = None
) -> Dataset:
    """Load a retrieval set in either layout.

    Args:
        path: the SQuAD-layout JSON file, or the JSONL queries file.
        format: ``"squad"``, ``"jsonl"`` or ``None`` (from the file suffix:
            ``.jsonl`` means JSONL).
        corpus: the JSONL corpus file (JSONL layout only; required there).

    Raises:
        ValueError: an unknown format, a JSONL set without ``corpus``, or a
            ``corpus`` given with the SQuAD layout.
        FileNotFoundError, DataFormatError: see :func:`load_squad` and :func:`load_jsonl`.

    Example:
        >>> load_dataset("queries.jsonl", corpus="corpus.jsonl")  # doctest: +SKIP
    """
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "jsonl":
        if corpus is None:
            raise ValueError("the jsonl format needs a corpus file (--corpus PATH, one {\"id\", \"text\"} a line)")
        return load_jsonl(path, corpus)
    if corpus is not None:
        raise ValueError("a corpus file applies to the jsonl format only; SQuAD-layout data holds its own paragraphs")
    return load_squad(path)
