"""``rerank_dataset`` on a local Ray: parity with the in-process Reranker, rows kept, a killed actor replaced.

Tiny model, 1 actor: the killed-actor test; 2 actors: tests/distributed/test_bulk_ray.py (``--concurrency 2``).
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from rerank_plugins import Reranker
from rerank_plugins.distributed import RerankBatches, rerank_dataset
from rerank_plugins.evaluation.data import DataFormatError

pytest.importorskip("ray", reason="needs the 'ray' extra: pip install 'rerank-plugins[ray]'")

import _tiny  # noqa: E402  (tests/ is on sys.path through tests/conftest.py)


def tiny_rows(n: int) -> list[dict]:
    pairs = _tiny.mixed_pairs(n * 3, seed=5, long_every=7)
    rows = []
    for i in range(n):
        k = i % 5  # 0 to 4 documents, the empty list included
        rows.append({"id": i, "query": pairs[3 * i][0], "documents": [p for _, p in pairs[3 * i : 3 * i + k]],
                     "tag": f"t{i}"})
    return rows


def reference(reranker: Reranker, rows: list[dict]) -> dict:
    return {row["id"]: reranker.score(row["query"], row["documents"]) for row in rows}


def assert_matches(out_rows: list[dict], rows: list[dict], ref: dict, top_n: int | None = None) -> None:
    assert len(out_rows) == len(rows)
    assert sorted(r["id"] for r in out_rows) == sorted(r["id"] for r in rows)  # each row exactly once
    by_id = {row["id"]: row for row in rows}
    for out in out_rows:
        row = by_id[out["id"]]
        assert {k: out[k] for k in row} == row  # every input column kept as it was
        expected = ref[row["id"]]
        assert out["scores"] == pytest.approx(expected, abs=1e-5)
        assert out["ranking"] == sorted(range(len(expected)), key=lambda i: -expected[i])[:top_n]


def to_python(rows: list[dict]) -> list[dict]:
    """Ray hands list columns back as numpy arrays; compare as plain lists."""
    return [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()} for r in rows]


def _actor_handle(ray, actor_id: str):
    """Ray Data's pool actors are anonymous: rebuild a handle from the id the GCS lists."""
    worker = ray._private.worker.global_worker
    return worker.core_worker.get_actor_handle(ray.ActorID.from_hex(actor_id))


def test_killed_actor_is_replaced_and_every_row_appears_once(ray_session, tiny_bert):
    from ray._private import state

    ray = ray_session
    rows = tiny_rows(40)
    out = rerank_dataset(ray.data.from_items(rows), tiny_bert, concurrency=1, batch_size=2, top_n=2, device="cpu",
                         reranker_batch_size=4)
    received, killed = [], None
    for row in out.iter_rows():
        received.append(row)
        if killed is None:  # the job has started and 38 rows at least are still to come: kill its one actor
            alive = [a for a in state.actors().values()
                     if "RerankBatches" in a["ActorClassName"] and a["State"] == "ALIVE"]
            assert len(alive) == 1
            killed = alive[0]["ActorID"]
            ray.kill(_actor_handle(ray, killed), no_restart=False)
    assert_matches(to_python(received), rows, reference(Reranker(tiny_bert, device="cpu"), rows), top_n=2)
    assert state.actors()[killed]["NumRestarts"] >= 1  # the same actor, restarted, finished the job


@pytest.fixture(scope="module")
def squad_rows(squad_articles) -> list[dict]:
    rows = []
    for article in squad_articles[:6]:
        paragraphs = [p["context"] for p in article["paragraphs"][:5]]
        qa = article["paragraphs"][1]["qas"][0]
        rows.append({"id": qa["id"], "query": qa["question"], "documents": paragraphs})
    return rows


@pytest.mark.real
@pytest.mark.parametrize("actors", [1, 2])
def test_real_model_equals_the_in_process_reranker(ray_session, ms_marco_dir, squad_rows, actors):
    ds = ray_session.data.from_items(squad_rows)
    out = rerank_dataset(ds, ms_marco_dir, concurrency=actors, batch_size=2, device="cpu")
    assert_matches(to_python(out.take_all()), squad_rows, reference(Reranker(ms_marco_dir, device="cpu"), squad_rows))


# ----------------------------------------------------------------- the batch callable and arguments, without Ray


def test_rerank_batches_keeps_columns_and_checks_rows(tiny_bert):
    rows = tiny_rows(6)
    fn = RerankBatches(str(tiny_bert), {"device": "cpu"}, query_column="q", documents_column="docs",
                       scores_column="s", ranking_column="r", top_n=1)
    table = pa.Table.from_pylist([{"id": r["id"], "q": r["query"], "docs": r["documents"], "tag": r["tag"]}
                                  for r in rows])
    result = fn(table)
    assert result.column_names == ["id", "q", "docs", "tag", "s", "r"]
    assert result.select(["id", "q", "docs", "tag"]).equals(table)
    ref = reference(Reranker(tiny_bert, device="cpu"), rows)
    for out in result.to_pylist():
        assert out["s"] == pytest.approx(ref[out["id"]], abs=1e-5)
        assert len(out["r"]) == min(1, len(out["s"]))

    bad = pa.Table.from_pylist([{"id": "x1", "q": "q", "docs": ["a", None]}])
    with pytest.raises(DataFormatError, match=r"row id='x1': docs\[1\] must be a string, got null"):
        fn(bad)
    with pytest.raises(ValueError, match="already has a column 's'"):
        fn(result.drop_columns(["r"]))
    with pytest.raises(KeyError, match="no column 'q'"):
        fn(pa.table({"query": ["q"], "docs": [["a"]]}))


def test_argument_errors_are_raised_before_any_work(tiny_bert):
    class NotADataset:
        def map_batches(self, *args, **kwargs):
            raise AssertionError("must not be reached")

    ds = NotADataset()
    with pytest.raises(TypeError, match="unknown Reranker option.*normalise.*reranker_batch_size"):
        rerank_dataset(ds, tiny_bert, normalise="none")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        rerank_dataset(ds, tiny_bert, batch_size=0)
    with pytest.raises(ValueError, match="top_n must be >= 1"):
        rerank_dataset(ds, tiny_bert, top_n=0)
    with pytest.raises(ValueError, match="output column 'query' would overwrite"):
        rerank_dataset(ds, tiny_bert, scores_column="query")
    with pytest.raises(TypeError, match="model must be a str or pathlib.Path"):
        rerank_dataset(ds, Reranker(tiny_bert, device="cpu"))
