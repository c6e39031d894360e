"""Loaders: SQuAD and JSONL layouts, errors naming file and line or key, reproducible samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_plugins.evaluation import DataFormatError, Dataset, Query, detect_format, load_dataset
from rerank_plugins.evaluation.data import load_jsonl, load_squad

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "squad_sample.json"


def write(path: Path, obj) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def test_squad_layout_dedupes_paragraphs_and_maps_questions(tmp_path):
    data = {"data": [
        {"title": "A", "paragraphs": [
            {"context": "Paris is in France.", "qas": [{"id": "a1", "question": "Where is Paris?"}]},
            {"context": "Berlin is in Germany.", "qas": [
                {"id": "a2", "question": "Where is Berlin?", "answers": [{"text": "Germany", "answer_start": 13}]},
                {"id": "a3", "question": "Unanswerable?", "is_impossible": True},
            ]},
        ]},
        {"title": "B", "paragraphs": [
            {"context": "Paris is in France.", "qas": [{"question": "Which country is Paris in?"}]},
            {"context": "A paragraph nobody asked about."},
        ]},
    ]}
    ds = load_squad(write(tmp_path / "s.json", data))
    assert ds.doc_ids == ("p0", "p1", "p2")
    assert ds.doc_texts == ("Paris is in France.", "Berlin is in Germany.", "A paragraph nobody asked about.")
    assert [(q.id, q.text, q.positives) for q in ds.queries] == [
        ("a1", "Where is Paris?", frozenset({"p0"})),
        ("a2", "Where is Berlin?", frozenset({"p1"})),
        ("q2", "Which country is Paris in?", frozenset({"p0"})),  # the duplicate paragraph maps to p0
    ]
    assert ds.source == {"format": "squad", "data": str(tmp_path / "s.json")}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"data": [\n  {"paragraphs": [}\n]}', r"s\.json: invalid JSON at line 2, column 19"),
        ({"version": "1"}, r"s\.json: missing key 'data'"),
        ({"data": {"a": 1}}, r"key 'data' must be a list"),
        ({"data": [{"title": "x"}]}, r"s\.json: data\[0\]: missing key 'paragraphs'"),
        ({"data": [{"paragraphs": [{"context": "c", "qas": []}, {"qas": []}]}]},
         r"data\[0\]\.paragraphs\[1\]: missing key 'context'"),
        ({"data": [{"paragraphs": [{"context": 3}]}]}, r"paragraphs\[0\]: key 'context' must be a string"),
        ({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "q": "?"}]}]}]},
         r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: missing key 'question'"),
        ({"data": [{"paragraphs": [{"context": "c", "qas": "nope"}]}]}, r"paragraphs\[0\]\.qas must be a list"),
        ({"data": [{"paragraphs": [{"context": "c"}]}]}, r"no answerable questions"),
        ({"data": []}, r"no paragraphs"),
    ],
)
def test_malformed_squad_names_file_and_key(tmp_path, content, message):
    with pytest.raises(DataFormatError, match=message):
        load_squad(write(tmp_path / "s.json", content))


def test_missing_file_is_a_clear_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data file '.*nope\.json' does not exist"):
        load_squad(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="corpus file"):
        load_jsonl(tmp_path / "q.jsonl", tmp_path / "c.jsonl")


def test_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"data": ["café"]}'.encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin1\.json: not UTF-8"):
        load_squad(path)


def test_jsonl_layout(tiny_jsonl):
    queries, corpus = tiny_jsonl
    ds = load_dataset(queries, corpus=corpus)  # format from the suffix
    assert len(ds.doc_ids) == 19 and ds.doc_ids[0] == "doc-0"
    assert len(ds.queries) == 19
    assert ds.queries[0] == Query("Q0", "The quick brown fox", frozenset({"doc-0", "doc-1"}))
    assert ds.queries[1].positives == frozenset({"doc-1"})
    assert ds.source["format"] == "jsonl" and ds.source["corpus"] == str(corpus)


def test_jsonl_integer_ids_compare_as_strings(tmp_path):
    corpus = write(tmp_path / "c.jsonl", '{"id": 1, "text": "one"}\n{"id": "2", "text": "two"}\n')
    queries = write(tmp_path / "q.jsonl", '{"query": "first", "positives": ["1", 2]}\n')
    ds = load_jsonl(queries, corpus)
    assert ds.doc_ids == ("1", "2") and ds.queries[0].positives == frozenset({"1", "2"})
    assert ds.queries[0].id == "0"


GOOD_CORPUS = '{"id": "a", "text": "alpha"}\n{"id": "b", "text": "beta"}\n'


@pytest.mark.parametrize(
    ("corpus", "queries", "message"),
    [
        (GOOD_CORPUS, '{"query": "x", "positives": ["a"]}\n{"query": "y" "positives": ["a"]}\n',
         r"q\.jsonl, line 2: invalid JSON"),
        (GOOD_CORPUS, '\n{"query": "x"}\n', r"q\.jsonl, line 2: missing key 'positives'"),
        (GOOD_CORPUS, '{"positives": ["a"]}\n', r"q\.jsonl, line 1: missing key 'query'"),
        (GOOD_CORPUS, '{"query": "x", "positives": []}\n', r"line 1: key 'positives' must be a non-empty list"),
        (GOOD_CORPUS, '{"query": "x", "positives": "a"}\n', r"line 1: key 'positives' must be a non-empty list"),
        (GOOD_CORPUS, '{"query": "x", "positives": ["zz"]}\n', r"q\.jsonl, line 1: positive id 'zz' is not in"),
        (GOOD_CORPUS, '["x"]\n', r"q\.jsonl, line 1: expected a JSON object, got list"),
        (GOOD_CORPUS, '{"query": 5, "positives": ["a"]}\n', r"line 1: key 'query' must be a string"),
        (GOOD_CORPUS, '{"id": "1", "query": "x", "positives": ["a"]}\n{"id": "1", "query": "y", "positives": ["a"]}',
         r"q\.jsonl, line 2: duplicate query id '1'"),
        (GOOD_CORPUS, "\n \n", r"q\.jsonl: no queries"),
        ('{"id": "a", "text": "alpha"}\n{"id": "a", "text": "again"}\n', '{"query": "x", "positives": ["a"]}',
         r"c\.jsonl, line 2: duplicate id 'a' \(first on line 1\)"),
        ('{"id": "a", "txt": "alpha"}\n', '{"query": "x", "positives": ["a"]}',
         r"c\.jsonl, line 1: missing key 'text'"),
        ('{"text": "alpha"}\n', '{"query": "x", "positives": ["a"]}', r"c\.jsonl, line 1: missing key 'id'"),
        ('{"id": null, "text": "alpha"}\n', '{"query": "x", "positives": ["a"]}',
         r"c\.jsonl, line 1: key 'id' must be a string or integer id"),
        ('{"id": "a", "text": "alpha"\n', '{"query": "x", "positives": ["a"]}', r"c\.jsonl, line 1: invalid JSON"),
    ],
)
def test_malformed_jsonl_names_file_line_and_key(tmp_path, corpus, queries, message):
    c = write(tmp_path / "c.jsonl", corpus)
    q = write(tmp_path / "q.jsonl", queries)
    with pytest.raises(DataFormatError, match=message):
        load_jsonl(q, c)


def test_load_dataset_dispatch_errors(tmp_path, tiny_squad, tiny_jsonl):
    assert detect_format("x.jsonl") == "jsonl" and detect_format("x.JSON") == "squad"
    with pytest.raises(ValueError, match="needs a corpus file"):
        load_dataset(tiny_jsonl[0])
    with pytest.raises(ValueError, match="applies to the jsonl format only"):
        load_dataset(tiny_squad, corpus=tiny_jsonl[1])
    with pytest.raises(ValueError, match="format must be one of squad, jsonl"):
        load_dataset(tiny_squad, format="csv")
    # An explicit format wins over the suffix.
    renamed = write(tmp_path / "squad.jsonl", tiny_squad.read_text(encoding="utf-8"))
    assert len(load_dataset(renamed, format="squad").queries) == 38


def test_sample_is_reproducible_and_a_subset(tiny_squad):
    ds = load_dataset(tiny_squad)
    a, b, c = ds.sample(10, seed=3), ds.sample(10, seed=3), ds.sample(10, seed=4)
    assert a == b and [q.id for q in a.queries] == [q.id for q in b.queries]
    assert [q.id for q in a.queries] != [q.id for q in c.queries]
    assert len(a.queries) == 10 and len({q.id for q in a.queries}) == 10
    assert set(a.queries) <= set(ds.queries)
    assert a.doc_ids == ds.doc_ids  # the corpus is never sampled
    assert a.source["sampled"] == 10 and a.source["seed"] == 3
    assert ds.sample(None) is ds and ds.sample(1000) is ds
    with pytest.raises(ValueError, match="positive int"):
        ds.sample(0)


def test_dataset_checks_consistency():
    with pytest.raises(ValueError, match="not in the corpus"):
        Dataset(("a",), ("A",), (Query("q", "?", frozenset({"b"})),))
    with pytest.raises(ValueError, match="unique"):
        Dataset(("a", "a"), ("A", "B"), ())
    with pytest.raises(ValueError, match="no positives"):
        Dataset(("a",), ("A",), (Query("q", "?", frozenset()),))


def test_shipped_sample_is_small_valid_squad_layout():
    assert EXAMPLE.stat().st_size < 300_000
    ds = load_dataset(EXAMPLE)
    assert len(ds.doc_ids) == 157 and len(ds.queries) == 304
    assert (EXAMPLE.parent / "README.md").read_text(encoding="utf-8").count("CC BY-SA 4.0") >= 1


def test_korquad_loads_with_deduplicated_paragraphs(korquad_path):
    ds = load_dataset(korquad_path)
    assert len(ds.queries) == 5774
    assert len(ds.doc_ids) == 961  # 964 paragraphs, three texts repeated
    assert any("\uac00" <= ch <= "\ud7a3" for ch in ds.queries[0].text)  # Hangul
    assert all(len(q.positives) == 1 for q in ds.queries)
