"""The reasoning router: fitting, threshold, and the model's routed embedding path."""

import copy

import numpy as np
import pytest

from components.routing.router import Router, choose_threshold, fit_router

QUERIES = ["keep my coffee hot on the commute", "chair", "gear for the sport played at Wimbledon",
           "cheap alternative to Lumora", "running shoes not leather"]


def _synthetic(n=400, seed=0):
    """Reasoning helps exactly the queries whose close probability (last scalar) is low."""
    rng = np.random.default_rng(seed)
    direct = rng.normal(size=(n, 8))
    scalars = rng.normal(size=(n, 4))
    helps = scalars[:, 3] < -0.3
    hit_direct = rng.uniform(0.2, 0.6, size=n)
    hit_reason = np.where(helps, hit_direct + 0.3, hit_direct - rng.uniform(0, 0.02, size=n))
    return direct, scalars, hit_direct, hit_reason, helps


def test_fit_router_learns_who_gains_and_keeps_the_hit_rate():
    direct, scalars, hd, hr, helps = _synthetic()
    router = fit_router(direct, scalars, hd, hr, tolerance=0.0, folds=5)
    reason = router.decide(direct, scalars)
    assert router.stats["oof_auc"] > 0.9
    # reasons on about the queries that gain, far fewer than all
    assert 0.2 < reason.mean() < 0.6 and (reason == helps).mean() > 0.9
    routed = np.where(reason, hr, hd).mean()
    assert routed >= hr.mean() - 0.01  # the threshold keeps HitRate (chosen out-of-fold, checked in-sample)
    # held-out queries of the same kind
    d2, s2, hd2, hr2, helps2 = _synthetic(seed=1)
    assert np.where(router.decide(d2, s2), hr2, hd2).mean() >= hr2.mean() - 0.02


def test_threshold_is_the_fewest_reasoning_queries_within_tolerance():
    score = np.array([0.9, 0.8, 0.7, 0.1])
    hd = np.array([0.0, 0.0, 0.5, 0.5])
    hr = np.array([1.0, 1.0, 0.5, 0.5])  # only the first two gain
    t, info = choose_threshold(score, hd, hr, tolerance=0.0)
    assert 0.7 < t <= 0.8 and info["calibration_reason_share"] == 0.5
    t_loose, info_loose = choose_threshold(score, hd, hr, tolerance=0.5)
    assert info_loose["calibration_reason_share"] == 0.0 and t_loose > 0.9


def test_nothing_to_learn_means_never_reasoning():
    rng = np.random.default_rng(0)
    hd = rng.uniform(size=50)
    router = fit_router(rng.normal(size=(50, 4)), rng.normal(size=(50, 4)), hd, hd.copy())
    assert router.stats["degenerate"] and not router.decide(rng.normal(size=(5, 4)), rng.normal(size=(5, 4))).any()


def _constant_router(dim, reason: bool) -> Router:
    return Router(mean=[0.0] * (dim + 4), scale=[1.0] * (dim + 4), coef=[0.0] * (dim + 4), intercept=0.0,
                  threshold=0.0 if reason else 1.5)


def test_routed_embeddings_follow_the_router_and_survive_save_load(tiny_model, tmp_path):
    from components.model.lrem import LREMModel

    model = copy.deepcopy(tiny_model)
    dim = model.lm.config.hidden_size
    direct, scalars = model.direct_with_features(QUERIES)
    assert scalars.shape == (len(QUERIES), 4) and np.all((scalars[:, 1] > 0) & (scalars[:, 1] <= 1))
    np.testing.assert_allclose(direct, model.embed_queries(QUERIES, reasoning=False)[0], atol=1e-5)
    always, always_cots = model.embed_queries(QUERIES, routing=False)

    model.router = _constant_router(dim, reason=False)
    embs, cots, reasoned = model.embed_queries_routed(QUERIES)
    assert not reasoned.any() and cots == [""] * len(QUERIES)
    np.testing.assert_allclose(embs, direct, atol=1e-6)
    np.testing.assert_allclose(model.embed_queries(QUERIES)[0], direct, atol=1e-6)  # routing is the default
    np.testing.assert_allclose(model.embed_queries(QUERIES, routing=False)[0], always, atol=1e-6)

    # a router that picks some queries: those reason, the others stay direct
    router = _constant_router(dim, reason=True)
    router.threshold = 0.5
    router.coef[dim + 0] = 10.0  # by query length: the longer ones reason
    router.mean[dim + 0] = float(np.median(scalars[:, 0]))
    model.router = router
    embs, cots, reasoned = model.embed_queries_routed(QUERIES)
    assert 0 < reasoned.sum() < len(QUERIES)
    np.testing.assert_allclose(embs[reasoned], always[reasoned], atol=1e-5)
    np.testing.assert_allclose(embs[~reasoned], direct[~reasoned], atol=1e-6)
    assert [c for c, r in zip(cots, reasoned) if r] == [c for c, r in zip(always_cots, reasoned) if r]

    loaded = LREMModel.load(model.save(tmp_path / "routed"))
    assert loaded.router == router
    np.testing.assert_allclose(loaded.embed_queries(QUERIES)[0], embs, atol=1e-5)


