"""The router's held-out queries: the intent-aware split, and cross-fitting (docs/serving-cost.md, section 3)."""

import numpy as np
import pandas as pd
import pytest

from components.routing.crossfit import cross_fit, top_share, tradeoff_curve
from components.routing.holdout import take_share


def _queries(n_per_cat=40, intents_per_hard=12, seed=0, with_intent=True):
    rng = np.random.default_rng(seed)
    rows = []
    for cat in ("plain", "qa", "alternative", "negative", "knowledge"):
        for j in range(n_per_cat):
            row = {"query_id": f"{cat[:2]}{j:03d}", "category": cat, "text": f"{cat} {j}"}
            if with_intent:
                row["intent"] = f"{cat}-i{rng.integers(intents_per_hard)}" if cat in ("qa", "alternative", "knowledge") \
                    else row["text"]
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("share", [0.15, 0.5])
def test_take_share_is_per_category_by_whole_intent_and_deterministic(share):
    q = _queries()
    mask = take_share(q, share, seed=3)
    for cat, group in q.groupby("category"):
        taken = mask[group.index]
        assert abs(taken.sum() - round(share * len(group))) <= 4, (cat, taken.sum())
        if cat in ("qa", "alternative", "knowledge"):  # no intent on both sides
            assert not set(group.loc[taken, "intent"]) & set(group.loc[~taken, "intent"])
        assert 0 < taken.sum() < len(group)
    np.testing.assert_array_equal(mask, take_share(q, share, seed=3))
    # independent of the row order
    shuffled = q.sample(frac=1.0, random_state=1)
    again = take_share(shuffled, share, seed=3)
    assert set(shuffled.loc[again, "query_id"]) == set(q.loc[mask, "query_id"])
    assert set(q.loc[take_share(q, share, seed=4), "query_id"]) != set(q.loc[mask, "query_id"])


def test_take_share_without_intents_splits_by_query():
    q = _queries(with_intent=False)
    mask = take_share(q, 0.25, seed=0)
    assert all(mask[g.index].sum() == 10 for _, g in q.groupby("category"))
    assert not take_share(q, 0.0).any()


def _measured(n=300, seed=0):
    """Reasoning helps exactly the queries whose close probability (last scalar) is low."""
    rng = np.random.default_rng(seed)
    scalars = rng.normal(size=(n, 4))
    helps = scalars[:, 3] < -0.3
    hd = rng.uniform(0.2, 0.6, size=n)
    hr = np.where(helps, hd + 0.3, hd - rng.uniform(0, 0.02, size=n))
    cats = np.array(["plain", "qa", "alternative", "negative", "knowledge"])[np.arange(n) % 5]
    return {"direct": rng.normal(size=(n, 6)), "scalars": scalars, "hit_direct": hd, "hit_reason": hr,
            "category": cats, "qids": [f"q{i}" for i in range(n)]}, helps


def test_cross_fit_routes_each_fold_with_the_router_of_the_other():
    m, helps = _measured()
    fold = np.arange(len(helps)) % 2 == 0
    res = cross_fit(m, fold, tolerance=0.0, folds=5)
    assert res["routers"]["A"].stats["n_queries"] == (~fold).sum()  # A is routed by the router fitted on B
    assert res["routers"]["B"].stats["n_queries"] == fold.sum()
    np.testing.assert_array_equal(res["reason"][fold], res["routers"]["A"].decide(m["direct"][fold], m["scalars"][fold]))
    # a router that never saw a query still finds who gains
    assert (res["reason"] == helps).mean() > 0.85 and res["reason"].mean() < 0.6
    # refitting on B with A's labels scrambled changes nothing on A's decisions
    m2 = {**m, "hit_reason": m["hit_reason"].copy()}
    m2["hit_reason"][fold] = m["hit_direct"][fold]
    np.testing.assert_array_equal(cross_fit(m2, fold, tolerance=0.0, folds=5)["reason"][fold], res["reason"][fold])


