"""What the pipeline's steps hand each other: small typed artefacts, JSON in and out.

A step takes the config and the artefacts it needs and returns its own. An artefact
holds URIs (snapshot path, ``runs:/`` and ``models:/`` URIs, collection names) and small
scalars only; anything large (metrics tables, reports, models) lives in MLflow and is
referenced by URI. Artefacts cross task boundaries as Airflow XComs and as the JSON files
of ``lrem step --ctx``: :meth:`Artifact.to_dict` writes a plain dict (with the type's name
under ``"artifact"``) and :meth:`Artifact.from_dict` reads one back, failing with an
:class:`ArtifactError` that names the step and the field when a field is missing, unknown
or of the wrong type.
"""

from __future__ import annotations

import dataclasses
import json
import types
from dataclasses import dataclass, field
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

TYPE_KEY = "artifact"
ARTIFACT_TYPES: dict[str, type["Artifact"]] = {}  # every artefact type by name (filled by subclassing)


class ArtifactError(ValueError):
    """An artefact that does not match its type: missing, unknown or mistyped field."""


def _type_name(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _type_name(a) for a in get_args(hint))
    if get_origin(hint) is not None:
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", str(hint))


def _check(hint: Any, value: Any) -> bool:
    """Whether a JSON-decoded ``value`` matches the type ``hint`` (ints pass as floats)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_check(a, value) for a in args)
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_check(args[0], v) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_check(args[0], k) and _check(args[1], v) for k, v in value.items())
    return isinstance(value, hint)


@dataclass(frozen=True)
class Artifact:
    """Base of every step artefact: a frozen dataclass of JSON-safe fields."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ARTIFACT_TYPES[cls.__name__] = cls

    def to_dict(self) -> dict[str, Any]:
        return {TYPE_KEY: type(self).__name__, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any, step: str = "?"):
        """Read an artefact back; ``step`` (the producing step) names it in errors."""
        where = f"step {step}: {cls.__name__}"
        if isinstance(data, Artifact):
            data = data.to_dict()
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: expected a JSON object, got {type(data).__name__}: {data!r:.200}")
        values = dict(data)
        kind = values.pop(TYPE_KEY, cls.__name__)
        if kind != cls.__name__:
            raise ArtifactError(f"{where}: got a {kind} artefact instead")
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ArtifactError(f"{where}: unknown field(s) {unknown}; fields: {sorted(fields)}")
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if name not in values:
                if required:
                    raise ArtifactError(f"{where}: missing field {name!r} ({_type_name(hints[name])})")
                continue
            if not _check(hints[name], values[name]):
                raise ArtifactError(f"{where}: field {name!r} must be {_type_name(hints[name])}, "
                                    f"got {type(values[name]).__name__} {values[name]!r:.200}")
            if hints[name] is float and values[name] is not None:
                values[name] = float(values[name])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str, step: str = "?"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"step {step}: {cls.__name__}: not JSON ({exc})") from None
        return cls.from_dict(data, step)


@dataclass(frozen=True)
class DataSnapshot(Artifact):
    """`pull_data`: the data of this run and its lineage; also the run's identity."""

    run_key: str  # file- and tag-safe key of the pipeline run (scratch folder, MLflow tag)
    mlflow_run_id: str  # the one MLflow run every step of this pipeline run logs into
    data_uri: str  # the snapshot the steps read (a subset of full_data_uri on tiny configs)
    full_data_uri: str
    dvc_rev: str
    data_md5: str
    git_commit: str


@dataclass(frozen=True)
class ValidationReport(Artifact):
    """`validate_raw`, `validate_triplets`: a suite passed (a failing suite raises instead)."""

    suite: str  # "raw" or "triplets"
    expectations: int
    failed: int
    docs_uri: str  # Data Docs in MLflow (runs:/<id>/data_docs/<suite>)


@dataclass(frozen=True)
class TripletSet(Artifact):
    """`generate_triplets`: the teacher's Query-CoT-Item triplets (JSON Lines)."""

    triplets_uri: str
    n_triplets: int


