"""finetune() end to end with tiny models: report, saved CrossEncoder, model card, split; bad settings."""

from __future__ import annotations

import importlib
import json

import pytest

from rerank_plugins import Reranker
from rerank_plugins.evaluation import PairedDifference
from rerank_plugins.training import REPORT_METRICS, finetune, split_by_group

pytest.importorskip("faiss", reason="fine-tuning mines with the eval extra's faiss index")
pytest.importorskip("datasets", reason="fine-tuning needs the train extra")

SETTINGS = dict(eval_fraction=0.4, negatives=2, mine_k=6, batch_size=8, max_steps=2, max_length=64,
                retrieve_k=10, rerank_k=10, device="cpu", seed=0, show_progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_squad, tiny_bi_encoder):
    """The tiny bi-encoder's plain BERT encoder (no head) trained on the tiny SQuAD-layout set."""
    out = tmp_path_factory.mktemp("finetune") / "model"
    report = finetune(tiny_squad, base=str(tiny_bi_encoder), output=out, bi_encoder=str(tiny_bi_encoder),
                      **SETTINGS)
    return report, out


def test_report_shape(trained, tmp_path):
    report, out = trained
    d = report.to_dict()
    assert list(d) == ["retrieval", "base", "trained", "timing", "config", "output", "trained_vs_base"]
    for column in ("retrieval", "base", "trained"):
        assert list(d[column]) == list(REPORT_METRICS)
        assert all(0.0 <= v <= 1.0 for v in d[column].values())
    assert list(d["trained_vs_base"]) == list(REPORT_METRICS)
    for key, diff in d["trained_vs_base"].items():
        assert diff["mean"] == pytest.approx(report.trained[key] - report.base[key], abs=1e-12)
        assert diff["low"] <= diff["high"] and diff["queries"] == report.config["eval_queries"]
        assert diff["better"] + diff["worse"] <= diff["queries"] and diff["confidence"] == 0.95
    assert {"index_s", "mine_s", "load_base_s", "eval_base_s", "train_s", "eval_trained_s", "total_s",
            "train_pairs_per_s"} <= set(report.timing)
    cfg = report.config
    assert cfg["base"]["had_head"] is False
    assert cfg["split"] == {"group_by": "group", "seed": 0, "eval_fraction": 0.4, "train_groups": 3,
                            "eval_groups": 2, "train_queries_available": cfg["train_queries"],
                            "eval_queries_available": cfg["eval_queries"]}
    assert cfg["train_queries"] + cfg["eval_queries"] == 38
    # one positive + at most 2 negatives per training question
    assert cfg["train_queries"] < cfg["train_pairs"] <= 3 * cfg["train_queries"]
    assert cfg["training"]["max_steps"] == 2 and cfg["training"]["dtype"] == "bfloat16"
    # the default loss, listwise, has no positive weight
    assert cfg["training"]["loss"] == "MultipleNegativesRankingLoss" and cfg["training"]["pos_weight"] is None
    assert report.output == str(out)
    table = report.format_table()
    assert "mrr@10" in table and f"{report.trained['mrr@10']:.4f}" in table
    paired = report.trained_vs_base["mrr@10"]
    assert (f"trained - base, mrr@10: {paired.mean:+.4f} (95% paired bootstrap interval {paired.low:+.4f} to "
            f"{paired.high:+.4f}; of {paired.queries} questions {paired.better} up, {paired.worse} down)"
            ) in table.splitlines()
    path = report.write_json(tmp_path / "r.json")
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(report.to_json())
    assert json.loads((out / "report.json").read_text(encoding="utf-8")) == json.loads(report.to_json())


def test_trained_column_is_the_two_stage_evaluation_of_the_saved_model(trained, tiny_squad, tiny_bi_encoder):
    from rerank_plugins.evaluation import BiEncoder, evaluate, load_dataset

    report, out = trained
    held_out = split_by_group(load_dataset(tiny_squad), eval_fraction=0.4, seed=0).eval
    again = evaluate(held_out, Reranker(str(out), max_length=64, device="cpu"),
                     BiEncoder(str(tiny_bi_encoder), device="cpu"), retrieve_k=10, rerank_k=10, ks=(1, 3, 10))
    assert report.trained == {k: again.reranked[k] for k in REPORT_METRICS}
    assert report.retrieval == {k: again.retrieval[k] for k in REPORT_METRICS}
    # per question, for paired comparisons (scores may differ in the last bits: other batch padding)
    assert [(o.id, o.reranked) for o in report.trained_outcomes] == [(o.id, o.reranked) for o in again.outcomes]
    assert [o.id for o in report.base_outcomes] == [o.id for o in again.outcomes]


