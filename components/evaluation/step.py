"""Steps `evaluate_offline` and `gate`: challenger against champion on the eval queries."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow

from components import tracking
from components.artifacts import (Backbone, DataSnapshot, EvalReport, GateDecision, ItemIndex, OnlineReport,
                                  RegisteredModel)
from components.config import PipelineConfig
from components.data.io import World, load_world
from components.paths import run_dir
from components.registry import models

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"  # {"challenger v<N>": metrics, "champion v<M>": metrics} in the run's evaluation/


def evaluate_model(cfg: PipelineConfig, model, collection: str, world: World,
                   n_samples: int = 0, ranked_out: dict | None = None) -> tuple[dict, list[dict]]:
    """Reason-then-embed every eval query, search the model's collection, score the ranking."""
    from components.evaluation.metrics import retrieval_metrics
    from components.index.collections import search

    queries = world.split("eval")
    texts = queries["text"].tolist()
    embs, cots = model.embed_queries(texts, batch_size=cfg.eval.batch_size)
    depth = max([*cfg.eval.hit_ks, cfg.eval.precision_k])
    ranked_lists = search(cfg.index.milvus_uri, collection, embs, depth)
    qids = queries["query_id"].tolist()
    ranked = dict(zip(qids, ranked_lists))
    if ranked_out is not None:  # per-query rankings, for the paired comparisons (phrasing.py)
        ranked_out.update(ranked)
    relevant = world.relevant()
    metrics = retrieval_metrics(ranked, world.graded(), dict(zip(qids, queries["category"])),  # nDCG: grades
                                hit_ks=tuple(cfg.eval.hit_ks), precision_k=cfg.eval.precision_k)
    from components.evaluation.report import sample_rows

    titles = dict(zip(world.catalog["item_id"], world.catalog["title"]))
    samples = sample_rows(qids, texts, queries["category"].tolist(), cots, ranked, relevant, titles,
                          per_category=max(1, n_samples // 5))[:n_samples]
    return metrics, samples


DIRECT_BASELINE = "direct embedder (same backbone)"


def evaluate_direct(cfg: PipelineConfig, model_dir: str, world: World, ranked_out: dict | None = None) -> dict:
    """The same-backbone direct embedder (no reasoning) on the eval queries, exact cosine search."""
    from components.evaluation.metrics import retrieval_metrics
    from components.evaluation.search import exact_top_k
    from components.model.lrem import LREMModel

    model = LREMModel.load(model_dir)
    queries = world.split("eval")
    items = model.embed_items(world.catalog["title"].tolist(), batch_size=cfg.eval.batch_size * 2)
    embs, _ = model.embed_queries(queries["text"].tolist(), reasoning=False, batch_size=cfg.eval.batch_size)
    top = exact_top_k(embs, items, max([*cfg.eval.hit_ks, cfg.eval.precision_k]))
    ids = world.catalog["item_id"].to_numpy()
    qids = queries["query_id"].tolist()
    ranked = {q: ids[row].tolist() for q, row in zip(qids, top)}
    if ranked_out is not None:
        ranked_out.update(ranked)
    return retrieval_metrics(ranked, world.graded(), dict(zip(qids, queries["category"])),
                             hit_ks=tuple(cfg.eval.hit_ks), precision_k=cfg.eval.precision_k)


def _label(role: str, version: str) -> str:
    """Key of a model's metrics in ``metrics.json`` (and its column in the tables)."""
    return f"{role} v{version}"


def run_evaluate(cfg: PipelineConfig, snapshot: DataSnapshot, model: RegisteredModel, index: ItemIndex,
                 backbone: Backbone | None = None) -> EvalReport:
    from components.evaluation.metrics import OVERALL, flatten_metrics, mlflow_key
    from components.evaluation.report import write_metrics_table, write_report
    from components.index.server import ensure_server
    from components.serving import collection_of

    ensure_server(cfg.index.milvus_uri)
    tracking.configure(cfg)
    world = load_world(snapshot.data_uri)
    challenger = models.load_lrem(model.model_uri)
    results: dict[str, dict] = {}
    ranked_by: dict[str, dict] = {"challenger": {}, "direct": {}}
    chal_metrics, samples = evaluate_model(cfg, challenger, index.collection, world, n_samples=10,
                                           ranked_out=ranked_by["challenger"])
    results[_label("challenger", model.model_version)] = chal_metrics
    champ = models.alias_version(model.model_name, models.CHAMPION)
    champ_metrics, champ_version = None, None
    if champ is not None and str(champ.version) != str(model.model_version):
        champ_version = str(champ.version)
        champ_model = models.load_lrem(f"models:/{model.model_name}/{champ_version}")
        champ_metrics, _ = evaluate_model(cfg, champ_model, collection_of(cfg, champ_version, champ), world)
        results[_label("champion", champ_version)] = champ_metrics
    if backbone is not None and backbone.direct_baseline_dir:
        # not a candidate: the bar a reasoning model must clear, shown beside it
        results[DIRECT_BASELINE] = evaluate_direct(cfg, backbone.direct_baseline_dir, world, ranked_by["direct"])
    out = run_dir(snapshot.run_key) / "evaluation"
    meta = {"model": f"{model.model_name} v{model.model_version}", "dvc_rev": snapshot.dvc_rev,
            "data_md5": snapshot.data_md5, "git_commit": snapshot.git_commit, "collection": index.collection,
            "eval_queries": int((world.queries["split"] == "eval").sum())}
    paths = write_report(out, results, title=f"Offline evaluation: {meta['model']}", samples=samples, meta=meta)
    (out / METRICS_FILE).write_text(json.dumps(results, indent=2))
    if ranked_by["direct"]:  # the lead over the direct embedder, per phrasing group, with paired CIs
        from components.evaluation.phrasing import write_eval_phrasing

        write_eval_phrasing(out, ranked_by, world, max(cfg.eval.hit_ks))
    log.info("offline metrics (eval queries):\n%s", write_metrics_table(results))
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        mlflow.log_metrics(flatten_metrics(chal_metrics, "challenger"))
        if champ_metrics is not None:
            mlflow.log_metrics(flatten_metrics(champ_metrics, "champion"))
        mlflow.log_artifacts(str(out), "evaluation")
    client = mlflow.MlflowClient()
    for key, value in chal_metrics[OVERALL].items():
        client.set_model_version_tag(model.model_name, model.model_version, mlflow_key(f"offline.{key}"),
                                     f"{value:.4f}")
    base = f"runs:/{snapshot.mlflow_run_id}/evaluation"
    return EvalReport(model_version=model.model_version, champion_version=champ_version,
                      metrics_uri=f"{base}/{METRICS_FILE}", report_uri=f"{base}/{Path(paths['html']).name}",
                      headline={k: float(v) for k, v in chal_metrics[OVERALL].items()})


def load_metrics(report: EvalReport) -> tuple[dict, dict | None]:
    """The challenger's and the champion's metrics (None: no champion) of an evaluation, from MLflow."""
    results = mlflow.artifacts.load_dict(report.metrics_uri)
    champion = results[_label("champion", report.champion_version)] if report.champion_version else None
    return results[_label("challenger", report.model_version)], champion


def run_gate(cfg: PipelineConfig, snapshot: DataSnapshot, report: EvalReport, online: OnlineReport) -> GateDecision:
    from components.evaluation.gate import decide
    from components.service.gate import combine

    tracking.configure(cfg)
    challenger, champion = load_metrics(report)
    # offline point estimates, then re-decided on the family of tests (Holm; docs/gate.md)
    decision = combine(decide(challenger, champion, cfg.gate), online, cfg.gate)
    # gate.sequential: a kept challenger is re-tested on the next nights instead of training (retest.py)
    from components.evaluation.retest import record_decision

    decision = record_decision(cfg, snapshot, report, online, decision)
    from components.evaluation.report import write_gate_report

    out = run_dir(snapshot.run_key) / "gate"
    write_gate_report(out, decision)
    (out / "decision.json").write_text(decision.to_json())
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        mlflow.set_tags({"gate.promote": str(decision.promote), "gate.reason": decision.reason[:5000],
                         "gate.deciding_test": str(decision.evidence.get("deciding")),
                         "gate.replay_seed": str(decision.evidence.get("replay_seed"))})
        mlflow.log_artifacts(str(out), "gate")
    log.info("gate: %s: %s", "PROMOTE" if decision.promote else "KEEP CHAMPION", decision.reason)
    return decision
