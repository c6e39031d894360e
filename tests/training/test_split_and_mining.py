"""The training split and hard-negative mining: no leakage, positives and false negatives skipped."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from rerank_plugins.evaluation import DataFormatError, Dataset, Query, load_dataset, load_jsonl
from rerank_plugins.training import mine_hard_negatives, select_negatives, split_by_group


def _assert_no_leak(split, dataset):
    train_ids = {q.id for q in split.train.queries}
    eval_ids = {q.id for q in split.eval.queries}
    assert train_ids and eval_ids and not train_ids & eval_ids
    assert train_ids | eval_ids == {q.id for q in dataset.queries}
    held_docs = set().union(*(q.positives for q in split.eval.queries))
    assert not held_docs & set(split.train.doc_ids)  # not even minable as negatives
    assert not held_docs & set().union(*(q.positives for q in split.train.queries))
    assert split.eval.doc_ids == dataset.doc_ids


def test_squad_split_by_article(tiny_squad):
    ds = load_dataset(tiny_squad)
    assert {q.group for q in ds.queries} == {f"article {i}" for i in range(5)}
    split = split_by_group(ds, eval_fraction=0.4, seed=3)
    _assert_no_leak(split, ds)
    assert split.group_by == "group" and len(split.eval_groups) == 2 and len(split.train_groups) == 3
    assert {q.group for q in split.eval.queries} == set(split.eval_groups)
    assert {q.group for q in split.train.queries} == set(split.train_groups)
    again = split_by_group(ds, eval_fraction=0.4, seed=3)
    assert again.to_dict() == split.to_dict()
    assert {split_by_group(ds, eval_fraction=0.4, seed=s).eval_groups for s in range(8)} != {split.eval_groups}


def test_squad_answers_and_groups_are_loaded(tmp_path):
    path = tmp_path / "korquad.json"
    path.write_text(json.dumps({"data": [
        {"title": "서울", "paragraphs": [{"context": "서울은 대한민국의 수도이다.", "qas": [
            {"id": "k1", "question": "대한민국의 수도는?", "answers": [{"text": "서울", "answer_start": 0}]}]}]},
        {"paragraphs": [{"context": "Paris is in France.", "qas": [
            {"id": "e1", "question": "Where is Paris?", "answers": ["France", "France", " "]}]}]},
    ]}, ensure_ascii=False), encoding="utf-8")
    ds = load_dataset(path)
    assert [(q.group, q.answers) for q in ds.queries] == [("서울", ("서울",)), ("data[1]", ("France",))]
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"question": "q?", "answers": [{"answer_start": 0}]}]}]}]}), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers\[0\] must be a string"):
        load_dataset(path)


def test_jsonl_group_field_and_merged_positives(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    queries = tmp_path / "queries.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"text {i}"}) + "\n" for i in range(6)))
    rows = [
        {"id": "a", "query": "qa", "positives": ["d0"], "group": "g1", "answers": ["x"]},
        {"id": "b", "query": "qb", "positives": ["d1"], "group": "g2"},
        {"id": "c", "query": "qc", "positives": ["d1", "d2"], "group": "g3"},  # shares d1: g2 and g3 merge
        {"id": "d", "query": "qd", "positives": ["d3"], "group": 4},
        {"id": "e", "query": "qe", "positives": ["d4"], "group": "g5"},
    ]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_jsonl(queries, corpus)
    assert [q.group for q in ds.queries] == ["g1", "g2", "g3", "4", "g5"]
    assert ds.queries[0].answers == ("x",) and ds.queries[1].answers == ()
    for seed in range(10):
        split = split_by_group(ds, eval_fraction=0.5, seed=seed)
        _assert_no_leak(split, ds)
        sides = {q.id: q in split.eval.queries for q in ds.queries}
        assert sides["b"] == sides["c"]
        assert len(split.eval_groups) + len(split.train_groups) == 5  # names of the original groups


def test_jsonl_without_groups_splits_by_query(tiny_jsonl):
    ds = load_dataset(tiny_jsonl[0], corpus=tiny_jsonl[1])
    split = split_by_group(ds, eval_fraction=0.25, seed=0)
    assert split.group_by == "query"
    _assert_no_leak(split, ds)


def test_split_errors():
    one = Dataset(("a", "b"), ("A", "B"), (Query("q1", "?", frozenset({"a"}), "g"),
                                            Query("q2", "?", frozenset({"b"}), "g")))
    with pytest.raises(ValueError, match="form 1 group"):
        split_by_group(one)
    mixed = Dataset(("a", "b"), ("A", "B"), (Query("q1", "?", frozenset({"a"}), "g"),
                                              Query("q2", "?", frozenset({"b"}))))
    with pytest.raises(ValueError, match="first without: query 'q2'"):
        split_by_group(mixed)
    for bad in (0, 1, 1.5, True, "0.2"):
        with pytest.raises(ValueError, match="eval_fraction must be a number strictly between 0 and 1"):
            split_by_group(mixed, eval_fraction=bad)


def test_select_negatives_skips_positives_and_false_negatives():
    text_of = {"p": "the answer is Paris", "a": "Berlin", "b": "PARIS again", "c": "Rome", "d": "Oslo", "e": "Bern"}
    negs, skipped = select_negatives(["p", "a", "b", "c", "d", "e"], frozenset({"p"}), text_of, ["paris"], 3)
    assert negs == ("a", "c", "d") and skipped == ("b",)
    assert select_negatives(["a", "p"], frozenset({"p"}), text_of, [], 5) == (("a",), ())


def test_mining_with_the_first_stage(tiny_squad, tiny_bi_encoder):
    from rerank_plugins.evaluation import BiEncoder, DenseIndex

    ds = load_dataset(tiny_squad)
    train = split_by_group(ds, eval_fraction=0.4, seed=0).train
    # "The" is in many English paragraphs: those candidates are likely false negatives
    train = Dataset(train.doc_ids, train.doc_texts, tuple(replace(q, answers=("The",)) for q in train.queries))
    encoder = BiEncoder(str(tiny_bi_encoder), device="cpu")
    index = DenseIndex.from_corpus(encoder, train.doc_ids, train.doc_texts, show_progress=False)
    mined = mine_hard_negatives(train, encoder, index, negatives=2, mine_k=6, show_progress=False)
    hits = index.search(encoder.encode([q.text for q in train.queries]), 6)  # the reference ranking
    text_of = dict(zip(train.doc_ids, train.doc_texts, strict=True))
    assert [m.query for m in mined] == list(train.queries)
    skipped_any = False
    for m, row in zip(mined, hits, strict=True):
        ranked = [d for d, _ in row]
        eligible = [d for d in ranked if d not in m.query.positives
                    and not any(a.casefold() in text_of[d].casefold() for a in m.query.answers)]
        assert m.negatives == tuple(eligible[:2])
        assert not set(m.negatives) & m.query.positives
        skipped_any |= bool(m.skipped_false_negatives)
        for d in m.skipped_false_negatives:
            assert any(a.casefold() in text_of[d].casefold() for a in m.query.answers)
    assert skipped_any
    with pytest.raises(ValueError, match="not built over this dataset"):
        mine_hard_negatives(ds, encoder, index)
