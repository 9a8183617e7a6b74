"""Step `train_router`: learn when reasoning pays, on tonight's world, and ship it with the model.

Between ``train_grpo`` and ``register_challenger``: the GRPO model is loaded, every fitting query
(the data's dev queries, phrased as the traffic is, which no trainer reads; or the held-out
training queries, ``routing.holdout_share``, :mod:`components.routing.holdout`; or the training
queries: :func:`fit_queries`; up to ``routing.max_queries``) is embedded directly and
after its own greedy CoT, both are searched exactly against the catalog, and the per-query
HitRate@``routing.hit_k`` gain of the CoT is the label of
:func:`components.routing.router.fit_router`. The model
directory plus its ``router.json`` and ``router_refs.npz`` (the reference embeddings of the router's
retrieval features) (and ``cot_drafts.json``: draft tokens from the model's own
greedy CoTs on the training queries, which make reasoning at batch 1 take fewer decoder calls,
:mod:`components.model.drafts`) is logged as ``routed_model``: the version registered
tonight carries its router, so the offline evaluation, the online A/B and the gate run the
routing the service runs. The eval queries are never used for fitting; they are reported
(share that reasons, HitRate overall and per category, paired bootstrap CI of routed minus
always-reasoning) in ``routing/report.json`` and as ``router.*`` MLflow metrics.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd

from components import tracking
from components.artifacts import DataSnapshot, TrainedModel
from components.config import PipelineConfig
from components.data.io import World, load_world
from components.paths import run_dir

log = logging.getLogger(__name__)

ARTIFACT = "routed_model"


def per_query_hits(embs: np.ndarray, items: np.ndarray, item_ids: np.ndarray, qids: list[str],
                   relevant: dict, k: int) -> np.ndarray:
    """HitRate@k per query (share of its relevant items in the exact top k); NaN without judgments."""
    from components.evaluation.search import exact_top_k

    top = exact_top_k(embs, items, k)
    out = np.full(len(qids), np.nan)
    for i, (qid, row) in enumerate(zip(qids, top)):
        truth = relevant.get(qid)
        if truth:
            out[i] = len(truth.intersection(item_ids[row].tolist())) / len(truth)
    return out


def measure_queries(model, world: World, queries, k: int, batch_size: int, items: np.ndarray | None = None):
    """Direct and always-reasoning HitRate@k of ``queries`` (rows of ``world.queries``), with the
    router's features; queries without judgments are left out. ``items``: the catalog's item
    embeddings by this model, when already computed."""
    queries = queries.reset_index(drop=True)
    texts, qids = queries["text"].tolist(), queries["query_id"].astype(str).tolist()
    if items is None:
        items = model.embed_items(world.catalog["title"].tolist(), batch_size=batch_size * 2)
    item_ids = world.catalog["item_id"].astype(str).to_numpy()
    relevant = {str(q): {str(i) for i in v} for q, v in world.relevant().items()}
    direct, scalars = model.direct_with_features(texts, batch_size=batch_size)
    reasoned, _ = model.embed_queries(texts, reasoning=True, batch_size=batch_size, routing=False)
    hit_d = per_query_hits(direct, items, item_ids, qids, relevant, k)
    hit_r = per_query_hits(reasoned, items, item_ids, qids, relevant, k)
    keep = ~np.isnan(hit_d)
    return {"qids": [q for q, ok in zip(qids, keep) if ok], "category": queries["category"].to_numpy()[keep],
            "direct": direct[keep], "scalars": scalars[keep], "hit_direct": hit_d[keep], "hit_reason": hit_r[keep]}


def seeded_sample(queries, n: int | None, seed: int):
    """``n`` rows of ``queries`` drawn with ``seed`` (all of them when there are not more), index reset:
    the sample every router input takes of a split (``routing.max_queries``, ``routing.seed``)."""
    if n is not None and len(queries) > n:
        queries = queries.sample(n=n, random_state=seed)
    return queries.reset_index(drop=True)


def measure(model, world: World, split: str, k: int, max_queries: int | None, batch_size: int, seed: int = 0,
            items: np.ndarray | None = None):
    """:func:`measure_queries` of one split's queries (a seeded sample of ``max_queries`` of them)."""
    return measure_queries(model, world, seeded_sample(world.split(split), max_queries, seed), k, batch_size, items)


