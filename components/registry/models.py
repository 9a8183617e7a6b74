"""Logging, registering, loading and aliasing LREM model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.paths import REPO_ROOT

CHAMPION = "champion"
CHALLENGER = "challenger"


def pip_requirements() -> list[str]:
    """The serving environment: the pinned versions of what the pyfunc imports."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("torch", "transformers", "tokenizers", "numpy", "pandas", "mlflow")]


def check_lrem_dir(model_dir: Path) -> None:
    """Raise ArtifactError naming what is missing or unreadable when ``model_dir`` is no complete LREM model.

    Cheap (no weights are loaded): the spec parses, the HF config and some weights are there.
    """
    from components.artifacts import ArtifactError
    from components.model.lrem import SPEC_FILE, LREMSpec

    model_dir = Path(model_dir)
    problems = []
    spec = model_dir / SPEC_FILE
    if not spec.is_file():
        problems.append(f"no {SPEC_FILE}")
    else:
        try:
            LREMSpec.from_json(spec.read_text())
        except Exception as exc:
            problems.append(f"{SPEC_FILE} is unreadable ({type(exc).__name__}: {exc})")
    if not (model_dir / "config.json").is_file():
        problems.append("no config.json")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
        problems.append("no weights (*.safetensors)")
    if problems:
        raise ArtifactError(f"{model_dir} is not a complete LREM model: {'; '.join(problems)}")


def log_lrem_model(model_dir: Path, artifact_name: str = "lrem_model", registered_name: str | None = None):
    """Log an LREM directory as an MLflow pyfunc model in the active run (optionally registering it).

    An incomplete or corrupt directory is refused (ArtifactError) before anything is logged
    or registered, so a broken model never becomes a registered version.
    """
    import mlflow

    from components.registry.pyfunc import LREM_ARTIFACT, LREMPyfunc

    check_lrem_dir(model_dir)

    return mlflow.pyfunc.log_model(
        name=artifact_name,
        python_model=LREMPyfunc(),
        artifacts={LREM_ARTIFACT: str(model_dir)},
        code_paths=[str(REPO_ROOT / "components")],
        pip_requirements=pip_requirements(),
        registered_model_name=registered_name,
    )


def lrem_dir_of(model_uri: str) -> Path:
    """The LREM directory inside a logged pyfunc model (``models:/...`` or ``runs:/...``).

    Never writes into the artifact store. MLflow's download of a whole registered model
    (``models:/<name>/<version>``) writes a ``registered_model_meta`` file into the model's
    folder, and from a local store it makes no copy: that folder is the registry's own. So only
    the model's ``artifacts/`` sub-folder (the LREM files, no MLmodel) is fetched, from the
    version's storage location: read in place from a local store, downloaded once into
    ``$LREM_HOME/model-cache`` from a served or remote one (``mlflow-artifacts:``, ``s3:``).
    """
    import hashlib
    import shutil
    import tempfile
    from urllib.parse import urlparse

    import mlflow
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    from components.paths import state_path
    from components.registry.pyfunc import LREM_ARTIFACT

    base = ModelsArtifactRepository.get_underlying_uri(model_uri) if model_uri.startswith("models:") else model_uri
    files_uri = base.rstrip("/") + "/artifacts"
    if urlparse(files_uri).scheme in ("", "file"):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=files_uri))
    else:
        local = state_path("model-cache") / hashlib.sha256(files_uri.encode()).hexdigest()[:20]
        if not local.is_dir():  # a complete download is renamed into place; a partial one never is
            partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=local.parent))
            mlflow.artifacts.download_artifacts(artifact_uri=files_uri, dst_path=str(partial))
            try:
                partial.rename(local)
            except OSError:  # another process finished first: theirs is as good
                shutil.rmtree(partial, ignore_errors=True)
    found = [p.parent for p in local.rglob("lrem_config.json")]
    if not found:
        raise FileNotFoundError(f"{model_uri} holds no LREM model (no lrem_config.json under artifacts/{LREM_ARTIFACT})")
    return found[0]


def load_lrem(model_uri: str):
    """The LREM model of ``model_uri``; a missing or unreadable model is an ArtifactError (not transient)."""
    from components.artifacts import ArtifactError
    from components.model.lrem import LREMModel

    try:
        model_dir = lrem_dir_of(model_uri)
    except Exception as exc:
        raise ArtifactError(f"model {model_uri} cannot be fetched: {exc}") from exc
    try:
        return LREMModel.load(model_dir)
    except Exception as exc:
        raise ArtifactError(f"model {model_uri} is corrupt: {model_dir} cannot be loaded "
                            f"({type(exc).__name__}: {exc})") from exc


def alias_version(name: str, alias: str) -> Any | None:
    """The model version an alias points at, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def set_alias(name: str, alias: str, version: str | int) -> None:
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))


def find_version_by_tag(name: str, key: str, value: str) -> Any | None:
    import mlflow

    client = mlflow.MlflowClient()
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(key) == value:
            return mv
    return None
