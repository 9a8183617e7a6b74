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
    # a sharded step also has its plan task and its shard task, mapped over the plan
    sharded = [f"{s.name}_{suffix}" for s in STEPS.values() if s.shards for suffix in ("plan_shards", "shard")]
    from components.evaluation.retest import retest_task_ids  # gate.sequential's branch (test_retest_branch.py)

    assert sorted(dag.task_ids) == sorted(order + sharded + retest_task_ids())
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


def test_kubernetes_tasks_pass_each_input_artefact_as_json(monkeypatch, tmp_path):
    """LREM_EXECUTION=kubernetes: one pod a step (KubernetesPodOperator), `--ctx-json` carrying the
    XCom of each input's step."""
    import json

    import jinja2
    from airflow.dag_processing.dagbag import DagBag

    from components.pipeline import STEPS

    monkeypatch.setenv("LREM_EXECUTION", "kubernetes")
    monkeypatch.delenv("LREM_RUNTIME_SECRET", raising=False)
    monkeypatch.delenv("LREM_CONFIG", raising=False)  # configs/demo.yaml: compute.gpus 1
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "300")  # the provider's first import is slow
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # once, outside the timeout

    bag = DagBag(dag_folder=str(DAGS_DIR / "lrem_nightly.py"))
    assert not bag.import_errors
    dag = bag.dags["lrem_nightly"]

    class TI:
        def xcom_pull(self, task_ids):
            return {"artifact": STEPS[task_ids].produces.__name__, "from": task_ids}

    for step in STEPS.values():
        op = dag.get_task(step.name)
        assert isinstance(op, KubernetesPodOperator) and op.cmds == ["lrem"]
        assert set(step.upstream) <= op.upstream_task_ids
        # the GPUs come from the run's config when the pod is built (without a run: LREM_CONFIG's)
        resources = op.build_pod_request_obj(dry_run=True).spec.containers[0].resources
        gpu = (resources.limits or {}).get("nvidia.com/gpu") if resources else None
        # one GPU a GPU step's pod; the gathering pod of a sharded step only inserts (its shards encode)
        assert gpu == ("1" if step.gpu and not step.shards else None), step.name
        assert [e.secret_ref.name for e in op.env_from] == ["lrem-runtime"]  # credentials from the Secret
        args = op.arguments
        assert args[args.index("step") + 1] == step.name
        if not step.inputs:
            assert "--ctx-json" not in args
            continue
        rendered = jinja2.Environment().from_string(args[args.index("--ctx-json") + 1]).render(ti=TI())
        assert json.loads(rendered) == {up: TI().xcom_pull(up) for up in step.upstream}


def test_sharded_step_maps_its_shard_task_over_the_plan(dagbag):
    """build_index (index.shards): plan -> shard task mapped over the plan (Airflow dynamic task
    mapping, one task instance a shard, each with the step's inputs) -> the gathering task."""
    from airflow.sdk import XComArg

    from components.pipeline import STEPS

    dag = dagbag.dags["lrem_nightly"]
    for step in (s for s in STEPS.values() if s.shards):
        plan, shard = dag.get_task(f"{step.name}_plan_shards"), dag.get_task(f"{step.name}_shard")
        assert shard.is_mapped and not dag.get_task(step.name).is_mapped
        assert plan.task_id in shard.upstream_task_ids
        assert shard.task_id in dag.get_task(step.name).upstream_task_ids
        assert set(step.upstream) <= shard.upstream_task_ids
        previous = list(STEPS)[list(STEPS).index(step.name) - 1]
        assert previous in plan.upstream_task_ids
        mapped_over = shard.op_kwargs_expand_input.value["shard"]
        assert isinstance(mapped_over, XComArg) and mapped_over.operator.task_id == plan.task_id
        partial_inputs = shard.partial_kwargs["op_kwargs"]["inputs"]
        assert {p: a.operator.task_id for p, a in partial_inputs.items()} == dict(step.inputs)