@dataclass(frozen=True)
class Backbone(Artifact):
    """`prepare_backbone`: the pre-trained backbone the LREM starts from, and the direct
    embedder fine-tuned from the same backbone that evaluation compares against."""

    source: str  # "local cache", "registry", "trained", or "checkpoint" (model.base names a HF model)
    model_dir: str  # local backbone directory (or the HF id/dir of model.base)
    cache_key: str  # hash of the pre-training corpus and the backbone config ("" for a checkpoint)
    registered_uri: Optional[str] = None  # models:/lrem-backbone/<version>
    direct_baseline_dir: Optional[str] = None  # the same-backbone direct embedder (cached like the backbone)


@dataclass(frozen=True)
class TrainedModel(Artifact):
    """`train_cold_start`, `train_grpo`: an LREM model directory logged to MLflow."""

    stage: str  # "cold_start" or "grpo"
    model_uri: str  # runs:/<id>/<stage>_model
    steps: int


@dataclass(frozen=True)
class RegisteredModel(Artifact):
    """`register_challenger`: a registered version, aliased `challenger`."""

    model_name: str
    model_version: str
    model_uri: str  # models:/<name>/<version>


@dataclass(frozen=True)
class ItemIndex(Artifact):
    """`build_index`: the catalog embedded into a Milvus collection for one model version."""

    collection: str
    rows: int
    model_version: str


@dataclass(frozen=True)
class CacheWarmup(Artifact):
    """`warm_cache`: the head queries' CoTs and embeddings precomputed for one model version."""

    model_version: str
    cache_uri: str  # runs:/<id>/serving_cache/v<N>/cot_cache.npz (also the version's serving_cache_uri tag)
    entries: int
    source: str  # "event_store" or "training_queries"
    seconds: float
    collection: str


@dataclass(frozen=True)
class EvalReport(Artifact):
    """`evaluate_offline`: where the metrics and the report are (the tables stay in MLflow)."""

    model_version: str
    champion_version: Optional[str]  # None when there is no other champion to compare with
    metrics_uri: str  # runs:/<id>/evaluation/metrics.json: {"challenger v<N>": {...}, "champion v<M>": {...}}
    report_uri: str  # runs:/<id>/evaluation/index.html
    headline: dict[str, float] = field(default_factory=dict)  # challenger's overall metrics


@dataclass(frozen=True)
class OnlineReport(Artifact):
    """`evaluate_online`: the challenger against the champion through the service (split A/B and
    interleaving with simulated users), and both models' per-query offline metric compared with a
    paired bootstrap; the report and its tables stay in MLflow."""

    model_version: str
    champion_version: Optional[str]  # None when there is no other champion (nothing compared)
    compared: bool
    regression: bool  # a significant online regression, or a sample-ratio mismatch
    reason: str  # names the numbers
    report_uri: str  # runs:/<id>/online/online_report.html ("" when nothing was compared)
    # group (overall, category) -> {diff, ci_low, ci_high, challenger, champion, n} of the gate metric
    offline_ci: dict[str, dict[str, float]] = field(default_factory=dict)
    offline_regressions: list[str] = field(default_factory=list)  # groups whose CI lies below -margin
    offline_margin: float = 0.0
    headline: dict[str, float] = field(default_factory=dict)  # searches, CTR, HitRate on judged clicks, p95 per arm
    # the gate's family of tests (offline per group, online user-level, interleaving) and the replay seed
    tests: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateDecision(Artifact):
    """`gate`: promote the challenger or keep the champion, and why."""

    promote: bool
    reason: str
    metric: str
    challenger_value: float
    champion_value: Optional[float] = None
    tolerance: float = 0.0
    # category -> {"challenger": x, "champion": y} where the challenger is worse (informational)
    regressions: dict[str, dict[str, float]] = field(default_factory=dict)
    # the tests behind the decision (effect, CI, margin, power, p and Holm p per test), alpha, replay seed
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PromotionResult(Artifact):
    """`promote`: whether `champion` and the serving alias moved to this version."""

    promoted: bool
    model_name: str
    model_version: str
    champion_version: Optional[str]  # the champion after this step
    serving_alias: str
    collection: Optional[str]  # what the serving alias points at after this step


@dataclass(frozen=True)
class RetentionReport(Artifact):
    """`clean_up`: the item collections retention kept and dropped (``index.keep_last_champions``)."""

    kept: list[str]
    dropped: list[str]
    refused: dict[str, str] = field(default_factory=dict)  # collection -> why the drop guard refused it
    keep_last_champions: int = 3


__all__ = ["ARTIFACT_TYPES", "Artifact", "ArtifactError", *ARTIFACT_TYPES]
