"""LREM_EXECUTION=kubernetes with a sharded, multi-GPU config: the pod specs KubernetesPodOperator
would submit, rendered for a run (no cluster: the operator builds the V1Pod, nothing is sent).

The shard count, the GPUs and the training processes come from the RUN's config (its ``config``
param), not from the ``LREM_CONFIG`` the DAG was parsed with: a run of another config gets other
pods, and ``lrem step NAME --launch`` starts ``accelerate`` with the config's ``compute.gpus``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
RUN_ID = "scheduled__2026-12-04T02:00:00+00:00"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: test, user: {token: "not-a-secret"}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
"""


@pytest.fixture(scope="module")
def k8s_dag(tmp_path_factory):
    from airflow.dag_processing.dagbag import DagBag

    tmp = tmp_path_factory.mktemp("k8s")
    config = tmp / "sharded.yaml"
    config.write_text("name: sharded\nindex:\n  shards: 3\ncompute:\n  gpus: 4\n")
    (tmp / "kubeconfig").write_text(KUBECONFIG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LREM_EXECUTION", "kubernetes")
        mp.setenv("LREM_CONFIG", str(config))
        mp.setenv("LREM_SCRATCH_PVC", "lrem-scratch")
        mp.delenv("LREM_RUNTIME_SECRET", raising=False)
        mp.setenv("AIRFLOW_HOME", str(tmp / "airflow"))
        mp.setenv("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "300")  # the provider's first import is slow
        import airflow.providers.cncf.kubernetes.operators.pod  # noqa: F401  (imported once, outside the timeout)

        bag = DagBag(dag_folder=str(DAGS_DIR / "lrem_nightly.py"))
        assert not bag.import_errors
        yield bag.dags["lrem_nightly"], config, tmp / "kubeconfig"


class _TI:
    dag_id, run_id, try_number = "lrem_nightly", RUN_ID, 1

    def __init__(self, task_id: str, map_index: int = -1):
        self.task_id, self.map_index = task_id, map_index

    def xcom_pull(self, task_ids, **_):
        return {"artifact": "of", "from": task_ids}


def _render(dag, op, config: Path, kubeconfig: Path, map_index: int = -1) -> dict:
    """The pod spec (as the API would receive it) of ``op`` in a run with ``config``."""
    import jinja2
    from kubernetes.client import ApiClient

    ti = _TI(op.task_id, map_index)
    context = {"params": {"config": str(config)}, "run_id": RUN_ID, "ti": ti, "dag": dag, "task": op}
    op.render_template_fields(context, jinja_env=jinja2.Environment())
    op.config_file = str(kubeconfig)  # a kube config to build against; nothing is sent to it
    return ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context))


def _container(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "base")


def test_plan_task_maps_one_pod_per_shard_from_the_run_config(k8s_dag):
    dag, config, _ = k8s_dag
    plan = dag.get_task("build_index_plan_shards")
    shard = dag.get_task("build_index_shard")
    assert shard.is_mapped and shard.expand_input.value["env_vars"].operator is plan
    assert "register_challenger" in plan.upstream_task_ids
    assert {"pull_data", "register_challenger"} <= shard.upstream_task_ids
    assert "build_index_shard" in dag.get_task("build_index").upstream_task_ids

    # the plan's body as its task runs it: the shard count comes from the run's config
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(plan.python_callable.__globals__, "get_current_context",
                   lambda: {"params": {"config": str(config)}})
        assert plan.python_callable() == [{"LREM_SHARD": "0"}, {"LREM_SHARD": "1"}, {"LREM_SHARD": "2"}]


