"""Serving follows the registry, verified and audited: serve-sync, history, rollback.

Every move of an alias that decides what users are served (MLflow ``champion``, the
Milvus serving alias) is recorded twice:

- on the model versions involved, as a tag ``audit.<event id>`` whose value is a JSON
  object ``{event, kind, alias, from_version, to_version, from_collection, to_collection,
  actor, reason, when}`` (both the version moved from and the version moved to carry it);
- in MLflow, as a run of the experiment ``<tracking.experiment>-serving-audit`` with the
  same fields as tags and the JSON as an artifact.

``lrem history`` prints the trail (newest last), ``lrem rollback [--to VERSION]`` moves
``champion`` back (default: the champion before the current one) and makes serving follow
at once.

Before the serving alias is moved the target collection is verified (:func:`verify_collection`):
it exists, its row count equals the catalog's (the snapshot the version was trained on,
when known), and a probe search answers with the probe item itself first. A collection
that fails is never served; the alias stays where it was.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import time
import uuid
from typing import Any

from components import tracking
from components.config import PipelineConfig
from components.registry import models

log = logging.getLogger(__name__)

AUDIT_PREFIX = "audit."


class VerificationError(RuntimeError):
    """The target collection is missing, incomplete or does not answer a search."""


def default_actor(command: str) -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{command} ({user}@{socket.gethostname()})"


def _client(cfg: PipelineConfig):
    import mlflow

    tracking.configure(cfg)
    return mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri, registry_uri=cfg.tracking.mlflow_uri)


def collection_for(cfg: PipelineConfig, mv) -> str:
    from components.serving import collection_of

    return collection_of(cfg, mv.version, mv)


def expected_rows(cfg: PipelineConfig, mv) -> int | None:
    """Items in the catalog of the snapshot the version was trained on (run tag ``data_uri``), if known."""
    from components.data import schema

    client = _client(cfg)
    try:
        run_id = mv.tags.get("mlflow_run_id") or mv.run_id
        data_uri = client.get_run(run_id).data.tags.get("data_uri") if run_id else None
    except Exception:
        data_uri = None
    if not data_uri:
        return None
    path = f"{data_uri}/{schema.CATALOG_FILE}"
    try:
        with open(path, encoding="utf-8") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return None


def verify_collection(cfg: PipelineConfig, collection: str, rows_expected: int | None) -> dict[str, Any]:
    """Exists, row count equals the catalog's, a probe search finds the probe item. Raises VerificationError."""
    from components.index.collections import milvus_client

    with milvus_client(cfg.index.milvus_uri) as client:
        if collection not in client.list_collections():
            raise VerificationError(f"collection {collection} does not exist")
        rows = int(client.get_collection_stats(collection)["row_count"])
        if rows <= 0:
            raise VerificationError(f"collection {collection} is empty")
        if rows_expected is not None and rows != rows_expected:
            raise VerificationError(f"collection {collection} holds {rows} rows, the catalog {rows_expected}: "
                                    "half-built or built from other data")
        state = client.get_load_state(collection).get("state")
        if getattr(state, "name", str(state)) != "Loaded":
            client.load_collection(collection)
        probe = client.query(collection, filter="", limit=1, output_fields=["item_id", "embedding"])
        if not probe:
            raise VerificationError(f"collection {collection} returned no row to probe with")
        hits = client.search(collection, data=[list(probe[0]["embedding"])], limit=1, anns_field="embedding",
                             output_fields=["item_id"])
        if not hits or not hits[0] or str(hits[0][0].id) != str(probe[0]["item_id"]):
            raise VerificationError(f"probe search on {collection} did not find its own probe item")
    return {"collection": collection, "rows": rows, "rows_expected": rows_expected, "probe": "ok"}


