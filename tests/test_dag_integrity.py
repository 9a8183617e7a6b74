"""DAG integrity: every DAG file imports cleanly and follows the team's policies."""

from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parent.parent / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    import os

    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_dag_file_imports_without_errors(dagbag, dag_file):
    errors = {k: v for k, v in dagbag.import_errors.items() if Path(k).name == dag_file.name}
    assert not errors, f"{dag_file.name} failed to import: {errors}"


def test_every_dag_follows_policy(dagbag):
    assert dagbag.dags, "no DAG found"
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.catchup is False, f"{dag_id} must set catchup=False"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_nightly_dag_order(dagbag):
    dag = dagbag.dags["lrem_nightly"]
    expected = ["pull_data", "validate_raw", "generate_triplets", "validate_triplets", "train_cold_start",
                "train_grpo", "register_challenger", "build_index", "evaluate_offline", "gate", "promote"]
    assert sorted(dag.task_ids) == sorted(expected)
    assert dag.max_active_runs == 1
    for upstream, downstream in zip(expected, expected[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids
