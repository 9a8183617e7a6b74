"""Rule C (docs/serving-cost.md 3.7): the router's threshold set as a reasoning budget over the served traffic."""

import copy
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.routing.router import Router, budget_cut, fit_router


@settings(max_examples=200, deadline=None)
@given(scores=st.lists(st.floats(0.0, 1.0, allow_nan=False, width=32), min_size=1, max_size=60),
       share=st.floats(0.0, 1.0))
def test_budget_cut_reasons_on_the_share_highest_scores_and_their_ties(scores, share):
    score = np.asarray(scores, float)
    cut = budget_cut(score, share)
    reason = score >= cut
    n = int(round(share * len(score)))
    ordered = np.sort(score)[::-1]
    if n == 0:
        assert not reason.any()
    elif n == len(score):
        assert reason.all()
    else:
        # exactly the queries scored at least the n-th highest: n of them, more only on a tie at the cut
        assert reason.sum() == (score >= ordered[n - 1]).sum() >= n
        assert reason.sum() == n or ordered[n - 1] == ordered[n]


def _router(seed=0):
    rng = np.random.default_rng(seed)
    direct = rng.normal(size=(300, 8))
    scalars = rng.normal(size=(300, 4))
    helps = scalars[:, 3] < 0.0
    hit_direct = rng.uniform(0.2, 0.6, size=300)
    hit_reason = np.where(helps, hit_direct + 0.3, hit_direct - 0.01)
    return fit_router(direct, scalars, hit_direct, hit_reason, folds=3, direct_embedding=False)


@pytest.mark.parametrize("budget", [0.0, 0.2, 0.45, 1.0])
def test_traffic_budget_sets_the_threshold_on_the_traffic_scores(tmp_path, budget):
    router = _router()
    rule = router.threshold
    rng = np.random.default_rng(7)
    direct, scalars = rng.normal(size=(211, 8)), rng.normal(size=(211, 4)) + 0.5  # traffic drifted from the fit set
    info = router.apply_traffic_budget(direct, scalars, budget)
    assert info["rule_threshold"] == rule and router.threshold == info["threshold"]
    assert router.decide(direct, scalars).sum() == int(round(budget * 211))  # continuous scores: no ties
    assert info["reason_share"] == pytest.approx(round(budget * 211) / 211)
    assert info["rule_reason_share"] == pytest.approx(float((router.scores(direct, scalars) >= rule).mean()))
    assert router.stats["traffic"] == info
    router.save(tmp_path)
    loaded = Router.load(tmp_path)
    assert loaded.threshold == router.threshold and loaded.stats["traffic"] == info


def _log(store, queries, ts):
    for i, q in enumerate(queries):
        store.log_search({"request_id": f"r{ts}-{i}", "ts": ts, "user_id": "u", "experiment": "e", "mode": "split",
                          "arm": "champion", "model_version": "1", "collection": "c", "query": q, "k": 10,
                          "reasoning": True, "cot": None, "item_ids": [], "scores": [], "teams": None,
                          "latency_ms": 1.0, "queue_ms": 0.0})


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    from components.config import WorldConfig
    from components.data.generate import generate_world
    from components.data.io import load_world

    path = tmp_path_factory.mktemp("world") / "data"
    generate_world(WorldConfig(n_items=150, n_queries=120), path)
    return load_world(path)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_eval=st.integers(0, 20), n_other=st.integers(0, 12), repeats=st.integers(1, 3), old=st.integers(0, 5))
def test_traffic_queries_are_the_recent_distinct_searches(small_world, tmp_path_factory, n_eval, n_other, repeats,
                                                          old):
    """Recent searches only, one per normalised query (its first spelling), and the count of eval queries among them."""
    from components.config import PipelineConfig, RoutingConfig, ServeConfig
    from components.routing.step import traffic_queries
    from components.service.events import EventStore

    url = f"sqlite:///{tmp_path_factory.mktemp('events') / 'events.db'}"
    cfg = PipelineConfig(routing=RoutingConfig(traffic_days=1.0, max_queries=None), serve=ServeConfig(event_store_url=url))
    evals = small_world.split("eval")["text"].tolist()[:n_eval]
    others = [f"made up query number {i}" for i in range(n_other)]
    store = EventStore(url)
    _log(store, [f"very old query {i}" for i in range(old)], ts=time.time() - 3 * 86400)  # outside traffic_days
    for r in range(repeats):  # repeats, later and in reverse order, in other spellings: one query each, first seen first
        _log(store, [("  " + q.upper() + " ") for q in reversed(evals + others)] if r else evals + others,
             ts=time.time() - 60 + r)
    store.close()
    texts, info = traffic_queries(cfg, small_world)
    assert texts == evals + others  # first spelling, first seen
    assert info["source"] == "event_store" and info["searches"] == repeats * (n_eval + n_other)
    assert info["distinct_queries"] == n_eval + n_other and info["eval_queries_among_them"] == len(set(evals))


