"""
### lrem_nightly: train, ship and guard the LREM retriever

Every night: pull the DVC-versioned data and check it (Great Expectations), build
Query-CoT-Item triplets with the teacher and check them, train the LREM model (cold
start, then GRPO with TRL), register it in MLflow as `challenger`, embed the catalog into
a new Milvus collection, evaluate challenger against champion offline, and promote only
when HitRate does not regress.

Wiring only: every task calls a step of `components/` (see `components/pipeline.py`).
Steps hand each other URIs, so any task can be cleared and retried alone.

Run conf (all optional): `{"config": "configs/demo.yaml", "dvc_rev": "<git rev>"}`.
`LREM_EXECUTION=kubernetes` runs each step as `lrem step <name>` in the training image
through KubernetesPodOperator (GPUs for the training tasks); the default runs them in
the worker.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

DEFAULT_CONFIG = os.environ.get("LREM_CONFIG", "configs/demo.yaml")
EXECUTION = os.environ.get("LREM_EXECUTION", "local")
TRAINING_IMAGE = os.environ.get("LREM_IMAGE", "lrem-pipeline:latest")
GPU_STEPS = {"train_cold_start", "train_grpo", "build_index", "evaluate_offline"}
ORDER = [
    "pull_data", "validate_raw", "generate_triplets", "validate_triplets", "train_cold_start", "train_grpo",
    "register_challenger", "build_index", "evaluate_offline", "gate", "promote",
]

default_args = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "execution_timeout": timedelta(hours=12),
}


def _local_task(name: str):
    @task(task_id=name)
    def run_step(ctx: dict | None = None) -> dict:
        from airflow.exceptions import AirflowFailException

        from components.config import load_config
        from components.pipeline import run_step as run_pipeline_step

        context = get_current_context()
        params = context["params"]
        overrides = {"data": {"dvc_rev": params["dvc_rev"]}} if params.get("dvc_rev") else None
        cfg = load_config(params["config"], overrides)
        try:
            return run_pipeline_step(name, cfg, ctx, run_key=context["run_id"])
        except ValueError as exc:
            if name.startswith("validate"):
                # Bad data is not transient: fail at once, no retries, nothing downstream runs.
                raise AirflowFailException(str(exc)) from exc
            raise

    return run_step


def _kubernetes_task(name: str, upstream: str | None):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    ctx_arg = [] if upstream is None else ["--ctx-json", "{{ ti.xcom_pull(task_ids='%s') | tojson }}" % upstream]
    resources = k8s.V1ResourceRequirements(limits={"nvidia.com/gpu": "1"}) if name in GPU_STEPS else None
    return KubernetesPodOperator(
        task_id=name,
        name=f"lrem-{name.replace('_', '-')}",
        image=TRAINING_IMAGE,
        cmds=["lrem"],
        arguments=["--config", "{{ params.config }}", "step", name, *ctx_arg,
                   "--run-key", "{{ run_id }}",
                   "--out", "/airflow/xcom/return.json"],
        do_xcom_push=True,
        container_resources=resources,
        get_logs=True,
    )


@dag(
    dag_id="lrem_nightly",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    doc_md=__doc__,
    tags=["lrem", "retrieval", "training", "nightly"],
    params={
        "config": Param(DEFAULT_CONFIG, type="string", description="pipeline YAML config"),
        "dvc_rev": Param(None, type=["null", "string"], description="git revision of data.dvc (default: HEAD)"),
    },
)
def lrem_nightly():
    if EXECUTION == "kubernetes":
        previous = None
        for name in ORDER:
            op = _kubernetes_task(name, previous.task_id if previous is not None else None)
            if previous is not None:
                previous >> op
            previous = op
        return
    ctx = None
    for name in ORDER:
        ctx = _local_task(name)(ctx) if ctx is not None else _local_task(name)()


lrem_nightly()
