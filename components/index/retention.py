"""Retention of item collections: the nightly clean-up drops what can no longer be served.

Every model version gets its own collection (``<collection_prefix><version>``), kept for
rollback. Kept: the collection the serving alias points at, any collection another alias
points at, the collections of the MLflow ``champion`` and ``challenger``, and those of the
last ``keep_last_champions`` versions that were ever champion (newest first: a version the
gate promoted, tag ``gate = promoted: ...``, or one the audit trail records as moved to
``champion``). Every other collection with the prefix is dropped, including orphans of
versions that no longer exist. Collections without the prefix are never touched, and the
drop itself goes through the same guard as a rebuild: the serving collection and any aliased
collection are refused, whatever the plan says.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from components import tracking
from components.config import PipelineConfig
from components.registry import models

if TYPE_CHECKING:
    from components.artifacts import DataSnapshot, PromotionResult, RetentionReport

log = logging.getLogger(__name__)

CHAMPION_AUDIT_ALIAS = "champion"


@dataclass
class RetentionPlan:
    """Which prefixed collections stay (with why) and which go."""

    keep: dict[str, list[str]] = field(default_factory=dict)  # collection -> reasons
    drop: list[str] = field(default_factory=list)
    former_champions: list[str] = field(default_factory=list)  # versions, newest first

    def to_dict(self) -> dict[str, Any]:
        return {"keep": self.keep, "drop": self.drop, "former_champions": self.former_champions}


def _was_champion(mv) -> bool:
    if str(mv.tags.get("gate", "")).startswith("promoted"):
        return True
    for key, value in mv.tags.items():
        if not key.startswith("audit."):
            continue
        try:
            event = json.loads(value)
        except (TypeError, ValueError):
            continue
        if event.get("alias") == CHAMPION_AUDIT_ALIAS and str(event.get("to_version")) == str(mv.version):
            return True
    return False


def plan_retention(cfg: PipelineConfig, keep_last_champions: int | None = None) -> RetentionPlan:
    """What :func:`clean_up_collections` would keep and drop, reading MLflow and Milvus only."""
    import mlflow

    from components.index.collections import _all_aliases, _alias_target, milvus_client
    from components.serving import collection_of

    n_keep = cfg.index.keep_last_champions if keep_last_champions is None else keep_last_champions
    if n_keep < 0:
        raise ValueError(f"keep_last_champions must be >= 0, got {n_keep}")
    tracking.configure(cfg)
    name = cfg.tracking.model_name
    client = mlflow.MlflowClient()
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda mv: int(mv.version), reverse=True)
    plan = RetentionPlan()

    def keep(collection: str | None, reason: str) -> None:
        if collection:
            plan.keep.setdefault(collection, []).append(reason)

    for alias in (models.CHAMPION, models.CHALLENGER):
        mv = models.alias_version(name, alias)
        if mv is not None:
            keep(collection_of(cfg, mv.version, mv), f"{alias} v{mv.version}")
    plan.former_champions = [str(mv.version) for mv in versions if _was_champion(mv)]
    for version in plan.former_champions[:n_keep]:
        mv = next(m for m in versions if str(m.version) == version)
        keep(collection_of(cfg, version, mv), f"one of the last {n_keep} champions (v{version})")
    with milvus_client(cfg.index.milvus_uri) as mc:
        keep(_alias_target(mc, cfg.index.serving_alias), f"serving alias {cfg.index.serving_alias}")
        for alias in _all_aliases(mc):
            keep(_alias_target(mc, alias), f"alias {alias}")
        prefixed = sorted(c for c in mc.list_collections() if c.startswith(cfg.index.collection_prefix))
    plan.drop = [c for c in prefixed if c not in plan.keep]
    plan.keep = {c: plan.keep[c] for c in sorted(plan.keep) if c in prefixed}
    return plan


def clean_up_collections(cfg: PipelineConfig, keep_last_champions: int | None = None,
                         dry_run: bool = False) -> dict[str, Any]:
    """Drop the collections :func:`plan_retention` lets go; returns the plan and what was dropped.

    A collection the guard refuses (it became serving or aliased since the plan) is kept
    and reported under ``refused``; nothing that serves is ever dropped.
    """
    from components.index.collections import ProtectedCollectionError, _guard_drop, milvus_client
    from components.index.server import ensure_server

    ensure_server(cfg.index.milvus_uri)
    plan = plan_retention(cfg, keep_last_champions)
    dropped: list[str] = []
    refused: dict[str, str] = {}
    if not dry_run:
        with milvus_client(cfg.index.milvus_uri) as mc:
            for collection in plan.drop:
                try:
                    _guard_drop(mc, collection, cfg.index, set(plan.keep))
                except ProtectedCollectionError as exc:
                    refused[collection] = str(exc)
                    continue
                mc.drop_collection(collection)
                dropped.append(collection)
                log.info("retention: dropped %s", collection)
    return {**plan.to_dict(), "dropped": dropped, "refused": refused, "dry_run": dry_run}


def run_clean_up(cfg: PipelineConfig, snapshot: DataSnapshot, promotion: PromotionResult) -> RetentionReport:
    """Step `clean_up` (nightly, after `promote`): apply retention; the outcome is tagged on the run."""
    import mlflow

    from components.artifacts import RetentionReport

    result = clean_up_collections(cfg)
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        mlflow.log_metric("retention/dropped", float(len(result["dropped"])))
        mlflow.set_tag("retention.dropped", ", ".join(result["dropped"]) or "none")
    return RetentionReport(kept=sorted(result["keep"]), dropped=result["dropped"], refused=result["refused"],
                           keep_last_champions=cfg.index.keep_last_champions)


__all__ = ["RetentionPlan", "clean_up_collections", "plan_retention", "run_clean_up"]
