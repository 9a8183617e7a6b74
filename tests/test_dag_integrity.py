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


def test_nightly_dag_follows_the_step_registry(dagbag):
    from components.pipeline import STEPS

    dag = dagbag.dags["lrem_nightly"]
    order = list(STEPS)
    assert sorted(dag.task_ids) == sorted(order)
    assert dag.max_active_runs == 1
    for upstream, downstream in zip(order, order[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    for step in STEPS.values():  # every task runs after the steps whose artefacts it takes
        assert set(step.upstream) <= dag.get_task(step.name).upstream_task_ids, step.name


def test_local_tasks_get_the_xcom_of_each_input_step(dagbag):
    from airflow.sdk import XComArg

    from components.pipeline import STEPS

    dag = dagbag.dags["lrem_nightly"]
    for step in STEPS.values():
        inputs = dag.get_task(step.name).op_args[0] if step.inputs else {}
        assert set(inputs) == set(step.inputs), step.name
        for param, producer in step.inputs.items():
            assert isinstance(inputs[param], XComArg) and inputs[param].operator.task_id == producer, (step.name, param)


def test_registry_inputs_come_from_earlier_steps():
    from components.pipeline import STEPS, _check_registry, Step
    from components.artifacts import TripletSet

    _check_registry(STEPS)
    bad = {**STEPS, "early": Step("early", "x:y", TripletSet, {"later": "later"})}
    with pytest.raises(RuntimeError, match="later"):
        _check_registry(bad)
