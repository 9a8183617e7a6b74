"""``run_experiment``: train, score, compare and report every model row on one split with one budget."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from components.experiment.config import ABLATIONS, DIRECT_GROUP, DIRECT_POOLING, LABELS, MODEL_IDS, ExperimentConfig
from components.experiment.cot_analysis import _evaluate_generated, _train_cot_fit
from components.experiment.data import prepare_data
from components.experiment.lanes import _open_lane, lane_direct, lane_minilm
from components.experiment.mlflow_runs import _child_run, _finish_child, _log_history
from components.experiment.report import markdown_tables, write_markdown
from components.experiment.scoring import _compare_with_direct, per_query_block, score
from components.experiment.tiny_llm import _n_params, backbone_for, grpo_on, train_tiny_llm
from components.paths import REPO_ROOT, state_path


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"


def _display_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return Path(path).name


def _phrasing_report(payload: dict, data) -> dict | None:
    """Held-out phrasing apart, every row (components/evaluation/phrasing.py); None when the eval
    queries record no phrasing (fixed templates, imported data) or no LREM or direct row was run."""
    from components.data.io import read_jsonl
    from components.evaluation.phrasing import experiment_report, has_phrasing

    hits = payload["per_query"]["hit_rate"]
    if not any(m in hits for m in ("lrem_rl", "lrem_cs")) or not any(m in hits for m in DIRECT_GROUP):
        return None
    wanted = set(data.eval_ids)
    queries = [q for q in read_jsonl(Path(data.data_dir) / "queries.jsonl") if q["query_id"] in wanted]
    return experiment_report(payload, queries) if has_phrasing(queries) else None


def run_experiment(cfg: ExperimentConfig | None = None) -> dict:
    """Train and evaluate every model of ``cfg.models`` on one split with one budget.

    Returns the payload written to ``<output_dir>/<output_name>.json`` plus ``paths``
    (json, md, report) and ``table`` (the markdown result tables).
    """
    import mlflow
    import torch

    from components import tracking
    from components.config import PipelineConfig
    from components.evaluation.metrics import flatten_metrics
    from components.evaluation.report import write_report

    cfg = cfg or ExperimentConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    wanted = list(cfg.models) if cfg.models else list(MODEL_IDS)
    unknown = sorted(set(wanted) - set(MODEL_IDS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: {list(MODEL_IDS)}")
    if cfg.steps < 1 or cfg.batch_size < 2:
        raise ValueError("steps must be >= 1 and batch_size >= 2 (in-batch negatives)")
    t_start = time.perf_counter()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    work = state_path("experiment", "runs", stamp)
    data = prepare_data(cfg, work)

    pc = PipelineConfig()
    pc.tracking.experiment = cfg.mlflow_experiment
    if cfg.mlflow_uri:
        pc.tracking.mlflow_uri = cfg.mlflow_uri
    exp_id = tracking.configure(pc)

    records: dict[str, dict] = {}
    ranked_by: dict[str, dict] = {}
    report_samples: list[dict] = []
    backbone_info: dict = {}

    def base_record(model_id: str, family: str, pooling: str, query_side: str) -> dict:
        return {"id": model_id, "label": LABELS[model_id], "family": family, "pooling": pooling,
                "query_side": query_side, "steps": 0, "batch_size": cfg.batch_size, "learning_rate": None,
                "train_seconds": 0.0, "trained_with": None, "final_train_infonce": None}

    def score_record(rec: dict, items: np.ndarray, queries: np.ndarray, item_s: float, query_s: float) -> dict:
        t2 = time.perf_counter()
        metrics, ranked = score(data, queries, items, cfg)
        search_s = time.perf_counter() - t2
        rec.update(metrics=metrics, item_embed_seconds=item_s, query_embed_seconds=query_s,
                   eval_seconds=item_s + query_s + search_s)
        print(f"[experiment] {rec['label']}: HitRate@{max(cfg.hit_ks)} "
              f"{metrics['overall'].get(f'hit_rate@{max(cfg.hit_ks)}', 0):.4f} "
              f"(train {rec['train_seconds']:.1f}s, eval {rec['eval_seconds']:.1f}s)", flush=True)
        return ranked

    def evaluate(rec: dict, embed_items: Callable[[], np.ndarray], embed_queries: Callable[[], np.ndarray],
                 item_cache: dict | None = None) -> dict:
        t0 = time.perf_counter()
        if item_cache is not None and "emb" in item_cache:
            items, item_s = item_cache["emb"], item_cache["seconds"]
        else:
            items = embed_items()
            item_s = time.perf_counter() - t0
            if item_cache is not None:
                item_cache.update(emb=items, seconds=item_s)
        t1 = time.perf_counter()
        queries = embed_queries()
        query_s = time.perf_counter() - t1
        return score_record(rec, items, queries, item_s, query_s)

    with mlflow.start_run(experiment_id=exp_id, run_name=f"baselines-{stamp}") as parent:
        flat_cfg = {k: (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v)
                    for k, v in asdict(cfg).items() if k not in ("world", "teacher")}
        mlflow.log_params({k: v for k, v in flat_cfg.items() if v is not None})
        mlflow.log_params({"n_triplets": len(data.triplets), "n_items": len(data.item_ids),
                           "n_eval_queries": len(data.eval_ids), "data_dir": _display_path(data.data_dir)})
        mlflow.set_tag("git_commit", _git_commit())

        # The second lane (a process of its own when cfg.workers > 1) trains the MiniLM rows and
        # the direct embedders and hands back embeddings; this process trains the backbone and the
        # LREM, scores everything and logs it to MLflow.
        lane = _open_lane(cfg)
        lane_cfg = dataclasses.replace(cfg, show_progress=False) if cfg.workers > 1 else cfg
        try:
            # 1. BERT-class baseline: all-MiniLM-L6-v2, zero-shot and fine-tuned.
            minilm_wanted = [m for m in ("minilm_zeroshot", "minilm_infonce") if m in wanted]
            minilm_job = lane.apply_async(lane_minilm, (data, lane_cfg, minilm_wanted)) if minilm_wanted else None

            # 2. The pre-trained backbone (shared by every tiny-LLM row; cached across runs).
            bb = None
            if any(m in wanted for m in (*DIRECT_GROUP, "lrem_cs", "lrem_rl", *ABLATIONS)):
                bb = backbone_for(data, cfg)  # its own run in the lrem-backbone experiment when trained
                mlflow.set_tags({"backbone_cache_key": bb.cache_key, "backbone_source": bb.source,
                                 "backbone_version": str(bb.registered_version)})
                backbone_info = {"cache_key": bb.cache_key, "source": bb.source, "version": bb.registered_version,
                                 "summary": {k: v for k, v in (bb.summary or {}).items() if k != "history"}}

            # 3. The backbone as a direct embedder (no reasoning), last-token and mean pooling.
            direct_jobs = {model_id: lane.apply_async(lane_direct, (data, lane_cfg, bb.model_dir, model_id,
                                                                 pooling, work / model_id))
                           for model_id, pooling in DIRECT_POOLING
                           if model_id in wanted}

            # 4. LREM: cold start, then GRPO on it; ablations on the final model.
            if any(m in wanted for m in ("lrem_cs", "lrem_rl", *ABLATIONS)):
                t0 = time.perf_counter()
                with _child_run("lrem_cs"):
                    rec = base_record("lrem_cs", "tiny_llm", "emb_token", "query + generated CoT")
                    model, summary = train_tiny_llm(data, cfg, bb.model_dir, "emb_token", True, work / "lrem",
                                                    log_metrics=tracking.log_metrics_fn())
                    cs_seconds = time.perf_counter() - t0
                    rec.update(params=_n_params(model), steps=summary["steps"], learning_rate=cfg.lr_llm,
                               train_seconds=cs_seconds, final_train_infonce=summary["final_loss"],
                               final_train_sft=summary["final_sft"])
                    train_fit = _train_cot_fit(model, data)
                    rec["train_cot_fit"] = train_fit
                    mlflow.log_metrics({f"train_cot_{k}": v for k, v in train_fit.items() if isinstance(v, float)})
                    ranked_by["lrem_cs"], report_samples = _evaluate_generated(rec, model, data, cfg, evaluate)
                    _finish_child(rec)
                    if "lrem_cs" in wanted:
                        records["lrem_cs"] = rec
                if any(m in wanted for m in ("lrem_rl", *ABLATIONS)):
                    with _child_run("lrem_rl"):
                        rec = base_record("lrem_rl", "tiny_llm", "emb_token", "query + generated CoT")
                        t1 = time.perf_counter()
                        grpo = grpo_on(model, data, cfg, work / "grpo", log_metrics=tracking.log_metrics_fn())
                        rl_seconds = time.perf_counter() - t1
                        rec.update(params=_n_params(model), steps=summary["steps"] + grpo["steps"],
                                   learning_rate=cfg.grpo_lr, train_seconds=cs_seconds + rl_seconds,
                                   final_train_infonce=summary["final_loss"], grpo_steps=grpo["steps"],
                                   grpo_seconds=rl_seconds, grpo_first=grpo["first_rewards"],
                                   grpo_last=grpo["last_rewards"])
                        mlflow.log_text(json.dumps(grpo["history"], indent=1), "grpo_history.json")
                        ranked_by["lrem_rl"], report_samples = _evaluate_generated(rec, model, data, cfg, evaluate)
                        _finish_child(rec)
                        records["lrem_rl"] = rec
                    item_cache: dict = {}
                    for model_id, cots in (("lrem_empty_cot", None), ("lrem_query_cot", data.eval_texts),
                                           ("lrem_teacher_cot", data.teacher_eval_cots)):
                        if model_id not in wanted:
                            continue
                        with _child_run(model_id):
                            rec = base_record(model_id, "tiny_llm", "emb_token", {
                                "lrem_empty_cot": "query, empty CoT", "lrem_query_cot": "query + query as CoT",
                                "lrem_teacher_cot": "query + teacher CoT"}[model_id])
                            rec.update(params=_n_params(model), steps=records["lrem_rl"]["steps"],
                                       learning_rate=cfg.grpo_lr, train_seconds=cs_seconds + rl_seconds,
                                       trained_with="lrem_rl")
                            mlflow.set_tag("trained_in_run", "lrem_rl")
                            ranked_by[model_id] = evaluate(
                                rec, lambda: model.embed_items(data.item_titles, batch_size=cfg.eval_batch_size * 2),
                                lambda cots=cots: model.embed_queries_with_cot(data.eval_texts, cots,
                                                                               batch_size=cfg.eval_batch_size),
                                item_cache)
                            _finish_child(rec)
                            records[model_id] = rec
                del model

            # 5. What the second lane trained: scored and logged here.
            if minilm_job is not None:
                res = minilm_job.get()
                for model_id in minilm_wanted:
                    with _child_run(model_id):
                        rec = base_record(model_id, "bert", "mean", "query")
                        got = res[model_id]
                        rec["params"] = res["params"]
                        if model_id == "minilm_zeroshot":
                            rec["batch_size"] = 0
                        else:
                            _log_history(got["history"])
                            rec.update(steps=got["steps"], learning_rate=cfg.lr_minilm, bf16_autocast=got["bf16"],
                                       train_seconds=got["train_seconds"], final_train_infonce=got["final_loss"])
                        ranked_by[model_id] = score_record(rec, got["items"], got["queries"], got["item_s"],
                                                           got["query_s"])
                        _finish_child(rec)
                        records[model_id] = rec
            for model_id, job in direct_jobs.items():
                got = job.get()
                with _child_run(model_id):
                    rec = base_record(model_id, "tiny_llm", dict(DIRECT_POOLING)[model_id], "query, empty CoT")
                    _log_history(got["history"])
                    rec.update(params=got["params"], steps=got["steps"], learning_rate=cfg.lr_llm,
                               train_seconds=got["train_seconds"], final_train_infonce=got["final_loss"])
                    ranked_by[model_id] = score_record(rec, got["items"], got["queries"], got["item_s"],
                                                       got["query_s"])
                    _finish_child(rec)
                    records[model_id] = rec
        except BaseException:
            lane.terminate()  # a failed or interrupted run does not wait for the other lane
            raise
        else:
            lane.close()
        finally:
            lane.join()

        comparison = _compare_with_direct(records, ranked_by, data, cfg)
        ordered = {m: records[m] for m in MODEL_IDS if m in records}
        payload = {
            "command": cfg.command,
            "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "git_commit": _git_commit(),
            "host": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "workers": max(1, cfg.workers),
                     "cuda": torch.cuda.is_available()},
            "config": {**asdict(cfg), "hit_ks": list(cfg.hit_ks)},
            "data": {"source": ("demo world (WorldConfig seed %d%s), generated into the state dir"
                                % (cfg.world.seed, "" if cfg.world.hard_split == "query" else
                                   ", hard queries split by intent: no training query names an eval query's use, "
                                   "fact or premium brand"))
                     if cfg.data_dir is None else f"data folder {_display_path(data.data_dir)}",
                     "n_items": len(data.item_ids), "n_train_queries": data.n_train_queries,
                     "n_triplets": len(data.triplets), "n_eval_queries": len(data.eval_ids),
                     "n_eval_queries_total": data.n_eval_queries_total},
            "models": ordered,
            "results": {rec["label"]: rec["metrics"] for rec in ordered.values()},
            "comparison": comparison,
            # every model's HitRate@K per eval query, for analyses across runs (experiments/probes/pool_runs.py)
            "per_query": per_query_block(ranked_by, data, max(cfg.hit_ks)),
            "backbone": backbone_info,
            "mlflow": {"experiment": cfg.mlflow_experiment, "parent_run_id": parent.info.run_id},
        }
        phrased = _phrasing_report(payload, data)
        if phrased:
            payload["phrasing"] = phrased
        if cfg.data_dir is not None:
            payload["config"]["data_dir"] = _display_path(data.data_dir)
        payload["wall_seconds"] = time.perf_counter() - t_start

        out_dir = Path(cfg.output_dir)
        if not out_dir.is_absolute():
            out_dir = REPO_ROOT / out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path = out_dir / f"{cfg.output_name}.json"
        md_path = out_dir / f"{cfg.output_name}.md"
        report_dir = work / "report"
        meta = {"command": cfg.command, "git_commit": payload["git_commit"], "steps": cfg.steps,
                "batch_size": cfg.batch_size, "eval_queries": len(data.eval_ids), "catalog_items": len(data.item_ids)}
        write_report(report_dir, payload["results"], title="LREM vs direct-embedding baselines",
                     samples=report_samples, meta=meta)
        payload["wall_seconds"] = time.perf_counter() - t_start
        json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        md_path.write_text(write_markdown(payload))
        for model_id, rec in ordered.items():
            mlflow.log_metrics(flatten_metrics(rec["metrics"], model_id))
        mlflow.log_metric("wall_seconds", payload["wall_seconds"])
        mlflow.log_artifact(str(json_path))
        mlflow.log_artifact(str(md_path))
        mlflow.log_artifacts(str(report_dir), "report")

    if not cfg.keep_models:
        for sub in ("llm_direct_last", "llm_direct_mean", "lrem", "grpo"):
            shutil.rmtree(work / sub, ignore_errors=True)
    table = markdown_tables(payload)
    print(table, flush=True)
    return {**payload, "table": table,
            "paths": {"json": str(json_path), "md": str(md_path), "report": str(report_dir / "index.html")}}
