"""Loading a registered model never writes into the artifact store.

MLflow's download of a whole registered model writes a ``registered_model_meta`` file into
the model's folder, and from a local store that folder is the registry's own: loading used to
add that file to every version it loaded. ``lrem_dir_of`` fetches only the model's files.

What each test proves:
- ``test_loading_leaves_the_store_byte_for_byte``: after loading by version and by alias, every
  file and folder of the store has the same content hash, size and mtime, and no file was added.
  The test runs as whatever user runs the suite (root here), so a write would have succeeded:
  the comparison, not a permission, is what catches it.
- ``test_loads_from_a_store_it_cannot_write``: the store is made read-only (``chmod a-w``) and
  the model is loaded in a subprocess running as an unprivileged user (``nobody``), for whom
  the permission holds (root ignores it). Needs root (to switch user) and ``setpriv``; skips
  otherwise, saying why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS = ["waterproof nylon hiking backpack", "black leather office chair", "steel travel mug",
          "keep my coffee hot", "tennis racket graphite", "ergonomic mesh desk chair"] * 30


def snapshot(root: Path) -> dict[str, tuple]:
    """path -> (kind, size, mtime_ns, sha256) for everything under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(path.relative_to(root))] = ("dir" if path.is_dir() else "file", st.st_size, st.st_mtime_ns, digest)
    return out


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A SQLite registry with one LREM version (alias champion), artifacts in a local folder."""
    import mlflow

    from components.config import ModelConfig
    from components.model.lrem import LREMModel
    from components.registry.models import log_lrem_model

    home = tmp_path_factory.mktemp("ro_registry")
    cfg = ModelConfig(vocab_size=400, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_cot_tokens=4)
    saved = LREMModel.create(cfg, CORPUS).save(home / "model")
    db = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(db)
    mlflow.set_registry_uri(db)
    exp = mlflow.create_experiment("ro", artifact_location=(home / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp):
        info = log_lrem_model(saved, registered_name="lrem-ro")
    mlflow.MlflowClient().set_registered_model_alias("lrem-ro", "champion", info.registered_model_version)
    return {"home": home, "db": db, "artifacts": home / "artifacts", "version": str(info.registered_model_version)}


def test_loading_leaves_the_store_byte_for_byte(registry, monkeypatch, tmp_path):
    import mlflow

    from components.registry.models import load_lrem

    monkeypatch.setenv("LREM_HOME", str(tmp_path / "state"))
    mlflow.set_tracking_uri(registry["db"])
    mlflow.set_registry_uri(registry["db"])
    before = snapshot(registry["artifacts"])
    assert any(p.endswith("lrem_config.json") for p in before), "the fixture logged no LREM model"
    by_version = load_lrem(f"models:/lrem-ro/{registry['version']}")
    by_alias = load_lrem("models:/lrem-ro@champion")
    after = snapshot(registry["artifacts"])
    assert sorted(set(after) - set(before)) == [], "loading added files to the artifact store"
    changed = [p for p in before if before[p] != after.get(p)]
    assert changed == [], f"loading changed {changed}"
    # and what was loaded is the registered model
    e1, c1 = by_version.embed_queries(["steel mug"])
    e2, c2 = by_alias.embed_queries(["steel mug"])
    assert c1 == c2 and abs(e1 - e2).max() < 1e-6


LOADER = """
import sys, mlflow
from components.registry.models import load_lrem
mlflow.set_tracking_uri(sys.argv[1]); mlflow.set_registry_uri(sys.argv[1])
model = load_lrem("models:/lrem-ro@champion")
print("loaded", model.spec.base, len(model.embed_items(["steel mug"])[0]))
"""


def _make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) | stat.S_IROTH
                   | (stat.S_IXOTH if path.is_dir() else 0))


def test_loads_from_a_store_it_cannot_write(registry, tmp_path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to load as an unprivileged user (root ignores read-only permissions)")
    # a copy of the registry that `nobody` can read but not write: folders up to it traversable
    store = Path("/tmp") / f"lrem-ro-store-{os.getpid()}"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(registry["home"], store, symlinks=True)
    db = f"sqlite:///{store / 'mlflow.db'}"
    # the experiment's artifact location is absolute: point the copy's rows at the copy
    import sqlite3

    with sqlite3.connect(store / "mlflow.db") as con:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                              ("model_versions", "storage_location"), ("logged_models", "artifact_location")):
            con.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                        (str(registry["home"]), str(store)))
    writable = tmp_path / "nobody"  # LREM_HOME and caches of the unprivileged loader
    writable.mkdir()
    writable.chmod(0o777)
    tmp_path.chmod(0o755)
    try:
        _make_read_only(store)
        before = snapshot(store)
        env = {**os.environ, "LREM_HOME": str(writable), "HOME": str(writable), "HF_HOME": str(writable / "hf"),
               "MPLCONFIGDIR": str(writable / "mpl"), "PYTHONPATH": str(REPO)}
        probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "touch",
                                str(store / "artifacts" / "probe")], capture_output=True, text=True)
        assert probe.returncode != 0, "the unprivileged user can write into the store: the test would prove nothing"
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c"]
        can_import = subprocess.run([*as_nobody, "import components.registry.models"], capture_output=True,
                                    text=True, cwd=writable, env=env, timeout=300)
        if can_import.returncode != 0:
            pytest.skip(f"the unprivileged user cannot import the checkout or its venv: {can_import.stderr[-300:]}")
        run = subprocess.run([*as_nobody, LOADER, db], capture_output=True, text=True, cwd=writable, env=env,
                             timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "loaded tiny 16" in run.stdout
        assert snapshot(store) == before
    finally:
        for path in [store, *store.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(store, ignore_errors=True)