def reference_embeddings(cfg: PipelineConfig, model, world: World, items: np.ndarray) -> dict:
    """The router's reference embeddings (:func:`components.routing.router.reference_features`): the
    catalog's item embeddings (a seeded sample of ``routing.reference_items`` when larger) and the
    direct embeddings of the training queries (a seeded sample of ``routing.max_queries``)."""
    r = cfg.routing
    if len(items) > r.reference_items:
        keep = np.sort(np.random.default_rng(r.seed).choice(len(items), r.reference_items, replace=False))
        items = items[keep]
    train = seeded_sample(world.split("train"), r.max_queries, r.seed)
    queries, _ = model.direct_with_features(train["text"].tolist(), batch_size=cfg.eval.batch_size)
    return {"items": np.asarray(items, np.float32), "queries": np.asarray(queries, np.float32)}


def routed_report(reason: np.ndarray, m: dict, n_boot: int = 2000, seed: int = 0) -> dict:
    """Routing decisions ``reason`` (True: the query reasons) against always reasoning (and direct)
    on measured queries ``m``, overall and per category: share that reasons, HitRates, and the
    paired bootstrap CI of routed minus always-reasoning."""
    from components.evaluation.bootstrap import paired_bootstrap

    reason = np.asarray(reason, dtype=bool)
    routed = np.where(reason, m["hit_reason"], m["hit_direct"])
    groups = {"overall": np.ones(len(routed), dtype=bool)}
    groups.update({str(c): m["category"] == c for c in sorted(set(m["category"]))})
    out = {}
    for name, sel in groups.items():
        ci = paired_bootstrap(routed[sel], m["hit_reason"][sel], n_resamples=n_boot, seed=seed)
        out[name] = {"n": int(sel.sum()), "reason_share": float(reason[sel].mean()),
                     "hit_rate_routed": float(routed[sel].mean()),
                     "hit_rate_always_reason": float(m["hit_reason"][sel].mean()),
                     "hit_rate_direct": float(m["hit_direct"][sel].mean()),
                     "diff_routed_minus_always": ci["diff"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
                     "zero_in_ci": bool(ci["ci_low"] <= 0.0 <= ci["ci_high"])}
    return out


def eval_report(router, m: dict, n_boot: int = 2000, seed: int = 0) -> dict:
    """Routed against always-reasoning (and direct) on measured queries, overall and per category."""
    return routed_report(router.decide(m["direct"], m["scalars"]), m, n_boot, seed)


def fit_queries(cfg: PipelineConfig, world: World):
    """The queries the router is fitted on, and which they are: the held-out training queries
    (``routing.holdout_share``: no trainer saw them); else the data's dev queries
    (``routing.use_dev`` and a "dev" split: phrased as the traffic is, no trainer reads them);
    else the training queries. A seeded sample of ``routing.max_queries`` of them."""
    from components.routing.holdout import holdout_query_ids

    r = cfg.routing
    held = holdout_query_ids(cfg, world.queries)
    if held:
        queries = world.queries[world.queries["query_id"].astype(str).isin(held)].reset_index(drop=True)
        source = "held_out"
    elif r.use_dev and len(dev := world.split("dev")):
        queries, source = dev, "dev"
    else:
        queries, source = world.split("train"), "train"
    return seeded_sample(queries, r.max_queries, r.seed), source


def traffic_queries(cfg: PipelineConfig, world: World, until: float | None = None) -> tuple[list[str], dict]:
    """The served traffic rule C sets its budget on (docs/serving-cost.md 3.7): the distinct
    queries (by the cache's normalisation, each as first logged) of the event store's searches of
    the ``routing.traffic_days`` days before ``until`` (epoch seconds, default now; the nightly run
    passes its start, so a retried task reads the same traffic), a seeded sample of
    ``routing.max_queries`` when more; and what they are (searches read, distinct queries, how
    many are eval queries). No store: none."""
    from components.service.cache import normalise_query
    from components.service.events import recent_queries

    r = cfg.routing
    try:
        texts = recent_queries(cfg.serve.event_store_url, r.traffic_days, until)
        source = "event_store"
    except Exception as exc:  # no store yet
        log.info("event store unreadable (%s): no traffic for the router's budget", exc)
        texts, source = [], f"unreadable: {type(exc).__name__}"
    first: dict[str, str] = {}
    for t in texts:  # one per normalised query: its first spelling, in the order first seen
        first.setdefault(normalise_query(t), t)
    distinct = seeded_sample(pd.DataFrame(list(first.items()), columns=["normalised", "text"]), r.max_queries, r.seed)
    eval_norm = {normalise_query(t) for t in world.split("eval")["text"].astype(str)}
    info = {"source": source, "days": r.traffic_days, "until": until, "searches": len(texts),
            "distinct_queries": len(distinct),
            "eval_queries_among_them": int(distinct["normalised"].isin(eval_norm).sum())}
    return distinct["text"].tolist(), info


def apply_traffic_budget(cfg: PipelineConfig, model, world: World, router, until: float | None = None) -> dict:
    """Rule C on a fitted ``router``: with ``routing.traffic_budget`` and at least
    ``routing.traffic_min_queries`` traffic queries (:func:`traffic_queries`), the threshold that
    reasons on that share of them (:meth:`Router.apply_traffic_budget`); else the fitted rule's
    threshold stays. What was done, also in ``router.stats["traffic"]``."""
    r = cfg.routing
    texts, info = traffic_queries(cfg, world, until)
    info["budget"] = r.traffic_budget
    if len(texts) < r.traffic_min_queries:
        info.update(applied=False, threshold=router.threshold,
                    reason=f"{len(texts)} distinct traffic queries, fewer than routing.traffic_min_queries "
                           f"({r.traffic_min_queries}): the fitted rule's threshold stays")
        log.info("router traffic budget not applied: %s", info["reason"])
    else:
        direct, scalars = model.direct_with_features(texts, batch_size=cfg.eval.batch_size)
        info.update(router.apply_traffic_budget(direct, scalars, r.traffic_budget))
        log.info("router traffic budget %.2f on %d traffic queries (%d of them eval queries): threshold %.4f "
                 "(the fitted rule's %.4f would reason on %.0f%% of them)", r.traffic_budget, len(texts),
                 info["eval_queries_among_them"], info["threshold"], info["rule_threshold"],
                 100 * info["rule_reason_share"])
    router.stats["traffic"] = info
    return info


def fit_router_for(cfg: PipelineConfig, model, world: World, traffic_until: float | None = None) -> tuple:
    """Fit the router on its queries (:func:`fit_queries`: dev, held-out or training) and set its
    threshold on the traffic when ``routing.traffic_budget`` is set (:func:`apply_traffic_budget`):
    (router, the fitted queries' ids, the catalog's item embeddings by this model)."""
    from components.routing.router import fit_router

    r = cfg.routing
    t0 = time.perf_counter()
    queries, source = fit_queries(cfg, world)
    items = model.embed_items(world.catalog["title"].tolist(), batch_size=cfg.eval.batch_size * 2)
    fit = measure_queries(model, world, queries, r.hit_k, cfg.eval.batch_size, items)
    refs = reference_embeddings(cfg, model, world, items) if r.reference_features else None
    router = fit_router(fit["direct"], fit["scalars"], fit["hit_direct"], fit["hit_reason"],
                        tolerance=r.tolerance, folds=r.folds, c=r.c, seed=r.seed,
                        bags=r.threshold_bags, reason_share=r.reason_share,
                        direct_embedding=r.direct_embedding, refs=refs, threshold_quantile=r.threshold_quantile)
    router.stats.update(hit_k=r.hit_k, fit_on=source, holdout_share=r.holdout_share if source == "held_out" else 0.0,
                        fit_seconds=round(time.perf_counter() - t0, 2))
    if refs is not None:
        router.stats.update(reference_items=len(refs["items"]), reference_queries=len(refs["queries"]))
    if r.traffic_budget is not None:
        apply_traffic_budget(cfg, model, world, router, traffic_until)
    return router, fit["qids"], items


def train_router_for(cfg: PipelineConfig, model, world: World, traffic_until: float | None = None) -> tuple:
    """:func:`fit_router_for`, and the router reported on the eval queries: (router, report)."""
    r = cfg.routing
    router, fit_qids, items = fit_router_for(cfg, model, world, traffic_until)
    ev = measure(model, world, "eval", r.hit_k, None, cfg.eval.batch_size, items=items)
    report = {"hit_k": r.hit_k, "fit_on": router.stats["fit_on"], "fit_query_ids": fit_qids, "train": router.stats,
              "eval": eval_report(router, ev, r.bootstrap_samples)}
    return router, report


def build_drafts_for(cfg: PipelineConfig, model, world: World) -> dict:
    """The model's draft table for greedy CoTs at batch 1 (components.model.drafts), from its own greedy CoTs on
    the training queries (a seeded sample of ``routing.max_queries``); saved with the model. Its stats."""
    r = cfg.routing
    queries = seeded_sample(world.split("train"), r.max_queries, r.seed)
    t0 = time.perf_counter()
    model.build_drafts(queries["text"].tolist(), batch_size=cfg.eval.batch_size)
    stats = dict(model.drafts.stats, build_seconds=round(time.perf_counter() - t0, 2))
    log.info("CoT drafts: %d contexts from %d greedy CoTs (%.1f s)", stats["contexts"], stats["cots"],
             stats["build_seconds"])
    return stats


def run_train_router(cfg: PipelineConfig, snapshot: DataSnapshot, trained: TrainedModel) -> TrainedModel:
    import mlflow

    from components.model.lrem import LREMModel

    out = run_dir(snapshot.run_key) / "routing"
    out.mkdir(parents=True, exist_ok=True)
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        model = LREMModel.load(tracking.download(trained.model_uri, out / "input"))
        model.router = None
        report: dict = {"enabled": cfg.routing.enabled}
        world = load_world(snapshot.data_uri) if model.spec.pooling == "emb_token" else None
        if cfg.routing.enabled and world is not None:
            # the traffic up to the pipeline run's start: a retried task sets the same cut
            started = mlflow.get_run(snapshot.mlflow_run_id).info.start_time / 1000.0
            model.router, report = train_router_for(cfg, model, world, traffic_until=started)
            report["enabled"] = True
            mlflow.set_tag("router.fit_on", report["fit_on"])
            ev = report["eval"]["overall"]
            mlflow.log_metrics({"router.eval_reason_share": ev["reason_share"],
                                "router.eval_hit_rate_routed": ev["hit_rate_routed"],
                                "router.eval_hit_rate_always_reason": ev["hit_rate_always_reason"],
                                "router.eval_hit_rate_direct": ev["hit_rate_direct"],
                                "router.eval_diff_ci_low": ev["ci_low"], "router.eval_diff_ci_high": ev["ci_high"],
                                "router.train_reason_share": report["train"].get("calibration_reason_share", 1.0),
                                "router.fit_queries": report["train"]["n_queries"],
                                "router.threshold": model.router.threshold})
            traffic = report["train"].get("traffic")
            if traffic is not None:
                mlflow.set_tag("router.traffic_budget", "applied" if traffic.get("applied") else "not applied")
                mlflow.log_metrics({"router.traffic_queries": traffic["distinct_queries"],
                                    "router.traffic_eval_queries": traffic["eval_queries_among_them"]})
                if traffic.get("applied"):
                    mlflow.log_metric("router.traffic_reason_share", traffic["reason_share"])
            for cat, row in report["eval"].items():
                if cat != "overall":
                    mlflow.log_metric(f"router.eval_reason_share.{cat}", row["reason_share"])
            log.info("router: reasons on %.0f%% of eval queries; HitRate@%d routed %.4f vs always %.4f "
                     "(CI of the difference [%+.4f, %+.4f])", 100 * ev["reason_share"], cfg.routing.hit_k,
                     ev["hit_rate_routed"], ev["hit_rate_always_reason"], ev["ci_low"], ev["ci_high"])
        if world is not None:
            report["drafts"] = build_drafts_for(cfg, model, world)
            mlflow.log_metrics({"drafts.contexts": report["drafts"]["contexts"],
                                "drafts.build_seconds": report["drafts"]["build_seconds"]})
        model.save(out / "model")
        (out / "report.json").write_text(json.dumps(report, indent=2))
        mlflow.log_artifacts(str(out / "model"), ARTIFACT)
        mlflow.log_artifact(str(out / "report.json"), "routing")
    return TrainedModel(stage="routed", model_uri=f"runs:/{snapshot.mlflow_run_id}/{ARTIFACT}", steps=trained.steps)
