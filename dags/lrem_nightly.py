"""
### lrem_nightly: train, ship and guard the LREM retriever

Every night: pull the DVC-versioned data and check it (Great Expectations), build
Query-CoT-Item triplets with the teacher and check them, train the LREM model (cold
start, then GRPO with TRL), register it in MLflow as `challenger`, embed the catalog into
a new Milvus collection, evaluate challenger against champion offline, and promote only
when HitRate does not regress.

Wiring only: the tasks, their order and the artefact each one gets come from the step
registry `components/pipeline.py` (table below). Each task returns a small typed artefact
(URIs and scalars, `components/artifacts.py`) as its XCom, so any task can be cleared and
retried alone. A data validation failure fails its task at once, without retries.

Run conf (all optional): `{"config": "configs/demo.yaml", "dvc_rev": "<git rev>", "allow_drift": false}`;
`allow_drift` (true, or a list of bounds such as `["rows"]`) lets an intended change of the data
pass the raw-data gate's drift bounds, recorded in the run's lineage (docs/data-contract.md).
`LREM_EXECUTION=kubernetes` runs each step as `lrem step <name>` in the training image
through KubernetesPodOperator (GPUs and processes from the run's config), its inputs passed as JSON
with `--ctx-json`; the default runs them in the worker. `build_index` encodes the catalog in
`index.shards` parallel tasks first (`build_index_plan_shards` -> `build_index_shard`, mapped
over the plan), then inserts and verifies (docs/scaling.md).

With `gate.sequential` on, a challenger the gate kept (neither vetoed nor clearly better) is
re-tested instead of training a new one: after `validate_raw`, the branch `train_or_retest`
follows `kept_challenger` -> `retest_evaluate_online` -> `retest_gate` -> `retest_promote` (the
same steps on the kept pair, tonight's fresh replay pooled with the earlier nights) while the
pair is pending in `$LREM_HOME/gate/sequential/`, else the training path; the other path is
skipped (`components/evaluation/retest.py`; embedded execution only, where that state dir is).

One run at a time: the scheduler keeps a second run queued (`max_active_runs=1`), and in the
default execution every task holds the pipeline's run lock under `$LREM_HOME/locks/`
(`components/runlock.py`), so that a run the scheduler does not know of (`airflow dags test`,
as `make demo` runs it, or `lrem pipeline`) fails at once, naming the active run, instead of
running beside it. `LREM_SCHEDULE` overrides the schedule (`none`: triggered runs only);
`LREM_FAULT` injects a fault for drills (`components/faults.py`; never in production).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from components.pipeline import STEPS, Step

DEFAULT_CONFIG = os.environ.get("LREM_CONFIG", "configs/demo.yaml")
EXECUTION = os.environ.get("LREM_EXECUTION", "local")
TRAINING_IMAGE = os.environ.get("LREM_IMAGE", "lrem-pipeline:latest")
# the Kubernetes Secret whose keys become the step pods' environment (LREM_MILVUS_TOKEN,
# AWS_ACCESS_KEY_ID, ...; infra/README.md); empty: none
RUNTIME_SECRET = os.environ.get("LREM_RUNTIME_SECRET", "lrem-runtime")
SCHEDULE = os.environ.get("LREM_SCHEDULE", "0 2 * * *")
# the PersistentVolumeClaim holding the runs' scratch for the pods of a sharded step (the shards
# write their files there, the gathering pod reads them); mounted where `run_dir` puts it
SCRATCH_PVC = os.environ.get("LREM_SCRATCH_PVC", "lrem-scratch")
SCRATCH_MOUNT = "/opt/lrem/.lrem/runs"  # <state dir>/runs in the image of infra/Dockerfile
LAST_STEP = list(STEPS)[-1]  # releases the run lock

default_args = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "execution_timeout": timedelta(hours=12),
}


def _wiring_table() -> str:
    rows = ["| task | gets (parameter: artefact of task) | returns |", "| --- | --- | --- |"]
    for step in STEPS.values():
        gets = ", ".join(f"`{param}`: {STEPS[up].produces.__name__} of `{up}`" for param, up in step.inputs.items())
        rows.append(f"| `{step.name}` | {gets or 'the run id'} | {step.produces.__name__} |")
    return "\n".join(rows)


def _shard_task_id(step: Step) -> str:
    return f"{step.name}_shard"


def _shard_plan_task(step: Step, as_env: bool = False):
    """A small task returning the shards of a sharded step for this run's config (what the step's
    shard task is mapped over): ``[0, 1, ...]``, or for pods ``[{"LREM_SHARD": "0"}, ...]``."""

    @task(task_id=f"{step.name}_plan_shards")
    def plan_shards() -> list:
        from components.config import load_config

        shards = range(step.num_shards(load_config(get_current_context()["params"]["config"])))
        return [{"LREM_SHARD": str(i)} for i in shards] if as_env else list(shards)

    return plan_shards


def _local_task(step: Step, sharded: bool = False):
    """A worker task running the step in-process; ``inputs`` maps each parameter to an upstream XCom.
    ``sharded``: the task running ONE shard of a sharded step (mapped over ``shard``)."""

    @task(task_id=_shard_task_id(step) if sharded else step.name, trigger_rule=step.trigger_rule)
    def run_step(inputs: dict[str, dict] | None = None, shard: int | None = None) -> dict:
        from components.pipeline import run_shard as run_pipeline_shard
        from components.pipeline import run_step as run_pipeline_step

        # the registry names each input by its producing step: re-key the XComs the same way
        ctx = {step.inputs[param]: value for param, value in (inputs or {}).items()}

        def body(cfg, context):
            if sharded:
                return run_pipeline_shard(step.name, cfg, shard, ctx)
            return run_pipeline_step(step.name, cfg, ctx, run_key=context["run_id"]).to_dict()

        return _in_worker(body, last=step.name == LAST_STEP and not sharded)

    return run_step


def _in_worker(body, last: bool = False):
    """``body(cfg, context)`` in the worker, holding the run lock (released after it when ``last``).

    Bad data, a bad artefact or config, another active run or an injected fault is not
    transient: the task fails at once, no retries, nothing downstream runs.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from components.artifacts import ArtifactError
    from components.config import ConfigError, load_config
    from components.faults import InjectedFault, inject
    from components.pipeline import run_conf_overrides
    from components.runlock import RunLockError, holding_run_lock
    from components.validation.errors import DataValidationError

    not_transient = (DataValidationError, ArtifactError, ConfigError, RunLockError, InjectedFault)
    context = get_current_context()
    ti = context["ti"]
    params = context["params"]
    try:
        cfg = load_config(params["config"], run_conf_overrides(params))
        with holding_run_lock(context["run_id"], ti.task_id, dag_id=ti.dag_id, last=last,
                              final_try=ti.try_number > ti.max_tries, ends_run=not_transient,
                              run_state=lambda run_id: ti.get_dagrun_state(ti.dag_id, run_id)):
            inject(ti.task_id)
            return body(cfg, context)
    except not_transient as exc:
        raise AirflowFailException(str(exc)) from exc


