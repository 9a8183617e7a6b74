"""DVC versioning against a real DVC repo: bootstrap-like add/push, pulls pinned to a revision."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from components.data import versioning
from components.data.io import write_jsonl

DVC = str(Path(sys.executable).parent / "dvc")


def _sh(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture
def data_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("LREM_HOME", str(tmp_path / "state"))
    repo = tmp_path / "repo"
    repo.mkdir()
    _sh(["git", "init", "-q"], repo)
    _sh([DVC, "init", "-q"], repo)
    versioning.configure_local_remote(repo)
    return repo


def _commit_data(repo: Path, rows: list[dict], message: str) -> str:
    (repo / "data").mkdir(exist_ok=True)
    write_jsonl(repo / "data" / "catalog.jsonl", rows)
    _sh([DVC, "add", "-q", "data"], repo)
    _sh([DVC, "push", "-q"], repo)
    _sh(["git", "add", "-A"], repo)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], repo)
    return _sh(["git", "rev-parse", "HEAD"], repo).strip()


def test_pull_pins_a_revision_and_records_lineage(data_repo):
    first = _commit_data(data_repo, [{"item_id": "I1", "title": "a"}], "v1")
    md5_v1 = versioning.tracked_md5(repo=data_repo)
    second = _commit_data(data_repo, [{"item_id": "I1", "title": "a"}, {"item_id": "I2", "title": "b"}], "v2")

    head = versioning.pull(None, repo=data_repo)
    assert head["git_commit"] == second and head["dvc_rev"] == "workspace"
    assert (Path(head["data_uri"]) / "catalog.jsonl").read_text().count("\n") == 2

    old = versioning.pull(first, repo=data_repo)
    assert old["data_md5"] == md5_v1 and old["git_commit"] == first and old["dvc_rev"] == first
    assert (Path(old["data_uri"]) / "catalog.jsonl").read_text().count("\n") == 1
    assert old["content_sha256"] != head["content_sha256"]


def test_unknown_revision_is_a_clear_error(data_repo):
    _commit_data(data_repo, [{"item_id": "I1", "title": "a"}], "v1")
    with pytest.raises(versioning.DataVersionError, match="unknown git revision"):
        versioning.pull("no-such-rev", repo=data_repo)


def test_committed_data_dvc_matches_the_seeded_generator(tmp_path):
    """The repository's data.dvc is exactly what `lrem data generate` produces for its seed."""
    from components.config import WorldConfig
    from components.data.generate import generate_world

    generate_world(WorldConfig(), tmp_path / "data")
    _sh(["git", "init", "-q"], tmp_path)
    _sh([DVC, "init", "-q"], tmp_path)
    _sh([DVC, "add", "-q", "data"], tmp_path)
    assert versioning.tracked_md5(repo=tmp_path) == versioning.tracked_md5()