def test_trained_vs_base_pairs_each_held_out_question(trained):
    from rerank_plugins.evaluation import mrr_at_k, paired_bootstrap

    report, _ = trained
    base_rr = {o.id: mrr_at_k(o.reranked, o.positives, 10) for o in report.base_outcomes}
    trained_rr = [(base_rr[o.id], mrr_at_k(o.reranked, o.positives, 10)) for o in report.trained_outcomes]
    up = sum(t > b for b, t in trained_rr)
    down = sum(t < b for b, t in trained_rr)
    paired = report.trained_vs_base["mrr@10"]
    assert (paired.better, paired.worse, paired.queries) == (up, down, len(trained_rr))
    assert paired == paired_bootstrap([b for b, _ in trained_rr], [t for _, t in trained_rr])


def test_output_loads_as_cross_encoder_with_parity(trained, tiny_bi_encoder):
    import torch
    from safetensors.torch import load_file
    from sentence_transformers import CrossEncoder

    _, out = trained
    reranker = Reranker(str(out), normalize="none", device="cpu")
    assert reranker.kind == "cross-encoder"
    pairs = [("capital of France?", "Paris is the capital and most populous city of France."),
             ("서울", "서울은 대한민국의 수도이며 가장 큰 도시이다.")]
    ours = reranker.score_many([q for q, _ in pairs], [[p] for _, p in pairs])
    ref = CrossEncoder(str(out), device="cpu", activation_fn=torch.nn.Identity()).predict(pairs)
    assert [row[0] for row in ours] == pytest.approx([float(x) for x in ref], abs=1e-5)
    # the encoder's weights moved away from the base's
    base = load_file(str(tiny_bi_encoder / "model.safetensors"))
    trained_w = load_file(str(out / "model.safetensors"))
    key = next(k for k in trained_w if k.endswith("encoder.layer.0.attention.self.query.weight"))
    base_key = next(k for k in base if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert not torch.equal(trained_w[key], base[base_key])


def test_model_card_and_split_are_saved(trained, tiny_bi_encoder):
    report, out = trained
    card = (out / "README.md").read_text(encoding="utf-8")
    assert str(tiny_bi_encoder) in card and "a new one-logit head" in card and "split by group" in card
    for column in ("retrieval", "base", "trained"):
        assert f"{getattr(report, column)['mrr@10']:.4f}" in card
    split = json.loads((out / "split.json").read_text(encoding="utf-8"))
    assert len(split["eval_query_ids"]) == report.config["eval_queries"]
    assert not set(split["train_query_ids"]) & set(split["eval_query_ids"])
    assert not set(split["train_groups"]) & set(split["eval_groups"])
    assert [p.name for p in out.parent.iterdir()] == ["model"]  # the temporary directory was renamed away


def test_a_trained_model_below_the_base_is_flagged_in_the_table_and_the_card(trained, tiny_squad):
    import dataclasses

    from rerank_plugins.evaluation import load_dataset
    from rerank_plugins.training.finetune import _model_card

    report, out = trained
    card = (out / "README.md").read_text(encoding="utf-8")
    assert ("**Warning**: trained is below the base" in card) == bool(report.below_base())

    base = dict.fromkeys(REPORT_METRICS, 0.5)
    worse = dataclasses.replace(report, base=base, trained={**base, "hit@1": 0.4, "mrr@10": 0.45},
                                trained_vs_base=None)
    assert worse.below_base() == ["hit@1", "mrr@10"]
    assert worse.format_table().splitlines()[-1] == (
        "warning: trained is below the base on hit@1, mrr@10 (mrr@10 -0.0500): "
        "the base ranks these held-out questions better")
    # the paired interval qualifies the warning when it cannot tell the two apart
    clear = PairedDifference(mean=-0.05, low=-0.09, high=-0.01, confidence=0.95, better=1, worse=9, queries=300,
                             resamples=2000)
    noisy = dataclasses.replace(clear, low=-0.12, high=0.02)
    lines = dataclasses.replace(worse, trained_vs_base={"mrr@10": clear}).format_table().splitlines()
    assert lines[-3] == ("trained - base, mrr@10: -0.0500 (95% paired bootstrap interval -0.0900 to -0.0100; "
                         "of 300 questions 1 up, 9 down)")
    assert lines[-1] == ("warning: trained is below the base on hit@1, mrr@10 (mrr@10 -0.0500): "
                         "the base ranks these held-out questions better")
    assert dataclasses.replace(worse, trained_vs_base={"mrr@10": noisy}).format_table().splitlines()[-1] == (
        "warning: trained is below the base on hit@1, mrr@10 (mrr@10 -0.0500): "
        "the base ranks these held-out questions better, though mrr@10's 95% interval includes 0: "
        "300 questions are too few to tell the two apart")
    better = dataclasses.replace(report, base=base, trained={**base, "mrr@10": 0.6})
    assert better.below_base() == [] and "warning" not in better.format_table()
    assert dataclasses.replace(worse, base=None).below_base() == []  # base not measured: nothing to compare
    split = split_by_group(load_dataset(tiny_squad), eval_fraction=0.4, seed=0)
    assert "**Warning**: trained is below the base on hit@1, mrr@10 (mrr@10 -0.0500)" in _model_card(worse, split)
    card = _model_card(dataclasses.replace(worse, trained_vs_base={"mrr@10": noisy}), split)
    assert "\nTrained - base, mrr@10: -0.0500 (95% paired bootstrap interval -0.1200 to +0.0200; " in card
    assert "Warning" not in _model_card(better, split)


def test_existing_output_and_bad_settings_fail_before_any_work(trained, tiny_squad, tiny_bi_encoder, tmp_path):
    _, out = trained
    with pytest.raises(FileExistsError, match="already exists"):
        finetune(tiny_squad, base=str(tiny_bi_encoder), output=out)
    bad = [
        ({"dtype": "int8"}, ValueError, "dtype must be one of"),
        ({"train_queries": 0}, ValueError, "train_queries must be a positive int"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate must be a positive number"),
        ({"rerank_k": 5}, ValueError, "rerank_k must be at least 10"),
        ({"retrieve_k": 10, "rerank_k": 20}, ValueError, r"rerank_k \(20\) must not exceed"),
        ({"seed": "1"}, TypeError, "seed must be an int"),
        ({"pos_weight": 0}, ValueError, "pos_weight must be 'balanced' or a positive number"),
        ({"pos_weight": "heavy"}, ValueError, "pos_weight must be 'balanced' or a positive number"),
        ({"pos_weight": True}, ValueError, "pos_weight must be 'balanced' or a positive number"),
        ({"pos_weight": 2.0}, ValueError, "pos_weight applies to loss='bce' only; the listwise loss has no positive"),
        ({"attention_dropout": 1.0}, ValueError, r"attention_dropout must be None or in \[0, 1\)"),
        ({"attention_dropout": "keep"}, ValueError, r"attention_dropout must be None or in \[0, 1\)"),
    ]
    for kwargs, error, message in bad:
        with pytest.raises(error, match=message):
            finetune(tiny_squad, base=str(tiny_bi_encoder), output=tmp_path / "new", **kwargs)
    assert not (tmp_path / "new").exists()


def test_pos_weight_reaches_the_loss(tiny_squad, tiny_bi_encoder, tmp_path, monkeypatch):
    # the module, not the function the package exports under the same name
    ft = importlib.import_module("rerank_plugins.training.finetune")
    imports = ft._train_imports()
    seen = []

    class SpyLoss(imports[3]):
        def __init__(self, model, pos_weight=None, **kwargs):
            seen.append(None if pos_weight is None else float(pos_weight))
            super().__init__(model, pos_weight=pos_weight, **kwargs)

    monkeypatch.setattr(ft, "_train_imports", lambda: (*imports[:3], SpyLoss, *imports[4:]))
    out = tmp_path / "weighted"
    report = finetune(tiny_squad, base=str(tiny_bi_encoder), output=out, bi_encoder=str(tiny_bi_encoder),
                      evaluate_base=False, loss="bce", pos_weight=2.5, **{**SETTINGS, "max_steps": 1})
    assert seen == [2.5]
    assert report.config["training"]["pos_weight"] == 2.5
    assert "positive weight 2.5" in (out / "README.md").read_text(encoding="utf-8")
    # "balanced" (the default): one positive per training question, so the weight is the negatives per positive
    report = finetune(tiny_squad, base=str(tiny_bi_encoder), output=tmp_path / "balanced",
                      bi_encoder=str(tiny_bi_encoder), evaluate_base=False, loss="bce", **{**SETTINGS, "max_steps": 1})
    cfg = report.config
    balanced = (cfg["train_pairs"] - cfg["train_queries"]) / cfg["train_queries"]
    assert 1.0 < balanced <= 2.0 and seen[1] == pytest.approx(balanced) == cfg["training"]["pos_weight"]
    assert cfg["training"]["loss"] == "BinaryCrossEntropyLoss"


def test_listwise_trains_on_question_rows_with_their_positive_and_negatives(
    tiny_squad, tiny_bi_encoder, tmp_path, monkeypatch
):
    from rerank_plugins.evaluation import load_dataset

    ft = importlib.import_module("rerank_plugins.training.finetune")
    imports = ft._train_imports()
    batches, made = [], []

    class SpyListwise(imports[5]):
        def __init__(self, model, **kwargs):
            made.append(kwargs)
            super().__init__(model, **kwargs)

        def forward(self, inputs, labels, **kwargs):
            batches.append([list(column) for column in inputs])
            return super().forward(inputs, labels, **kwargs)

    step_args = []

    def spy_args(**kwargs):
        step_args.append({k: kwargs[k] for k in ("per_device_train_batch_size", "batch_sampler")})
        return imports[2](**kwargs)

    monkeypatch.setattr(ft, "_train_imports", lambda: (*imports[:2], spy_args, *imports[3:5], SpyListwise))
    made_rows = []
    real_tuples = ft._tuples
    monkeypatch.setattr(ft, "_tuples", lambda *a: made_rows.append(real_tuples(*a)) or made_rows[-1])
    out = tmp_path / "listwise"
    report = finetune(tiny_squad, base=str(tiny_bi_encoder), output=out, bi_encoder=str(tiny_bi_encoder),
                      evaluate_base=False, loss="listwise", **{**SETTINGS, "batch_size": 8, "max_steps": 2})
    assert made == [{"num_negatives": 1}]
    # batch_size counts pairs: 8 // (2 negatives + positive + 1 in-batch negative) = 2 questions a step
    assert step_args == [{"per_device_train_batch_size": 2, "batch_sampler": "no_duplicates"}]
    # The no-duplicates sampler may hand over a short batch when too few rows share no text (the tiny
    # corpus has 19 paragraphs and its tokenizer, trained per process, differs from run to run).
    assert len(batches) == 2 and all(len(b) == 4 and len({len(col) for col in b}) == 1 for b in batches)
    assert all(1 <= len(b[0]) <= 2 for b in batches)
    data = load_dataset(tiny_squad)
    text_of = dict(zip(data.doc_ids, data.doc_texts, strict=True))
    positives_of = {q.text: {text_of[d] for d in q.positives} for q in data.queries}
    split = split_by_group(data, eval_fraction=0.4, seed=0)
    eval_texts = {text_of[d] for q in split.eval.queries for d in q.positives}
    for b in batches:  # no text twice in a batch: the in-batch negative is never a question's own positive
        texts = [t for column in b for t in column]
        assert len(set(texts)) == len(texts)
    for query, positive, *negatives in (row for b in batches for row in zip(*b, strict=True)):
        assert positive in positives_of[query]
        assert len(negatives) == 2 and not set(negatives) & positives_of[query]
        assert positive not in eval_texts and not set(negatives) & eval_texts
    cfg = report.config["training"]
    assert cfg["loss"] == "MultipleNegativesRankingLoss" and cfg["pos_weight"] is None
    assert 0 < len(made_rows[0]["query"]) <= report.config["train_queries"]
    assert cfg["pairs_scored_per_epoch"] == 4 * len(made_rows[0]["query"])
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "`MultipleNegativesRankingLoss`" in card and "positive weight" not in card
    assert Reranker(str(out)).kind == "cross-encoder"


def test_listwise_rows_leave_out_questions_short_of_negatives():
    from rerank_plugins.evaluation.data import Query
    from rerank_plugins.training import MinedQuery

    ft = importlib.import_module("rerank_plugins.training.finetune")
    text_of = {d: f"text {d}" for d in "abcdefg"}
    mined = [
        MinedQuery(Query("q1", "one", frozenset({"a"})), ("c", "d"), ()),
        MinedQuery(Query("q2", "two", frozenset({"b"})), ("e",), ()),  # short: left out
        MinedQuery(Query("q3", "three", frozenset({"f", "g"})), ("a", "b", "c"), ()),  # two positives: two rows
    ]
    rows = ft._tuples(mined, text_of, 2)
    assert rows == {
        "query": ["one", "three", "three"],
        "positive": ["text a", "text f", "text g"],
        "negative_1": ["text c", "text a", "text a"],
        "negative_2": ["text d", "text b", "text b"],
    }


def test_a_bad_loss_fails_before_any_work(tiny_squad, tiny_bi_encoder, tmp_path):
    with pytest.raises(ValueError, match="loss must be one of bce, listwise; got 'hinge'"):
        finetune(tiny_squad, base=str(tiny_bi_encoder), output=tmp_path / "new", loss="hinge")
    assert not (tmp_path / "new").exists()


def test_listwise_with_no_question_holding_enough_negatives_is_a_clear_error(tiny_squad, tiny_bi_encoder, tmp_path):
    # the tiny corpus has 19 paragraphs: no question can have 40 negatives
    with pytest.raises(ValueError, match="no training question has 40 mined negatives; lower negatives"):
        finetune(tiny_squad, base=str(tiny_bi_encoder), output=tmp_path / "new", bi_encoder=str(tiny_bi_encoder),
                 evaluate_base=False, loss="listwise", **{**SETTINGS, "negatives": 40, "mine_k": 50})
    assert not (tmp_path / "new").exists()
