"""The end-of-demo summary: metrics, registered versions and aliases, serving collection."""

from __future__ import annotations

import json

from components import tracking
from components.config import PipelineConfig
from components.paths import state_path


def _print_lead(report_dir) -> None:
    """The shipped model's lead over its same-backbone direct embedder, with paired CIs (hard
    categories; in-pattern vs held-out phrasing where the data records it)."""
    from components.evaluation.phrasing import EVAL_FILE, lead_line

    path = report_dir / f"{EVAL_FILE}.json"
    if not path.exists():
        return
    report = json.loads(path.read_text())
    lines = [line for group in ("hard", "hard | in-pattern", "hard | held-out")
             if (line := lead_line(report, group))]
    if lines:
        print(f"\nLREM minus its direct embedder, HitRate@{report.get('k')} (paired bootstrap; "
              f"{report_dir / (EVAL_FILE + '.md')}):")
        for line in lines:
            print(f"  {line}")


def print_summary(cfg: PipelineConfig) -> None:
    import mlflow

    from components.evaluation.report import write_metrics_table
    from components.index.collections import alias_target, collection_row_count
    from components.index.server import ensure_server
    from components.serving import collection_of

    tracking.configure(cfg)
    client = mlflow.MlflowClient()
    name = cfg.tracking.model_name
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    print(f"\n=== LREM nightly: summary ({cfg.name}) ===")
    if not versions:
        print(f"no version of {name} is registered yet")
        return
    latest = versions[-1]
    run = client.get_run(latest.run_id)
    report_dir = state_path("runs", run.data.tags.get("lrem_run_key", "?"), "evaluation")
    if (report_dir / "metrics.json").exists():
        print("\nOffline metrics of the latest run (eval queries):")
        print(write_metrics_table(json.loads((report_dir / "metrics.json").read_text())))
        print(f"report: {report_dir / 'index.html'}")
    _print_lead(report_dir)
    if "gate.reason" in run.data.tags:
        verdict = "promoted" if run.data.tags.get("gate.promote") == "True" else "not promoted"
        print(f"gate: {verdict}: {run.data.tags['gate.reason']}")
    model = client.get_registered_model(name)
    aliases = model.aliases or {}
    print(f"\nRegistered model {name}:")
    for v in versions:
        names = [a for a, ver in aliases.items() if str(ver) == str(v.version)]
        print(f"  v{v.version}  aliases={names or '-'}  collection={collection_of(cfg, v.version, v)}  "
              f"gate={v.tags.get('gate', '-')}  dvc_rev={v.tags.get('dvc_rev', '-')}  data_md5={v.tags.get('data_md5', '-')}")
    print(f"\nLatest version: v{latest.version}, aliases {[a for a, ver in aliases.items() if str(ver) == str(latest.version)]}")
    ensure_server(cfg.index.milvus_uri)
    serving = alias_target(cfg.index.milvus_uri, cfg.index.serving_alias)
    rows = collection_row_count(cfg.index.milvus_uri, serving) if serving else 0
    print(f"Milvus ({cfg.index.milvus_uri}): alias {cfg.index.serving_alias} -> {serving} ({rows} rows)")
    store = cfg.tracking.mlflow_uri
    print(f"\nOpen the MLflow UI on the local store (then http://127.0.0.1:5000):\n"
          f"  make mlflow-ui    # = .venv/bin/mlflow ui --backend-store-uri {store} --port 5000")