def test_tradeoff_curve_runs_from_direct_to_always_reasoning():
    m, _ = _measured()
    fold = np.arange(len(m["qids"])) % 2 == 0
    res = cross_fit(m, fold, tolerance=0.0, folds=5)
    curve = tradeoff_curve(m, res["score"], fold, [0.0, 0.3, 1.0], n_boot=200)
    assert curve[0]["reason_share"] == 0.0 and curve[0]["hit_rate_routed"] == pytest.approx(m["hit_direct"].mean())
    assert curve[-1]["reason_share"] == 1.0 and curve[-1]["diff_routed_minus_always"] == pytest.approx(0.0)
    assert curve[1]["hit_rate_routed"] > curve[0]["hit_rate_routed"]
    reason = top_share(res["score"], fold, 0.3)
    assert reason[fold].sum() == round(0.3 * fold.sum()) and reason[~fold].sum() == round(0.3 * (~fold).sum())


# ------------------------------------------------------------------ the nightly run's held-out queries
@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from components.config import WorldConfig
    from components.data.generate import generate_world
    from components.data.io import load_world

    data = tmp_path_factory.mktemp("world") / "data"
    generate_world(WorldConfig(n_items=200, n_queries=160), data)  # varied phrasing, hard queries split by intent
    return data, load_world(data)


def _smoke(**routing):
    """The smoke config with a router held-out share (0.15 unless given; the default is 0)."""
    from components.config import load_config

    return load_config("configs/smoke.yaml", {"routing": {"holdout_share": 0.15, **routing}})


def test_holdout_query_ids_are_training_queries_by_category_and_intent(tiny_world):
    from components.routing.holdout import HARD_CATEGORIES, holdout_query_ids

    _, world = tiny_world
    cfg = _smoke()
    held = holdout_query_ids(cfg, world.queries)
    train = world.split("train")
    assert held and held <= set(train["query_id"])
    is_held = train["query_id"].isin(held)
    for cat, group in train.groupby("category"):  # about holdout_share of each category
        assert abs(is_held[group.index].sum() - cfg.routing.holdout_share * len(group)) <= 3, cat
    hard = train["category"].isin(HARD_CATEGORIES)
    for cat in HARD_CATEGORIES:  # a held-out intent is named by no trained query of its category
        sel = train["category"] == cat
        assert not set(train.loc[sel & is_held, "intent"]) & set(train.loc[sel & ~is_held, "intent"])
    assert hard[is_held].any()
    assert holdout_query_ids(_smoke(), world.queries) == held  # deterministic
    assert holdout_query_ids(_smoke(seed=1), world.queries) != held
    assert holdout_query_ids(_smoke(holdout_share=0.0), world.queries) == set()
    assert holdout_query_ids(_smoke(enabled=False), world.queries) == set()  # no router, nothing held out


class _Recorder:
    """Stands in for MLflow and the trainers: records what each trainer was handed."""

    def __init__(self, tmp_path):
        self.got: dict[str, dict] = {}
        self.tmp = tmp_path

    def trainer(self, name):
        def train(model, rows, *args, **kwargs):
            self.got[name] = {"rows": list(rows), "replay_docs": kwargs.get("replay_docs")}
            (self.tmp / name).mkdir(exist_ok=True)
            return {"steps": 1, "model_dir": str(self.tmp / name), "history": []}
        return train