def record_move(cfg: PipelineConfig, kind: str, alias: str, from_version: str | None, to_version: str | None,
                from_collection: str | None, to_collection: str | None, actor: str, reason: str = "") -> dict:
    """Write one alias move to the model versions' tags and to an MLflow audit run."""
    import mlflow

    client = _client(cfg)
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1e9)) + f".{now % 10**9:09d}"
    event = {"event": f"{stamp}-{uuid.uuid4().hex[:6]}",  # sorts in time order
             "kind": kind, "alias": alias, "from_version": from_version, "to_version": to_version,
             "from_collection": from_collection, "to_collection": to_collection, "actor": actor,
             "reason": reason[:1000],
             "when": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now / 1e9)) + f".{now // 10**6 % 1000:03d}Z"}
    value = json.dumps(event, sort_keys=True)
    for version in {v for v in (from_version, to_version) if v}:
        try:
            client.set_model_version_tag(cfg.tracking.model_name, str(version), AUDIT_PREFIX + event["event"], value)
        except Exception as exc:  # a version deleted since: the MLflow run still has it
            log.warning("cannot tag v%s with the audit event: %s", version, exc)
    name = f"{cfg.tracking.experiment}-serving-audit"
    exp = client.get_experiment_by_name(name)
    if exp is None:
        from components.paths import default_mlflow_artifacts

        location = default_mlflow_artifacts().as_uri() if cfg.tracking.mlflow_uri.startswith("sqlite:") else None
        try:
            exp_id = client.create_experiment(name, artifact_location=location)
        except Exception:
            exp_id = client.get_experiment_by_name(name).experiment_id
    else:
        exp_id = exp.experiment_id
    run = client.create_run(exp_id, run_name=f"{kind} {from_version or '-'} -> {to_version or '-'}",
                            tags={f"audit.{k}": str(v) for k, v in event.items() if v is not None})
    client.log_text(run.info.run_id, value, "audit_event.json")
    client.set_terminated(run.info.run_id)
    log.info("audit: %s", value)
    return event


def history(cfg: PipelineConfig) -> list[dict[str, Any]]:
    """Every recorded alias move, oldest first (from the model versions' audit tags)."""
    client = _client(cfg)
    events: dict[str, dict] = {}
    for mv in client.search_model_versions(f"name = '{cfg.tracking.model_name}'"):
        for key, value in mv.tags.items():
            if key.startswith(AUDIT_PREFIX):
                try:
                    events[key[len(AUDIT_PREFIX):]] = json.loads(value)
                except json.JSONDecodeError:
                    continue
    return sorted(events.values(), key=lambda e: e["event"])


def needs_sync(cfg: PipelineConfig) -> dict[str, Any] | None:
    """What the serve-sync sensor checks: {champion, target, serving} when the serving alias lags, else None."""
    from components.index.collections import alias_target

    _client(cfg)
    champ = models.alias_version(cfg.tracking.model_name, models.CHAMPION)
    if champ is None:
        return None
    target = collection_for(cfg, champ)
    serving = alias_target(cfg.index.milvus_uri, cfg.index.serving_alias)
    return None if serving == target else {"champion": str(champ.version), "target": target, "serving": serving}


def _version_of_collection(cfg: PipelineConfig, collection: str | None) -> str | None:
    if not collection:
        return None
    mv = models.find_version_by_tag(cfg.tracking.model_name, "milvus_collection", collection)
    if mv is not None:
        return str(mv.version)
    prefix = cfg.index.collection_prefix
    return collection[len(prefix):] if collection.startswith(prefix) else None