def test_pod_specs_of_a_sharded_multi_gpu_run(k8s_dag):
    dag, config, kubeconfig = k8s_dag
    shard_op = dag.get_task("build_index_shard")
    shard_pods = [_render(dag, shard_op.unmap({"env_vars": {"LREM_SHARD": str(i)}}), config, kubeconfig, i)
                  for i in range(3)]
    for i, pod in enumerate(shard_pods):
        c = _container(pod)
        assert c["command"] == ["lrem"]
        args = c["args"]
        assert args[:2] == ["--config", str(config)] and args[args.index("step") + 1] == "build_index"
        assert {e["name"]: e["value"] for e in c["env"]} == {"LREM_SHARD": str(i)}
        assert json.loads(args[args.index("--ctx-json") + 1]) == {
            "pull_data": {"artifact": "of", "from": "pull_data"},
            "register_challenger": {"artifact": "of", "from": "register_challenger"}}
        assert args[args.index("--run-key") + 1] == RUN_ID
        assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}  # a shard encodes on one GPU
        assert {"mountPath": "/opt/lrem/.lrem/runs", "name": "run-scratch"} in c["volumeMounts"]
        assert {"name": "run-scratch", "persistentVolumeClaim": {"claimName": "lrem-scratch"}} in pod["spec"]["volumes"]
        assert pod["metadata"]["labels"]["map_index"] == str(i)

    gather = _render(dag, dag.get_task("build_index"), config, kubeconfig)
    c = _container(gather)
    assert "LREM_SHARD" not in {e["name"] for e in c.get("env") or []}
    assert not (c.get("resources") or {}).get("limits")  # gathering only inserts: no GPU
    assert {"mountPath": "/opt/lrem/.lrem/runs", "name": "run-scratch"} in c["volumeMounts"]

    for name in ("train_cold_start", "train_grpo"):  # compute.gpus 4: `lrem step --launch` starts accelerate
        c = _container(_render(dag, dag.get_task(name), config, kubeconfig))
        assert c["command"] == ["lrem"]
        assert c["args"][c["args"].index("step") + 1:c["args"].index("step") + 3] == [name, "--launch"]
        assert c["resources"]["limits"] == {"nvidia.com/gpu": "4"}
    c = _container(_render(dag, dag.get_task("evaluate_offline"), config, kubeconfig))
    assert c["command"] == ["lrem"] and c["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    c = _container(_render(dag, dag.get_task("gate"), config, kubeconfig))
    assert not (c.get("resources") or {}).get("limits")


def test_a_run_of_another_config_gets_its_own_gpus(k8s_dag, tmp_path):
    """The DAG was parsed with LREM_CONFIG's compute.gpus 4; a run whose config says 2 (or 0) gets
    pods of 2 (or none) GPUs: the operator reads the run's config when it builds the pod."""
    dag, _, kubeconfig = k8s_dag
    for gpus, training, one in ((2, {"nvidia.com/gpu": "2"}, {"nvidia.com/gpu": "1"}), (0, None, None)):
        run_config = tmp_path / f"gpus{gpus}.yaml"
        run_config.write_text(f"name: other\nindex:\n  shards: 2\ncompute:\n  gpus: {gpus}\n")
        for name in ("train_cold_start", "train_grpo"):
            c = _container(_render(dag, dag.get_task(name), run_config, kubeconfig))
            assert (c.get("resources") or {}).get("limits") == training
            assert "--launch" in c["args"]
        shard = dag.get_task("build_index_shard").unmap({"env_vars": {"LREM_SHARD": "0"}})
        for op in (dag.get_task("evaluate_offline"), shard):
            assert (_container(_render(dag, op, run_config, kubeconfig)).get("resources") or {}).get("limits") == one
        gather = _container(_render(dag, dag.get_task("build_index"), run_config, kubeconfig))
        assert not (gather.get("resources") or {}).get("limits")


def test_lrem_step_launch_reruns_a_training_step_under_accelerate_with_the_config_gpus(tmp_path, monkeypatch):
    """What the training pods run: `lrem ... step train_grpo --launch` reads compute.gpus from its
    --config and execs `accelerate launch --num_processes <gpus>` on the same command line without
    --launch; with one GPU, inside a launched process, or for a one-process step it runs as is."""
    import sys

    from components import cli, pipeline
    from components.artifacts import TrainedModel

    class Exec(Exception):
        pass

    launched, ran = [], []

    def fake_exec(path, argv):
        launched.append(argv)
        raise Exec

    monkeypatch.setattr(cli.os, "execv", fake_exec)
    monkeypatch.setattr(pipeline, "run_step", lambda name, cfg, ctx, run_key=None:
                        ran.append((name, cfg.compute.gpus)) or TrainedModel(stage="grpo", model_uri="m", steps=1))
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    configs = {}
    for gpus in (1, 4):
        configs[gpus] = tmp_path / f"gpus{gpus}.yaml"
        configs[gpus].write_text(f"name: launch\ncompute:\n  gpus: {gpus}\n")

    argv = ["--config", str(configs[4]), "--allow-drift", "", "step", "train_grpo", "--launch",
            "--ctx-json", '{"pull_data": {}}', "--run-key", "r1", "--out", str(tmp_path / "out.json")]
    with pytest.raises(Exec):
        cli.main(argv)
    assert launched == [[sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "4",
                         "-m", "components.cli", *[a for a in argv if a != "--launch"]]]
    assert ran == []

    monkeypatch.setenv("RANK", "1")  # a process accelerate started: it trains
    assert cli.main(argv) == 0
    monkeypatch.delenv("RANK")
    assert cli.main(["--config", str(configs[1]), "step", "train_grpo", "--launch"]) == 0  # one GPU: one process
    assert cli.main(["--config", str(configs[4]), "step", "evaluate_offline", "--launch"]) == 0  # not multi-process
    assert len(launched) == 1 and [r[0] for r in ran] == ["train_grpo", "train_grpo", "evaluate_offline"]