def test_held_out_queries_never_reach_the_trainers_data(tiny_world, tmp_path, monkeypatch):
    """The smoke config on a tiny world: the teacher's triplets, the backbone's corpus, the direct
    baseline's, cold start's and GRPO's rows and their rehearsal text hold no held-out query."""
    import contextlib
    from types import SimpleNamespace

    from components.artifacts import Backbone, DataSnapshot, TrainedModel, TripletSet
    from components.data.io import read_jsonl
    from components.model import lrem
    from components.routing.holdout import holdout_query_ids
    from components.teacher.step import write_triplets
    from components.training import cold_start, grpo, pretrain
    from components.training import step as tstep

    data, world = tiny_world
    cfg = _smoke()
    held = holdout_query_ids(cfg, world.queries)
    held_texts = set(world.queries.loc[world.queries["query_id"].isin(held), "text"])
    trained_ids = set(world.split("train")["query_id"]) - held

    stats = write_triplets(cfg, str(data), tmp_path / "triplets.jsonl")
    rows = read_jsonl(tmp_path / "triplets.jsonl")
    assert stats["n_queries_held_out"] == len(held) and not {r["query_id"] for r in rows} & held
    assert stats["n_queries"] + stats["n_queries_dropped"] + stats["n_queries_held_out"] == stats["n_train_queries"]
    assert {r["query_id"] for r in rows} <= trained_ids

    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RANK", raising=False)
    rec = _Recorder(tmp_path)
    fake_tracking = SimpleNamespace(configure=lambda cfg: None, resume=lambda *a, **k: contextlib.nullcontext(),
                                    download=lambda uri, dest: str(dest), log_metrics_fn=lambda: None)
    fake_mlflow = SimpleNamespace(**{name: (lambda *a, **k: None) for name in
                                     ("set_tags", "log_param", "log_artifacts", "log_text")})
    monkeypatch.setattr(tstep, "tracking", fake_tracking)
    monkeypatch.setattr(tstep, "mlflow", fake_mlflow)
    monkeypatch.setattr(lrem.LREMModel, "create", classmethod(lambda cls, *a, **k: None))
    monkeypatch.setattr(lrem.LREMModel, "load", classmethod(lambda cls, *a, **k: None))
    corpora = []

    def fake_backbone(model_cfg, backbone_cfg, corpus, root):
        corpora.append(corpus)
        return SimpleNamespace(model_dir="b", cache_key="k", registered_version=None, source="trained")

    def fake_baseline(cfg, backbone_dir, key, rows, replay_docs=None, data_uri=None):
        rec.got["direct_baseline"] = {"rows": list(rows), "replay_docs": replay_docs}
        return "baseline"

    monkeypatch.setattr(pretrain, "prepare_backbone", fake_backbone)
    monkeypatch.setattr(tstep, "_direct_baseline", fake_baseline)
    monkeypatch.setattr(cold_start, "train_cold_start", rec.trainer("cold_start"))
    monkeypatch.setattr(grpo, "train_grpo", rec.trainer("grpo"))

    snap = DataSnapshot(run_key="t", mlflow_run_id="r", data_uri=str(data), full_data_uri=str(data), dvc_rev="",
                        data_md5="", git_commit="")
    triplets = TripletSet(triplets_uri=str(tmp_path / "triplets.jsonl"), n_triplets=len(rows))
    backbone = tstep.run_prepare_backbone(cfg, snap, triplets)
    assert backbone.direct_baseline_dir == "baseline"
    cs = tstep.run_cold_start(cfg, snap, triplets, Backbone(source="trained", model_dir="b", cache_key="k"))
    tstep.run_grpo(cfg, snap, triplets, TrainedModel(stage="cold_start", model_uri="runs:/r/cs", steps=cs.steps))

    assert set(rec.got) == {"direct_baseline", "cold_start", "grpo"}
    assert not held_texts & set(corpora[0].train)  # the backbone's pre-training text
    for name, got in rec.got.items():
        ids = {r["query_id"] for r in got["rows"]}
        assert ids and not ids & held, name
        if got["replay_docs"] is not None:  # the rehearsal of the pre-training text
            assert not held_texts & set(got["replay_docs"]), name
    assert rec.got["cold_start"]["replay_docs"]  # smoke rehearses: the check above ran
    # the trained queries do reach them (the test is not vacuous)
    assert set(world.queries.loc[world.queries["query_id"].isin(trained_ids), "text"]) & set(corpora[0].train)


@pytest.mark.parametrize("dev_fraction, use_dev, holdout_share, expected", [
    (0.25, True, 0.0, "dev"), (0.0, True, 0.0, "train"), (0.25, False, 0.0, "train"), (0.25, True, 0.15, "held_out")])
def test_fit_queries_picks_dev_then_train(tmp_path, dev_fraction, use_dev, holdout_share, expected):
    """The router fits on the dev queries when the data has them (and routing.use_dev), on the
    training queries otherwise (data without dev: imports, dev_fraction 0); held-out queries first."""
    from components.config import PipelineConfig, RoutingConfig, WorldConfig
    from components.data.generate import generate_world
    from components.data.io import load_world
    from components.routing.step import fit_queries

    generate_world(WorldConfig(n_items=150, n_queries=120, dev_fraction=dev_fraction), tmp_path)
    world = load_world(tmp_path)
    cfg = PipelineConfig(routing=RoutingConfig(use_dev=use_dev, holdout_share=holdout_share))
    queries, source = fit_queries(cfg, world)
    assert source == expected
    splits = set(world.queries.set_index("query_id").loc[queries["query_id"], "split"])
    assert splits == ({"dev"} if expected == "dev" else {"train"})
    if expected == "dev":
        assert len(queries) == len(world.split("dev"))