def _retest_branch(tasks: dict) -> None:
    """gate.sequential: while a kept challenger is pending, re-test it instead of training.

    After ``validate_raw``, the branch ``train_or_retest`` follows either the training path
    (the registry's next step) or ``kept_challenger`` (the kept pair's artefacts: its registered
    version, index and offline evaluation) -> ``retest_evaluate_online`` -> ``retest_gate`` ->
    ``retest_promote`` (the same step functions, the last one releases the run lock); the path
    not taken is skipped (components/evaluation/retest.py)."""
    from components.evaluation import retest

    after = list(STEPS)[list(STEPS).index(retest.BRANCH_AFTER) + 1]

    @task.branch(task_id=retest.BRANCH_TASK)
    def train_or_retest() -> str:
        def body(cfg, context):
            return retest.KEPT_TASK if retest.kept_pair(cfg) is not None else after

        return _in_worker(body)

    @task(task_id=retest.KEPT_TASK)
    def kept_challenger() -> dict:
        from components.artifacts import ArtifactError

        def body(cfg, context):
            record = retest.kept_pair(cfg)
            if record is None:
                raise ArtifactError("no kept challenger is pending any more (gate.sequential): nothing to re-test")
            return retest.kept_context(cfg, record)

        return _in_worker(body)

    def retest_task(name: str):
        @task(task_id=retest.retest_task_id(name))
        def run_retest(kept: dict, done: dict) -> dict:
            """``kept``: the kept night's artefacts; ``done``: tonight's (pull_data, earlier re-test steps)."""
            from components.pipeline import run_step as run_pipeline_step

            ctx = {**kept, **done}
            return _in_worker(lambda cfg, context: run_pipeline_step(name, cfg, ctx,
                                                                     run_key=context["run_id"]).to_dict(),
                              last=name == retest.RETEST_STEPS[-1])

        return run_retest

    branch = train_or_retest()
    tasks[retest.BRANCH_AFTER] >> branch >> tasks[after]
    kept = kept_challenger()
    branch >> kept
    done = {list(STEPS)[0]: tasks[list(STEPS)[0]]}  # tonight's snapshot (its run key, its replay seed)
    previous = kept
    for name in retest.RETEST_STEPS:
        current = retest_task(name)(kept, dict(done))
        previous >> current
        done[name] = current
        previous = current


