"""Steps `register_challenger` and `promote`."""

from __future__ import annotations

import logging

import mlflow

from components import tracking
from components.artifacts import DataSnapshot, GateDecision, PromotionResult, RegisteredModel, TrainedModel, TripletSet
from components.config import PipelineConfig
from components.paths import run_dir
from components.registry import models

log = logging.getLogger(__name__)


def run_register(cfg: PipelineConfig, snapshot: DataSnapshot, triplets: TripletSet,
                 trained: TrainedModel) -> RegisteredModel:
    """Log the trained model as a pyfunc, register a version, alias it `challenger`.

    A retried task finds the version it registered before (tagged with the run key)
    instead of registering a second one.
    """
    name = cfg.tracking.model_name
    tracking.configure(cfg)
    existing = models.find_version_by_tag(name, "run_key", snapshot.run_key)
    if existing is None:
        with tracking.resume(cfg, snapshot.mlflow_run_id):
            local = tracking.download(trained.model_uri, run_dir(snapshot.run_key) / "register")
            info = models.log_lrem_model(local)
            # the run key goes on the version as it is created (one registry call): a task killed
            # right after registering is found again by its retry, never registered twice
            version = str(mlflow.register_model(info.model_uri, name, tags={"run_key": snapshot.run_key}).version)
    else:
        version = str(existing.version)
    lineage = {"dvc_rev": snapshot.dvc_rev, "data_md5": snapshot.data_md5, "git_commit": snapshot.git_commit,
               "n_triplets": triplets.n_triplets, "mlflow_run_id": snapshot.mlflow_run_id,
               "run_key": snapshot.run_key, "pipeline": cfg.name}
    client = mlflow.MlflowClient()
    for key, value in lineage.items():
        client.set_model_version_tag(name, version, key, str(value))
    models.set_alias(name, models.CHALLENGER, version)
    log.info("registered %s v%s (alias %s) from %s", name, version, models.CHALLENGER, trained.model_uri)
    return RegisteredModel(model_name=name, model_version=version, model_uri=f"models:/{name}/{version}")


def run_promote(cfg: PipelineConfig, snapshot: DataSnapshot, model: RegisteredModel,
                decision: GateDecision) -> PromotionResult:
    """Move the serving alias (Milvus) and `champion` (MLflow) to the challenger, when the gate says so."""
    from components.serving import collection_of, serve_version

    name, version = model.model_name, model.model_version
    tracking.configure(cfg)
    client = mlflow.MlflowClient()
    if not decision.promote:
        client.set_model_version_tag(name, version, "gate", f"rejected: {decision.reason}")
        champ = models.alias_version(name, models.CHAMPION)
        log.info("not promoted: %s (champion untouched)", decision.reason)
        return PromotionResult(promoted=False, model_name=name, model_version=version,
                               champion_version=str(champ.version) if champ is not None else None,
                               serving_alias=cfg.index.serving_alias,
                               collection=collection_of(cfg, champ.version, champ) if champ is not None else None)
    before = models.alias_version(name, models.CHAMPION)
    served = serve_version(cfg, version)
    models.set_alias(name, models.CHAMPION, version)
    client.set_model_version_tag(name, version, "gate", f"promoted: {decision.reason}")
    _audit_promotion(cfg, snapshot, before, version, served, decision)
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        mlflow.set_tag("promoted", "true")
    log.info("promoted %s v%s to champion; %s -> %s", name, version, served["alias"], served["collection"])
    return PromotionResult(promoted=True, model_name=name, model_version=version, champion_version=version,
                           serving_alias=served["alias"], collection=served["collection"])


def _audit_promotion(cfg: PipelineConfig, snapshot: DataSnapshot, before, version: str, served: dict,
                     decision: GateDecision) -> None:
    """Record the promotion's two alias moves in the audit trail (`lrem history`); never fails the step."""
    try:
        from components.service.audit import collection_for, record_move

        actor = f"lrem_nightly promote (run {snapshot.run_key})"
        prev_version = str(before.version) if before is not None else None
        prev_collection = collection_for(cfg, before) if before is not None else None
        if prev_version != version:
            record_move(cfg, "champion", models.CHAMPION, prev_version, version, prev_collection, served["collection"],
                        actor, reason=f"gate: {decision.reason}")
        if served.get("previous") != served["collection"]:
            from_version = prev_version if served.get("previous") == prev_collection else None
            record_move(cfg, "serving_alias", served["alias"], from_version, version, served.get("previous"),
                        served["collection"], actor, reason="promotion")
    except Exception as exc:  # the audit trail must not undo a promotion that happened
        log.warning("could not record the promotion in the audit trail: %s", exc)
