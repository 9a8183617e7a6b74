"""Steps `evaluate_offline` and `gate`: challenger against champion on the eval queries."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import mlflow

from components import tracking
from components.config import PipelineConfig
from components.data.io import World, load_world
from components.paths import run_dir
from components.registry import models


def evaluate_model(cfg: PipelineConfig, model, collection: str, world: World,
                   n_samples: int = 0) -> tuple[dict, list[dict]]:
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
    relevant = world.relevant()
    metrics = retrieval_metrics(ranked, relevant, dict(zip(qids, queries["category"])),
                                hit_ks=tuple(cfg.eval.hit_ks), precision_k=cfg.eval.precision_k)
    titles = dict(zip(world.catalog["item_id"], world.catalog["title"]))
    samples = []
    seen_categories: set[str] = set()
    for qid, text, cat, cot in zip(qids, texts, queries["category"], cots):
        if len(samples) >= n_samples:
            break
        if cat in seen_categories and len(seen_categories) < 5:
            continue
        seen_categories.add(cat)
        top = ranked[qid][:5]
        samples.append({"query": text, "category": cat, "cot": cot,
                        "top_items": [titles.get(i, i) for i in top],
                        "hits": [i in relevant.get(qid, set()) for i in top]})
    return metrics, samples


def run_evaluate(cfg: PipelineConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    from components.evaluation.metrics import flatten_metrics, mlflow_key
    from components.evaluation.report import write_metrics_table, write_report
    from components.index.server import ensure_server
    from components.index.step import collection_name

    ensure_server(cfg.index.milvus_uri)
    tracking.configure(cfg)
    world = load_world(ctx["data_uri"])
    challenger = models.load_lrem(ctx["model_uri"])
    results: dict[str, dict] = {}
    chal_metrics, samples = evaluate_model(cfg, challenger, ctx["collection"], world, n_samples=10)
    results[f"challenger v{ctx['model_version']}"] = chal_metrics
    champ = models.alias_version(ctx["model_name"], models.CHAMPION)
    champ_metrics, champ_version = None, None
    if champ is not None and str(champ.version) != str(ctx["model_version"]):
        champ_version = str(champ.version)
        champ_collection = champ.tags.get("milvus_collection") or collection_name(cfg, champ_version)
        champ_model = models.load_lrem(f"models:/{ctx['model_name']}/{champ_version}")
        champ_metrics, _ = evaluate_model(cfg, champ_model, champ_collection, world)
        results[f"champion v{champ_version}"] = champ_metrics
    out = run_dir(ctx["run_key"]) / "evaluation"
    meta = {"model": f"{ctx['model_name']} v{ctx['model_version']}", "dvc_rev": ctx.get("dvc_rev"),
            "data_md5": ctx.get("data_md5"), "git_commit": ctx.get("git_commit"), "collection": ctx["collection"],
            "eval_queries": int((world.queries["split"] == "eval").sum())}
    paths = write_report(out, results, title=f"Offline evaluation: {meta['model']}", samples=samples, meta=meta)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    table = write_metrics_table(results)
    print(table)
    with tracking.resume(cfg, ctx["mlflow_run_id"]):
        mlflow.log_metrics(flatten_metrics(chal_metrics, "challenger"))
        if champ_metrics is not None:
            mlflow.log_metrics(flatten_metrics(champ_metrics, "champion"))
        mlflow.log_artifacts(str(out), "evaluation")
    client = mlflow.MlflowClient()
    for key, value in chal_metrics["overall"].items():
        client.set_model_version_tag(ctx["model_name"], ctx["model_version"], mlflow_key(f"offline.{key}"),
                                      f"{value:.4f}")
    return {**ctx, "eval": {"challenger": chal_metrics, "champion": champ_metrics, "champion_version": champ_version,
                            "report": str(paths["html"]),
                            "table": table}}


def run_gate(cfg: PipelineConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    from components.evaluation.gate import decide

    ev = ctx["eval"]
    decision = decide(ev["challenger"], ev["champion"], cfg.gate)
    gate = dataclasses.asdict(decision)
    tracking.configure(cfg)
    with tracking.resume(cfg, ctx["mlflow_run_id"]):
        mlflow.set_tags({"gate.promote": str(decision.promote), "gate.reason": decision.reason})
    print(f"gate: {'PROMOTE' if decision.promote else 'KEEP CHAMPION'}: {decision.reason}")
    return {**ctx, "gate": gate}
