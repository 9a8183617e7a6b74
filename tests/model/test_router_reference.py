"""The router's features from the direct retrieval (docs/serving-cost.md 3.6): computed as defined,
stored with the model, refused when their reference embeddings are missing."""

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.routing.router import (REFERENCE_FEATURES, REFS_FILE, SCALAR_FEATURES, Router, as_stored,
                                       fit_router, reference_features)


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_queries=st.integers(0, 12), n_items=st.integers(1, 260),
       n_train=st.integers(1, 30), dim=st.integers(2, 16))
def test_reference_features_are_the_ranked_cosines_and_the_nearest_training_query(seed, n_queries, n_items,
                                                                                   n_train, dim):
    rng = np.random.default_rng(seed)
    direct, items, train = _unit(rng, n_queries, dim), _unit(rng, n_items, dim), _unit(rng, n_train, dim)
    got = reference_features(direct, items, train)
    assert got.shape == (n_queries, len(REFERENCE_FEATURES))
    for row, q in zip(got, direct):
        ranked = np.sort(items @ q)[::-1]
        top = [ranked[min(k, n_items) - 1] for k in (1, 10, 100)]  # ranks past the catalog clip to its last
        want = [*top, top[0] - top[1], top[0] - top[2], (train @ q).max()]
        np.testing.assert_allclose(row, want, atol=1e-5)
        assert row[0] >= row[1] >= row[2] and row[3] >= 0 and row[4] >= row[3]


def test_reference_features_need_references():
    with pytest.raises(ValueError, match="reference item"):
        reference_features(np.ones((2, 3), np.float32), np.zeros((0, 3)), np.ones((1, 3)))


def _margin_world(n=400, seed=0, dim=8):
    """Reasoning helps exactly the queries whose direct embedding is far from every item."""
    rng = np.random.default_rng(seed)
    items = _unit(rng, 60, dim)
    direct = _unit(rng, n, dim)
    near = rng.random(n) < 0.5
    direct[near] = items[rng.integers(0, 60, near.sum())] + 0.05 * rng.normal(size=(near.sum(), dim))
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    scalars = rng.normal(size=(n, 4))
    hit_direct = np.where(near, 0.9, 0.3)
    hit_reason = np.where(near, 0.9 - rng.uniform(0, 0.02, n), 0.7)
    refs = {"items": items, "queries": _unit(rng, 20, dim)}
    return direct, scalars, hit_direct, hit_reason, ~near, refs


def test_fit_router_learns_from_the_direct_retrieval_and_keeps_its_references(tmp_path):
    direct, scalars, hd, hr, helps, refs = _margin_world()
    router = fit_router(direct, scalars, hd, hr, direct_embedding=False, refs=refs)
    assert router.features == [*SCALAR_FEATURES, *REFERENCE_FEATURES]
    assert len(router.coef) == len(router.mean) == 4 + len(REFERENCE_FEATURES)
    assert router.stats["oof_auc"] > 0.95
    assert (router.decide(direct, scalars) == helps).mean() > 0.95
    for key in ("items", "queries"):  # fitted on the references as stored (float16)
        np.testing.assert_array_equal(router.refs[key], as_stored(refs)[key])

    router.save(tmp_path)
    assert (tmp_path / REFS_FILE).is_file()
    loaded = Router.load(tmp_path)
    assert loaded == router
    for key in ("items", "queries"):
        np.testing.assert_array_equal(loaded.refs[key], router.refs[key])
    d2, s2, *_ = _margin_world(seed=1)
    np.testing.assert_array_equal(loaded.scores(d2, s2), router.scores(d2, s2))

    (tmp_path / REFS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=REFS_FILE):
        Router.load(tmp_path)
    router.refs = None
    with pytest.raises(ValueError, match=REFS_FILE):
        router.decide(d2, s2)


def test_features_without_the_embedding_or_the_references():
    direct, scalars, hd, hr, helps, refs = _margin_world()
    both = fit_router(direct, scalars, hd, hr, direct_embedding=True, refs=refs)
    assert both.features[0] == "direct_embedding" and len(both.coef) == direct.shape[1] + 4 + len(REFERENCE_FEATURES)
    scalars_only = fit_router(direct, scalars, hd, hr, direct_embedding=False)
    assert scalars_only.features == list(SCALAR_FEATURES) and scalars_only.refs is None
    assert scalars_only.stats["oof_auc"] < 0.7  # the signal is in the retrieval, not in noise scalars


def test_a_registered_model_routes_the_same_after_save_load(tiny_model, tmp_path):
    """The references travel with the model directory: a loaded model decides as the fitted one."""
    from components.model.lrem import LREMModel

    model = copy.deepcopy(tiny_model)
    queries = ["keep my coffee hot on the commute", "chair", "gear for the sport played at Wimbledon",
               "cheap alternative to Lumora", "running shoes not leather", "a gift for a new runner"]
    items = model.embed_items(["steel travel mug", "office chair", "tennis racket", "leather boots",
                               "canvas running shoes", "wool socks"])
    direct, scalars = model.direct_with_features(queries)
    rng = np.random.default_rng(0)
    hd = rng.uniform(size=len(queries))
    hr = hd + np.array([0.3, -0.1, 0.3, -0.1, 0.3, -0.1])
    model.router = fit_router(direct, scalars, hd, hr, folds=2, direct_embedding=False,
                              refs={"items": items, "queries": direct[:3]})
    embs, _, reasoned = model.embed_queries_routed(queries)
    loaded = LREMModel.load(model.save(tmp_path / "routed"))
    assert (tmp_path / "routed" / REFS_FILE).is_file()
    embs2, _, reasoned2 = loaded.embed_queries_routed(queries)
    np.testing.assert_array_equal(reasoned2, reasoned)
    np.testing.assert_allclose(embs2, embs, atol=1e-5)