@pytest.mark.parametrize("holdout_share,use_dev", [(0.15, True), (0.0, True), (0.0, False)])
def test_train_router_fits_on_the_held_out_queries_and_reports_eval(tiny_model, tmp_path, monkeypatch, holdout_share,
                                                                     use_dev):
    """The router is fitted on the held-out training queries only (with holdout_share 0: the dev
    queries, or without routing.use_dev the training queries), reported on the eval queries, and
    the same twice."""
    from components.config import PipelineConfig, RoutingConfig, WorldConfig
    from components.data.generate import generate_world
    from components.data.io import load_world
    from components.routing import step
    from components.routing.holdout import holdout_query_ids

    generate_world(WorldConfig(n_items=150, n_queries=120), tmp_path / "data")
    world = load_world(tmp_path / "data")
    cfg = PipelineConfig(routing=RoutingConfig(max_queries=40, folds=3, holdout_share=holdout_share, use_dev=use_dev))
    measured = []
    real = step.measure_queries

    def spy(model, world, queries, *args, **kwargs):
        measured.append(queries["query_id"].tolist())
        return real(model, world, queries, *args, **kwargs)

    monkeypatch.setattr(step, "measure_queries", spy)
    router, report = step.train_router_for(cfg, copy.deepcopy(tiny_model), world)
    fitted, evaluated = measured
    held = holdout_query_ids(cfg, world.queries)
    if holdout_share:
        assert report["fit_on"] == "held_out" and router.stats["fit_on"] == "held_out"
        assert set(fitted) == held and len(held) < 40  # all of them (fewer than max_queries), nothing else
    elif use_dev:
        dev = set(world.split("dev")["query_id"])
        assert report["fit_on"] == "dev" and not held and 0 < len(dev) < 40
        assert set(fitted) == dev  # all of them (fewer than max_queries), nothing else
    else:
        assert report["fit_on"] == "train" and not held
        assert set(fitted) <= set(world.split("train")["query_id"]) and len(fitted) == 40
    assert set(report["fit_query_ids"]) <= set(fitted) and report["train"]["n_queries"] == len(report["fit_query_ids"])
    assert set(evaluated) == set(world.split("eval")["query_id"])
    ev = report["eval"]
    assert ev["overall"]["n"] == (world.queries["split"] == "eval").sum()
    for row in ev.values():
        assert 0.0 <= row["reason_share"] <= 1.0 and row["ci_low"] <= row["diff_routed_minus_always"] <= row["ci_high"]
    assert set(ev) - {"overall"} <= set(world.queries["category"])
    again, report2 = step.train_router_for(cfg, copy.deepcopy(tiny_model), world)  # deterministic
    for r in (router, again):
        r.stats.pop("fit_seconds")
    assert again == router and report2["eval"] == report["eval"] and report2["fit_query_ids"] == report["fit_query_ids"]
    # the reference features' embeddings (the default): the whole catalog (under reference_items) and the sample of
    # training queries, the same twice
    assert router.refs["items"].shape == (len(world.catalog), tiny_model.lm.config.hidden_size)
    assert router.refs["queries"].shape[0] == min(40, len(world.split("train")))
    assert "direct_embedding" not in router.features and router.stats["reference_items"] == len(world.catalog)
    for key in ("items", "queries"):
        np.testing.assert_array_equal(again.refs[key], router.refs[key])


