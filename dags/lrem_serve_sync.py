"""
### lrem_serve_sync: serving follows MLflow's `champion`, within a minute

A continuous DAG (one run at a time, the next starts when one ends). Its sensor polls
the MLflow registry every 10 seconds and fires when the Milvus serving alias does not
point at the collection of the version holding `champion` (an engineer promoted or
rolled back in the MLflow UI, or a run of `lrem_nightly` promoted). The `sync` task then
verifies the target collection (exists, row count equals the catalog, a probe search
answers), moves the serving alias with the shared serving function, and records the move
(who, from, to, when) on the model versions and in MLflow (`lrem history`). A target that
fails verification is never served: the task fails and the alias stays.

Why a polling sensor: it works with every MLflow store (the embedded SQLite store has no
server to send events), sees changes from the UI, the CLI and the API alike, and reacts
within poke_interval (10 s) + task start-up, well inside 60 s. MLflow's model-registry
webhooks need a running `mlflow server` with a reachable receiver and fire only while that
server is up; an Airflow asset watcher needs a message queue MLflow does not publish to.
The sensor times out (soft fail) every 50 minutes so each run stays short in the UI.

Run conf (optional): `{"config": "configs/demo.yaml"}`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

DEFAULT_CONFIG = os.environ.get("LREM_CONFIG", "configs/demo.yaml")
POKE_SECONDS = 10

default_args = {
    "owner": "ml-platform",
    "retries": 1,
    "retry_delay": timedelta(seconds=15),
}


def _cfg():
    from components.config import load_config

    return load_config(get_current_context()["params"]["config"])


@dag(
    dag_id="lrem_serve_sync",
    schedule="@continuous",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    doc_md=__doc__,
    tags=["lrem", "serving", "registry"],
    params={"config": Param(DEFAULT_CONFIG, type="string", description="pipeline YAML config")},
)
def lrem_serve_sync():
    @task.sensor(task_id="wait_for_champion_change", poke_interval=POKE_SECONDS, timeout=50 * 60, mode="poke",
                 soft_fail=True)
    def wait_for_champion_change():
        from airflow.sdk.bases.sensor import PokeReturnValue

        from components.service.audit import needs_sync

        change = needs_sync(_cfg())
        return PokeReturnValue(is_done=change is not None, xcom_value=change)

    @task(task_id="verify_and_sync")
    def verify_and_sync(change: dict) -> dict:
        from components.service.audit import sync

        ti = get_current_context()["ti"]
        result = sync(_cfg(), actor=f"lrem_serve_sync DAG (run {ti.run_id})")
        return {k: v for k, v in result.items() if k != "verified"} | {"observed": change}

    verify_and_sync(wait_for_champion_change())


lrem_serve_sync()