def pod_gpus(step: Step, cfg, shard_task: bool = False) -> int:
    """GPUs of a step's pod for a run's config: ``compute.gpus`` for a multi-process step
    (training), one for any other GPU step (0 when ``compute.gpus`` is 0; a shard encodes on one,
    the gathering task of a sharded step needs none), none for a CPU step."""
    if not step.gpu:
        return 0
    if step.multi_process:
        return int(cfg.compute.gpus)
    return min(int(cfg.compute.gpus), 1 if shard_task or not step.shards else 0)


_POD_OPERATOR = None


def _pod_operator():
    """KubernetesPodOperator whose GPU request comes from the RUN's config (its ``config`` param),
    read when the pod is built at run time in the worker, as the shard plan reads the shard count.
    Built lazily: the provider's import is slow, and the default execution does not need it."""
    global _POD_OPERATOR
    if _POD_OPERATOR is not None:
        return _POD_OPERATOR
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    class LremPodOperator(KubernetesPodOperator):
        def __init__(self, *, lrem_step: str, lrem_shard_task: bool = False, **kwargs):
            super().__init__(**kwargs)
            self.lrem_step = lrem_step
            self.lrem_shard_task = lrem_shard_task

        def build_pod_request_obj(self, context=None, *, dry_run: bool = False):
            from components.config import load_config

            params = (context or {}).get("params") or {}
            # without a run (a dry run): the deployment's config
            gpus = pod_gpus(STEPS[self.lrem_step], load_config(params.get("config") or DEFAULT_CONFIG),
                            self.lrem_shard_task)
            self.container_resources = k8s.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}) if gpus else None
            return super().build_pod_request_obj(context, dry_run=dry_run)

    _POD_OPERATOR = LremPodOperator
    return _POD_OPERATOR


