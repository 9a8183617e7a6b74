"""Step artefacts: each type round-trips through JSON; a bad field names the step and the field."""

from __future__ import annotations

import json

import pytest

from components.artifacts import (ARTIFACT_TYPES, ArtifactError, Backbone, CacheWarmup, DataSnapshot, EvalReport,
                                  GateDecision, ItemIndex,
                                  OnlineReport, PromotionResult, RegisteredModel, RetentionReport, TrainedModel, TripletSet,
                                  ValidationReport)

EXAMPLES = [
    DataSnapshot(run_key="manual-2026", mlflow_run_id="abc123", data_uri="/s/d41d8-items800",
                 full_data_uri="/s/d41d8", dvc_rev="workspace", data_md5="d41d8.dir", git_commit="cafe"),
    ValidationReport(suite="raw", expectations=42, failed=0, docs_uri="runs:/abc123/data_docs/raw"),
    TripletSet(triplets_uri="/runs/k/triplets.jsonl", n_triplets=812),
    Backbone(source="trained", model_dir="/state/backbones/ab12", cache_key="ab12",
             registered_uri="models:/lrem-backbone/1", direct_baseline_dir=None),
    Backbone(source="checkpoint", model_dir="Qwen/Qwen2.5-3B-Instruct", cache_key=""),
    TrainedModel(stage="cold_start", model_uri="runs:/abc123/cold_start_model", steps=20),
    TrainedModel(stage="grpo", model_uri="runs:/abc123/grpo_model", steps=2),
    RegisteredModel(model_name="lrem-retriever", model_version="3", model_uri="models:/lrem-retriever/3"),
    ItemIndex(collection="lrem_items_v3", rows=800, model_version="3"),
    CacheWarmup(model_version="3", cache_uri="runs:/abc123/serving_cache/v3/cot_cache.npz", entries=1000,
                source="training_queries", seconds=4.2, collection="lrem_items_v3"),
    EvalReport(model_version="3", champion_version=None, metrics_uri="runs:/abc123/evaluation/metrics.json",
               report_uri="runs:/abc123/evaluation/index.html", headline={"hit_rate@100": 0.5, "n_queries": 60}),
    EvalReport(model_version="3", champion_version="2", metrics_uri="runs:/abc123/evaluation/metrics.json",
               report_uri="runs:/abc123/evaluation/index.html"),
    OnlineReport(model_version="3", champion_version=None, compared=False, regression=False,
                 reason="no champion yet: no online comparison", report_uri=""),
    OnlineReport(model_version="3", champion_version="2", compared=True, regression=False,
                 reason="no significant online regression", report_uri="runs:/abc123/online/online_report.html",
                 offline_ci={"overall": {"diff": 0.01, "ci_low": -0.02, "ci_high": 0.04, "challenger": 0.5,
                                         "champion": 0.49, "n": 60}},
                 offline_regressions=[], offline_margin=0.0, headline={"searches": 400.0}),
    GateDecision(promote=False, reason="regression", metric="hit_rate@100", challenger_value=0.4,
                 champion_value=0.5, tolerance=0.0, regressions={"qa": {"challenger": 0.1, "champion": 0.2}}),
    GateDecision(promote=True, reason="no champion yet", metric="hit_rate@100", challenger_value=0.4),
    PromotionResult(promoted=True, model_name="lrem-retriever", model_version="3", champion_version="3",
                    serving_alias="lrem_serving", collection="lrem_items_v3"),
    RetentionReport(kept=["lrem_items_v2", "lrem_items_v3"], dropped=["lrem_items_v1"], keep_last_champions=3),
]

SNAPSHOT, TRIPLETS = 0, 2
REGISTERED, INDEX, REPORT = (next(i for i, a in enumerate(EXAMPLES) if isinstance(a, t))
                             for t in (RegisteredModel, ItemIndex, EvalReport))
ONLINE = next(i for i, a in enumerate(EXAMPLES) if isinstance(a, OnlineReport))
NO_CHAMPION = next(i for i, a in enumerate(EXAMPLES) if isinstance(a, GateDecision) and a.champion_value is None)


