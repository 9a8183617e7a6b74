"""Step `evaluate_online`: the challenger against the champion through the real service.

Starts the search service in this process on a free loopback port (it loads `champion`
and `challenger` from the registry, so the challenger arm is the version
`register_challenger` just aliased), replays the eval queries with simulated users in
both modes (split A/B and team-draft interleaving), analyses the events of this run
(:mod:`components.service.analysis`) and logs the report into the pipeline's MLflow run.
It also scores both models per query offline on the same eval queries, so that the gate
can test them per group (:func:`components.evaluation.gate.offline_tests`), and computes the
offline counterpart of the online primary metric. The replay seed derives from the run key
(:func:`components.service.replay.replay_seed`) and is recorded.
"""

from __future__ import annotations

import logging

from components.artifacts import DataSnapshot, ItemIndex, OnlineReport, RegisteredModel
import numpy as np

from components.config import PipelineConfig

log = logging.getLogger(__name__)


def per_query_metric(cfg: PipelineConfig, model, collection: str, world, metric: str,
                     rankings: dict | None = None) -> dict[str, float]:
    """query id -> ``metric`` (e.g. hit_rate@100) of one model's ranking on the eval queries
    (``rankings``, when given, receives query id -> ranked item ids)."""
    from components.evaluation.metrics import retrieval_metrics
    from components.index.collections import search

    k = int(metric.split("@")[1]) if "@" in metric else 100
    queries = world.split("eval")
    embs, _ = model.embed_queries(queries["text"].tolist(), batch_size=cfg.eval.batch_size)
    ranked = search(cfg.index.milvus_uri, collection, embs, k)
    relevant = world.graded()  # as evaluate_offline scores: grades for nDCG, any grade counts as a hit
    out = {}
    for qid, items in zip(queries["query_id"], ranked):
        if rankings is not None:
            rankings[qid] = list(items)
        scored = retrieval_metrics({qid: items}, relevant, {}, hit_ks=(k,), precision_k=min(10, k), ndcg_ks=(k,),
                                   recall_ks=(k,))["overall"]
        out[qid] = float(scored[metric])
    return out


def run_evaluate_online(cfg: PipelineConfig, snapshot: DataSnapshot, model: RegisteredModel,
                        index: ItemIndex) -> OnlineReport:
    from components import tracking
    from components.data.io import load_world
    from components.index.server import ensure_server
    from components.paths import run_dir
    from components.registry import models
    from components.service.audit import collection_for
    from components.evaluation.gate import TESTED, json_safe, offline_tests
    from components.service.analysis import expected_judged_hit, online_rows
    from components.service.clicks import ClickModel
    from components.service.online import evaluate_online
    from components.service.replay import replay_seed

    tracking.configure(cfg)
    ensure_server(cfg.index.milvus_uri)
    champ = models.alias_version(model.model_name, models.CHAMPION)
    if champ is None or str(champ.version) == str(model.model_version):
        why = "no champion yet" if champ is None else f"v{model.model_version} is already the champion"
        log.info("evaluate_online: %s, nothing to compare", why)
        return OnlineReport(model_version=model.model_version, champion_version=None, compared=False,
                            regression=False, reason=f"{why}: no online comparison", report_uri="")
    world = load_world(snapshot.data_uri)
    metric = cfg.gate.metric
    chal_ranked: dict = {}
    champ_ranked: dict = {}
    chal_q = per_query_metric(cfg, models.load_lrem(model.model_uri), index.collection, world, metric, chal_ranked)
    champ_q = per_query_metric(cfg, models.load_lrem(f"models:/{model.model_name}/{champ.version}"),
                               collection_for(cfg, champ), world, metric, champ_ranked)
    categories = dict(zip(world.queries["query_id"], world.queries["category"]))
    offline = offline_tests(chal_q, champ_q, categories, cfg.gate)
    seed = replay_seed(snapshot.run_key, snapshot.data_md5, cfg.online.seed)
    out = run_dir(snapshot.run_key) / "online"
    result = evaluate_online(cfg, snapshot.data_uri, out, url=None, mlflow_run_id=snapshot.mlflow_run_id, seed=seed)
    clicks = ClickModel.from_config(cfg.online)
    expected = {arm: float(np.mean(list(expected_judged_hit(ranked, world.relevant(), cfg.online.k, clicks).values())))
                for arm, ranked in (("challenger", chal_ranked), ("champion", champ_ranked))}
    tests = {f"offline/{g}": row for g, row in offline.items()}
    tests.update(online_rows(result, cfg.gate, cfg.online.k, sum(r["status"] == TESTED for r in offline.values())))
    primary = f"online/hit_rate_judged@{cfg.online.k}"
    if cfg.gate.sequential and tests.get(primary, {}).get("status") == TESTED:  # pool tonight with earlier nights
        from components.evaluation.sequential import Ledger, sequential_row
        from components.paths import state_path

        row = tests[primary]
        nights = Ledger(state_path("gate", "sequential"), str(champ.version), str(model.model_version)).add(
            snapshot.run_key, row["effect"], row["se"])
        tests[primary] = sequential_row(nights, row, cfg.gate.online_margin)
    headline = {k: float(v) for k, v in (
        ("searches", result["searches"]), ("feedback", result["feedback"]),
        ("interleaving_preference", result["interleaving"].get("preference")),
        *((f"{arm}.{m}", result["table"].get("overall", {}).get(arm, {}).get(m))
          for arm in ("champion", "challenger") for m in ("ctr", "hit_rate_judged", "latency_p95_ms")),
    ) if v is not None}
    ci = {g: {"diff": r["effect"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "challenger": r["challenger"],
              "champion": r["champion"], "n": r["n"]} for g, r in offline.items() if r["status"] == TESTED}
    log.info("evaluate_online: %s; replay seed %d", result["reason"], seed)
    return OnlineReport(model_version=model.model_version, champion_version=str(champ.version), compared=True,
                        regression=bool(result["regression"]), reason=result["reason"],
                        report_uri=f"runs:/{result['mlflow_run_id']}/online/online_report.html",
                        offline_ci=ci, offline_regressions=[], offline_margin=cfg.gate.margin, headline=headline,
                        tests=json_safe({"family": tests, "srm": result["srm"], "replay_seed": seed,
                                         "expected_online_from_offline": expected}))