def _kubernetes_task(step: Step, shard_plan=None):
    """A pod running ``lrem step NAME --ctx-json {producer: artefact, ...}`` in the training image.

    Its GPUs (:func:`pod_gpus`) and, for a training step, its processes come from the run's
    config at run time: the operator reads ``compute.gpus`` when it builds the pod, and the pod
    runs ``lrem step NAME --launch``, which reruns itself under ``accelerate launch``, one process
    a GPU, when the config gives it more than one. A sharded step (``shard_plan``: the XCom of its
    plan task) is a pod per shard (``$LREM_SHARD``) mapped over the plan, then the step's own pod;
    they share the run's scratch, the PersistentVolumeClaim ``LREM_SCRATCH_PVC``
    (``infra/k8s/scratch-pvc.yaml``) mounted where ``run_dir`` puts it."""
    from kubernetes.client import models as k8s

    operator = _pod_operator()
    ctx_arg = []
    if step.upstream:
        pulls = ", ".join(f"'{up}': ti.xcom_pull(task_ids='{up}')" for up in step.upstream)
        ctx_arg = ["--ctx-json", "{{ {%s} | tojson }}" % pulls]
    launch = ["--launch"] if step.multi_process else []
    env_from = [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=RUNTIME_SECRET))] if RUNTIME_SECRET else None
    scratch = {}
    if step.shards and SCRATCH_PVC:
        scratch = dict(
            volumes=[k8s.V1Volume(name="run-scratch", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                claim_name=SCRATCH_PVC))],
            volume_mounts=[k8s.V1VolumeMount(name="run-scratch", mount_path=SCRATCH_MOUNT)],
        )
    kwargs = dict(
        image=TRAINING_IMAGE,
        cmds=["lrem"],
        arguments=["--config", "{{ params.config }}",
                   "--allow-drift", "{{ 'all' if params.allow_drift is sameas true else (params.allow_drift or []) | join(',') }}",
                   "step", step.name, *launch, *ctx_arg,
                   "--run-key", "{{ run_id }}",
                   "--out", "/airflow/xcom/return.json"],
        do_xcom_push=True,
        env_from=env_from,
        trigger_rule=step.trigger_rule,
        get_logs=True,
        **scratch,
    )
    if shard_plan is not None:
        return operator.partial(task_id=_shard_task_id(step), name=f"lrem-{step.name.replace('_', '-')}-shard",
                                lrem_step=step.name, lrem_shard_task=True, **kwargs).expand(env_vars=shard_plan)
    return operator(task_id=step.name, name=f"lrem-{step.name.replace('_', '-')}", lrem_step=step.name, **kwargs)


@dag(
    dag_id="lrem_nightly",
    schedule=None if SCHEDULE.lower() == "none" else SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    doc_md=f"{__doc__}\n{_wiring_table()}\n",
    tags=["lrem", "retrieval", "training", "nightly"],
    params={
        "config": Param(DEFAULT_CONFIG, type="string", description="pipeline YAML config"),
        "dvc_rev": Param(None, type=["null", "string"], description="git revision of data.dvc (default: HEAD)"),
        "allow_drift": Param(False, type=["boolean", "array"],
                             description="drift bounds of the raw-data gate this run may exceed: true (all) or "
                                         "a list, e.g. [\"rows\"] (docs/data-contract.md)"),
    },
)
def lrem_nightly():
    tasks = {}  # step name -> its task (its XCom is the step's artefact)
    previous = None
    for step in STEPS.values():
        shards = None  # a sharded step: its shard tasks, mapped over the plan, run before its own task
        if step.shards:
            plan = _shard_plan_task(step, as_env=EXECUTION == "kubernetes")()
            if previous is not None:
                previous >> plan
        if EXECUTION == "kubernetes":
            if step.shards:
                shards = _kubernetes_task(step, shard_plan=plan)
            tasks[step.name] = _kubernetes_task(step)
            for up in step.upstream:
                tasks[up] >> tasks[step.name]
                if shards is not None:
                    tasks[up] >> shards
        else:
            # e.g. gate gets {"snapshot": <XCom of pull_data>, "report": <XCom of evaluate_offline>}
            inputs = {param: tasks[up] for param, up in step.inputs.items()}
            if step.shards:
                shards = _local_task(step, sharded=True).partial(inputs=inputs).expand(shard=plan)
            tasks[step.name] = _local_task(step)(inputs) if inputs else _local_task(step)()
        if shards is not None:
            shards >> tasks[step.name]
        if previous is not None:  # the registry's order: a step starts when the one before it succeeded
            previous >> tasks[step.name]
        previous = tasks[step.name]
    if EXECUTION != "kubernetes":  # the ledger of kept pairs lives in the worker's state dir
        _retest_branch(tasks)


lrem_nightly()