def test_every_artifact_type_has_an_example():
    assert {type(a).__name__ for a in EXAMPLES} == set(ARTIFACT_TYPES)


@pytest.mark.parametrize("artifact", EXAMPLES, ids=lambda a: type(a).__name__)
def test_round_trip_through_json(artifact):
    cls = type(artifact)
    text = artifact.to_json()
    assert json.loads(text)["artifact"] == cls.__name__
    assert cls.from_json(text, "some_step") == artifact
    assert cls.from_dict(json.loads(json.dumps(artifact.to_dict())), "some_step") == artifact


@pytest.mark.parametrize("artifact", EXAMPLES, ids=lambda a: type(a).__name__)
def test_a_missing_field_names_the_step_and_the_field(artifact):
    cls = type(artifact)
    data = artifact.to_dict()
    name = next(iter(k for k in data if k != "artifact"))
    del data[name]
    with pytest.raises(ArtifactError, match=rf"step producer: {cls.__name__}: missing field '{name}'"):
        cls.from_dict(data, "producer")


@pytest.mark.parametrize("artifact", EXAMPLES, ids=lambda a: type(a).__name__)
def test_a_mistyped_field_names_the_step_and_the_field(artifact):
    cls = type(artifact)
    data = artifact.to_dict()
    name = next(iter(k for k in data if k != "artifact"))
    data[name] = [data[name]]  # no field of any artefact is a list
    with pytest.raises(ArtifactError, match=rf"step producer: {cls.__name__}: field '{name}' must be"):
        cls.from_dict(data, "producer")


def test_renamed_or_wrong_artifacts_are_rejected():
    data = EXAMPLES[TRIPLETS].to_dict()
    data["triplet_uri"] = data.pop("triplets_uri")
    with pytest.raises(ArtifactError, match=r"unknown field\(s\) \['triplet_uri'\]"):
        TripletSet.from_dict(data, "generate_triplets")
    with pytest.raises(ArtifactError, match="got a ItemIndex artefact instead"):
        TripletSet.from_dict(EXAMPLES[INDEX].to_dict(), "generate_triplets")
    with pytest.raises(ArtifactError, match="not JSON"):
        TripletSet.from_json("{", "generate_triplets")
    with pytest.raises(ArtifactError, match="field 'steps' must be int, got str"):
        TrainedModel.from_dict({"stage": "grpo", "model_uri": "runs:/x/grpo_model", "steps": "2"}, "train_grpo")
    with pytest.raises(ArtifactError, match="field 'promote' must be bool"):
        GateDecision.from_dict({**EXAMPLES[NO_CHAMPION].to_dict(), "promote": 1}, "gate")


def test_ints_are_accepted_for_floats():
    data = {**EXAMPLES[NO_CHAMPION].to_dict(), "challenger_value": 1}
    decision = GateDecision.from_dict(data, "gate")
    assert decision.challenger_value == 1.0 and isinstance(decision.challenger_value, float)


def test_the_pipeline_hands_each_step_typed_inputs():
    from components.pipeline import STEPS, step_inputs

    ctx = {"pull_data": EXAMPLES[SNAPSHOT].to_dict(), "evaluate_offline": EXAMPLES[REPORT].to_dict(),
           "evaluate_online": EXAMPLES[ONLINE].to_dict(), "other": None}
    inputs = step_inputs("gate", ctx)
    assert inputs == {"snapshot": EXAMPLES[SNAPSHOT], "report": EXAMPLES[REPORT], "online": EXAMPLES[ONLINE]}
    with pytest.raises(ArtifactError, match="step promote needs the GateDecision of step gate"):
        step_inputs("promote", {**ctx, "register_challenger": EXAMPLES[REGISTERED].to_dict()})
    bad = {**ctx, "evaluate_offline": {**EXAMPLES[REPORT].to_dict(), "model_version": 3}}
    with pytest.raises(ArtifactError, match="step evaluate_offline: EvalReport: field 'model_version'"):
        step_inputs("gate", bad)
    for step in STEPS.values():  # every input names an earlier step whose artefact type exists
        for producer in step.inputs.values():
            assert STEPS[producer].produces.__name__ in ARTIFACT_TYPES