def sync(cfg: PipelineConfig, actor: str | None = None, attempts: int = 3) -> dict[str, Any]:
    """Verify the champion's collection, then move the serving alias to it (audited).

    Calls :func:`components.serving.sync_serving_alias` (the one function that moves the
    serving alias) only after the champion's collection passes :func:`verify_collection`;
    if ``champion`` moved while verifying, verifies again.
    """
    from components.index.collections import alias_target
    from components.index.server import ensure_server
    from components.serving import sync_serving_alias

    actor = actor or default_actor("lrem serve-sync")
    _client(cfg)
    ensure_server(cfg.index.milvus_uri)
    try:
        observe_champion(cfg, actor)
    except Exception as exc:  # the trail is best effort; serving must still follow
        log.warning("could not record the observed champion move: %s", exc)
    for _ in range(attempts):
        champ = models.alias_version(cfg.tracking.model_name, models.CHAMPION)
        if champ is None:
            raise RuntimeError(f"registered model {cfg.tracking.model_name!r} has no 'champion' alias yet")
        target = collection_for(cfg, champ)
        before = alias_target(cfg.index.milvus_uri, cfg.index.serving_alias)
        if before == target:
            return {"champion_version": str(champ.version), "alias": cfg.index.serving_alias, "collection": target,
                    "previous": before, "moved": False}
        verified = verify_collection(cfg, target, expected_rows(cfg, champ))
        again = models.alias_version(cfg.tracking.model_name, models.CHAMPION)
        if again is None or str(again.version) != str(champ.version):
            continue  # champion moved while we verified: verify the new one
        result = sync_serving_alias(cfg)
        if result["collection"] != target:
            continue
        from_version = _version_of_collection(cfg, before)
        record_move(cfg, "serving_alias", cfg.index.serving_alias, from_version, str(champ.version), before, target,
                    actor, reason=f"follow MLflow champion v{champ.version}; verified {verified['rows']} rows + probe")
        return {**result, "moved": True, "verified": verified}
    raise RuntimeError("champion kept moving while serve-sync verified its collection; try again")


def previous_champion(cfg: PipelineConfig, current: str) -> str | None:
    """The champion before ``current``: from the audit trail, else the newest older version with a collection."""
    for event in reversed(history(cfg)):
        if event["to_version"] == current and event["from_version"] and event["from_version"] != current:
            return event["from_version"]
    client = _client(cfg)
    older = sorted((int(mv.version) for mv in client.search_model_versions(f"name = '{cfg.tracking.model_name}'")
                    if int(mv.version) < int(current) and mv.tags.get("milvus_collection")), reverse=True)
    return str(older[0]) if older else None


def rollback(cfg: PipelineConfig, to: str | None = None, actor: str | None = None) -> dict[str, Any]:
    """Move ``champion`` to ``to`` (default: the previous champion), verified, and make serving follow."""
    actor = actor or default_actor("lrem rollback")
    client = _client(cfg)
    name = cfg.tracking.model_name
    champ = models.alias_version(name, models.CHAMPION)
    current = str(champ.version) if champ is not None else None
    target = str(to) if to is not None else (previous_champion(cfg, current) if current else None)
    if target is None:
        raise RuntimeError("no version to roll back to (no previous champion recorded); pass --to VERSION")
    if target == current:
        raise RuntimeError(f"v{target} is already the champion")
    mv = client.get_model_version(name, target)  # raises for an unknown version
    collection = collection_for(cfg, mv)
    verify_collection(cfg, collection, expected_rows(cfg, mv))  # never roll back onto a broken collection
    started = time.monotonic()
    models.set_alias(name, models.CHAMPION, target)
    record_move(cfg, "champion", models.CHAMPION, current, target,
                collection_for(cfg, champ) if champ is not None else None, collection, actor,
                reason=f"rollback from v{current} to v{target}")
    served = sync(cfg, actor=actor)
    return {"from_version": current, "to_version": target, "serving": served,
            "seconds": round(time.monotonic() - started, 3)}


def observe_champion(cfg: PipelineConfig, actor: str) -> dict[str, Any] | None:
    """Record a champion move made outside lrem (the MLflow UI): the serving alias is behind the champion."""
    from components.index.collections import alias_target

    champ = models.alias_version(cfg.tracking.model_name, models.CHAMPION)
    if champ is None:
        return None
    before = alias_target(cfg.index.milvus_uri, cfg.index.serving_alias)
    target = collection_for(cfg, champ)
    if before == target:
        return None
    from_version = _version_of_collection(cfg, before)
    last = next((e for e in reversed(history(cfg)) if e["kind"] == "champion"), None)
    if last is not None and last["to_version"] == str(champ.version):
        return None  # lrem moved it (rollback/promote) and recorded it already
    return record_move(cfg, "champion", models.CHAMPION, from_version, str(champ.version), before, target,
                       actor="MLflow registry (alias set outside lrem, e.g. the UI)",
                       reason=f"observed by {actor}")