def test_traffic_queries_sample_and_without_a_store(small_world, tmp_path):
    from components.config import PipelineConfig, RoutingConfig, ServeConfig
    from components.routing.step import traffic_queries
    from components.service.events import EventStore

    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    _log(store, [f"query {i}" for i in range(50)], ts=time.time())
    store.close()
    cfg = PipelineConfig(routing=RoutingConfig(max_queries=20), serve=ServeConfig(event_store_url=url))
    texts, info = traffic_queries(cfg, small_world)
    assert len(texts) == 20 and len(set(texts)) == 20 and info["distinct_queries"] == 20
    assert traffic_queries(cfg, small_world)[0] == texts  # seeded
    cfg.serve.event_store_url = f"sqlite:///{tmp_path / 'missing' / 'events.db'}"  # folder absent: unreadable
    texts, info = traffic_queries(cfg, small_world)
    assert texts == [] and info["source"].startswith("unreadable")


@pytest.mark.parametrize("n_traffic,applied", [(38, True), (10, False)])
def test_train_router_sets_the_threshold_on_the_event_stores_traffic(tiny_model, small_world, tmp_path, n_traffic,
                                                                     applied):
    """train_router with routing.traffic_budget: the registered router reasons on the budget's share of the
    traffic queries; with fewer than traffic_min_queries of them the fitted rule's threshold stays."""
    from components.config import PipelineConfig, RoutingConfig, ServeConfig
    from components.routing import step
    from components.service.events import EventStore

    url = f"sqlite:///{tmp_path / 'events.db'}"
    traffic = small_world.split("eval")["text"].tolist() + small_world.split("train")["text"].tolist()
    traffic = traffic[:n_traffic]
    store = EventStore(url)
    _log(store, traffic, ts=time.time())
    store.close()
    base = dict(max_queries=40, folds=3, threshold_bags=20)
    plain, _ = step.train_router_for(PipelineConfig(routing=RoutingConfig(**base, traffic_budget=None)),
                                     copy.deepcopy(tiny_model), small_world)
    cfg = PipelineConfig(routing=RoutingConfig(**base, traffic_budget=0.3, traffic_min_queries=30),
                         serve=ServeConfig(event_store_url=url))
    model = copy.deepcopy(tiny_model)
    router, report = step.train_router_for(cfg, model, small_world)
    info = report["train"]["traffic"]
    assert info["applied"] is applied and info["distinct_queries"] == n_traffic, info
    assert info["eval_queries_among_them"] == min(n_traffic, len(small_world.split("eval")))
    assert router.coef == plain.coef  # the fit is rule A's; only the cut moves
    if applied:
        direct, scalars = model.direct_with_features(traffic, batch_size=16)
        reason = router.decide(direct, scalars)
        assert reason.sum() >= round(0.3 * n_traffic) and info["rule_threshold"] == plain.threshold
        assert info["reason_share"] == pytest.approx(reason.mean())
    else:
        assert router.threshold == plain.threshold and "fewer than" in info["reason"]
    # the eval report routes with the threshold the router carries
    assert report["eval"]["overall"]["reason_share"] == pytest.approx(float(
        router.decide(*model.direct_with_features(small_world.split("eval")["text"].tolist(), batch_size=16)).mean()))


def test_traffic_queries_stop_at_the_runs_start(small_world, tmp_path):
    """The nightly run reads the traffic up to its own start: a search logged later (while a retried
    task runs again) does not move the cut."""
    from components.config import PipelineConfig, RoutingConfig, ServeConfig
    from components.routing.step import traffic_queries
    from components.service.events import EventStore

    url = f"sqlite:///{tmp_path / 'events.db'}"
    start = time.time() - 3600
    store = EventStore(url)
    _log(store, ["old enough", "also before the run"], ts=start - 10)
    _log(store, ["logged during the run"], ts=start + 10)
    _log(store, ["eight days before"], ts=start - 8 * 86400)
    store.close()
    cfg = PipelineConfig(routing=RoutingConfig(traffic_days=7.0), serve=ServeConfig(event_store_url=url))
    assert traffic_queries(cfg, small_world, until=start)[0] == ["old enough", "also before the run"]
    assert traffic_queries(cfg, small_world)[0] == ["old enough", "also before the run", "logged during the run"]
