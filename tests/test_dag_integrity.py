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


def test_kubernetes_tasks_pass_each_input_artefact_as_json(monkeypatch, tmp_path):
    """LREM_EXECUTION=kubernetes: one pod a step, `--ctx-json` carrying the XCom of each input's step."""
    import importlib.util
    import json
    import sys
    import types

    import jinja2

    from components.pipeline import STEPS

    made = {}

    class FakePodOperator:  # stands in for KubernetesPodOperator (the provider is not installed here)
        def __init__(self, task_id, arguments, container_resources=None, env_from=None, **kwargs):
            self.task_id, self.arguments, self.resources = task_id, arguments, container_resources
            self.env_from = env_from
            self.upstream: set[str] = set()
            made[task_id] = self

        def __rshift__(self, other):
            other.upstream.add(self.task_id)
            return other

    pod = types.ModuleType("pod")
    pod.KubernetesPodOperator = FakePodOperator
    k8s = types.SimpleNamespace(V1ResourceRequirements=lambda limits: limits,
                                V1EnvFromSource=lambda secret_ref: {"secret_ref": secret_ref},
                                V1SecretEnvSource=lambda name: {"name": name})
    monkeypatch.setitem(sys.modules, "airflow.providers.cncf.kubernetes.operators.pod", pod)
    monkeypatch.setitem(sys.modules, "kubernetes.client", types.SimpleNamespace(models=k8s))
    monkeypatch.setenv("LREM_EXECUTION", "kubernetes")
    monkeypatch.delenv("LREM_RUNTIME_SECRET", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    spec = importlib.util.spec_from_file_location("lrem_nightly_k8s", DAGS_DIR / "lrem_nightly.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))

    assert list(made) == list(STEPS)

    class TI:
        def xcom_pull(self, task_ids):
            return {"artifact": STEPS[task_ids].produces.__name__, "from": task_ids}

    for step in STEPS.values():
        op = made[step.name]
        assert set(step.upstream) <= op.upstream
        assert (op.resources is not None) == step.gpu
        assert op.env_from == [{"secret_ref": {"name": "lrem-runtime"}}]  # credentials from the Secret
        args = op.arguments
        assert args[args.index("step") + 1] == step.name
        if not step.inputs:
            assert "--ctx-json" not in args
            continue
        rendered = jinja2.Environment().from_string(args[args.index("--ctx-json") + 1]).render(ti=TI())
        assert json.loads(rendered) == {up: TI().xcom_pull(up) for up in step.upstream}