def test_reason_share_spends_the_budget_on_the_highest_scores():
    """routing.reason_share: the threshold reasons on that share of the out-of-fold scores, the
    highest ones; the tolerance rule's share is still reported."""
    from components.routing.router import fit_router, share_threshold

    rng = np.random.default_rng(3)
    score = rng.random(200)
    hit_d, hit_r = rng.random(200), rng.random(200)
    for share in (0.0, 0.1, 0.4, 0.5, 1.0):
        cut, calib = share_threshold(score, hit_d, hit_r, share)
        reason = score >= cut
        assert reason.sum() == round(share * 200) and calib["calibration_reason_share"] == reason.mean()
        if 0 < reason.sum() < 200:
            assert score[reason].min() > score[~reason].max()  # the highest scores reason
    n = 300
    direct = rng.normal(size=(n, 8))
    gain = direct[:, 0] + 0.5 * rng.normal(size=n)
    hit_direct = np.full(n, 0.5)
    hit_reason = np.where(gain > 0.5, 1.0, np.where(gain < -0.5, 0.0, 0.5))
    scalars = np.zeros((n, 3))
    router = fit_router(direct, scalars, hit_direct, hit_reason, folds=3, reason_share=0.4)
    assert router.stats["calibration_reason_share"] == pytest.approx(0.4, abs=1 / n)
    assert 0.0 <= router.stats["rule_reason_share"] <= 1.0 and "rule_hit_rate" in router.stats
    rule = fit_router(direct, scalars, hit_direct, hit_reason, folds=3)
    assert rule.stats["calibration_reason_share"] == router.stats["rule_reason_share"]
    assert 0.25 < router.decide(direct, scalars).mean() < 0.55  # in-sample scores: about the budget


def test_bagged_threshold_is_the_median_of_the_resamples_first_crossings():
    """routing.threshold_bags: the first-crossing rule on bootstrap resamples, and their median."""
    from components.routing.router import bagged_threshold

    direct, scalars, hd, hr, _ = _synthetic(n=120, seed=3)
    score = np.random.default_rng(5).uniform(size=len(hd))
    cut, info = bagged_threshold(score, hd, hr, 0.0, bags=15, seed=2)
    rng = np.random.default_rng(2)
    cuts = []
    for _ in range(15):
        idx = rng.integers(0, len(hd), len(hd))
        cuts.append(choose_threshold(score[idx], hd[idx], hr[idx], 0.0)[0])
    assert cut == pytest.approx(float(np.median(cuts)))
    assert info["threshold_bags"] == 15 and info["bag_threshold_iqr"][0] <= cut <= info["bag_threshold_iqr"][1]
    routed_share = float((score >= cut).mean())
    assert info["calibration_reason_share"] == pytest.approx(routed_share)
    # routing.threshold_quantile: a lower quantile of the same cuts, never a higher cut, never fewer reasoning
    low, low_info = bagged_threshold(score, hd, hr, 0.0, bags=15, seed=2, quantile=0.25)
    assert low == pytest.approx(float(np.quantile(cuts, 0.25))) and low <= cut
    assert low_info["calibration_reason_share"] >= info["calibration_reason_share"]
    # fit_router with bags: deterministic in its seed, and the learned router still routes who gains
    a = fit_router(direct, scalars, hd, hr, bags=15, seed=1)
    b = fit_router(direct, scalars, hd, hr, bags=15, seed=1)
    assert a.threshold == b.threshold and a.stats["threshold_bags"] == 15


def test_threshold_bags_must_not_be_negative():
    from components.config import ConfigError, PipelineConfig, check_config

    cfg = PipelineConfig()
    cfg.routing.threshold_bags = -1
    with pytest.raises(ConfigError, match="routing.threshold_bags"):
        check_config(cfg)


def test_drafts_are_built_from_the_models_own_cots_on_a_sample_of_training_queries(tiny_model, tmp_path, monkeypatch):
    from components.config import PipelineConfig, RoutingConfig, WorldConfig
    from components.data.generate import generate_world
    from components.data.io import load_world
    from components.routing import step

    generate_world(WorldConfig(n_items=150, n_queries=120), tmp_path / "data")
    world = load_world(tmp_path / "data")
    cfg = PipelineConfig(routing=RoutingConfig(max_queries=30))
    model = copy.deepcopy(tiny_model)
    seen = []
    real = model.greedy_cot_ids

    def spy(queries, batch_size=64):
        seen.append(list(queries))
        return real(queries, batch_size)

    monkeypatch.setattr(model, "greedy_cot_ids", spy)
    stats = step.build_drafts_for(cfg, model, world)
    assert len(seen[0]) == 30 and set(seen[0]) <= set(world.split("train")["text"])
    assert stats["cots"] == 30 and stats["contexts"] == len(model.drafts) and stats["build_seconds"] >= 0
    first = dict(model.drafts.table)
    step.build_drafts_for(cfg, model, world)
    assert seen[1] == seen[0] and model.drafts.table == first  # the same sample and table every time
