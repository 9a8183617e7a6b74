"""DVC versioning against a real DVC repo: bootstrap-like add/push, pulls pinned to a revision, and
each state dir's own DVC cache and remote (nothing written into the checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.data import versioning
from components.data.io import write_jsonl

DVC = str(Path(sys.executable).parent / "dvc")


def _sh(cmd, cwd, env=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture
def data_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("LREM_HOME", str(tmp_path / "state"))
    repo = tmp_path / "repo"
    repo.mkdir()
    _sh(["git", "init", "-q"], repo)
    _sh([DVC, "init", "-q"], repo)
    return repo


def _dvc_sh(args: list[str], repo: Path) -> str:
    """`dvc ARGS` as an analyst runs it with `lrem dvc`: on the current state dir's settings."""
    return _sh([DVC, *args], repo, env={**os.environ, **versioning.dvc_env(repo)})


def _commit_data(repo: Path, rows: list[dict], message: str) -> str:
    (repo / "data").mkdir(exist_ok=True)
    write_jsonl(repo / "data" / "catalog.jsonl", rows)
    _dvc_sh(["add", "-q", "data"], repo)
    _dvc_sh(["push", "-q"], repo)
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


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_two_state_dirs_in_one_checkout_each_pull_and_push_their_own_remote(tmp_path, monkeypatch):
    """A `make up` stack (one LREM_HOME) and a `make demo` (another) in the same checkout, one after the
    other: each bootstraps, pushes and pulls through its own cache and remote; the checkout keeps no
    DVC settings of either (the old .dvc/config.local was rewritten by whichever ran last)."""
    from components import cli

    repo = tmp_path / "repo"
    repo.mkdir()
    _sh(["git", "init", "-q"], repo)
    _sh([DVC, "init", "-q"], repo)
    stack_home, demo_home = tmp_path / "stack-home", tmp_path / "demo-home"
    rows = [{"item_id": "I1", "title": "a"}, {"item_id": "I2", "title": "b"}]

    def world(folder: Path) -> None:
        write_jsonl(folder / "catalog.jsonl", rows)

    monkeypatch.setenv("LREM_HOME", str(stack_home))
    first = _commit_data(repo, rows, "v1")  # the committed data.dvc, pushed by the stack's state dir
    md5 = versioning.tracked_md5(repo=repo)
    assert versioning.bootstrap(world, repo=repo) == {"md5": md5, "generated": False}
    stack_remote = _files(stack_home / "dvc" / "remote")
    assert versioning.remote_has(md5) and stack_remote

    monkeypatch.setenv("LREM_HOME", str(demo_home))
    assert not versioning.remote_has(md5)  # the demo's remote is its own: empty so far
    assert versioning.bootstrap(world, repo=repo)["md5"] == md5  # regenerated, verified, pushed to the demo's
    assert versioning.remote_has(md5)
    assert _files(demo_home / "dvc" / "remote") == stack_remote
    # an analyst on the demo's state dir versions new data with `lrem dvc`: only the demo's remote gets it
    write_jsonl(repo / "data" / "catalog.jsonl", rows + [{"item_id": "I3", "title": "c"}])
    monkeypatch.chdir(repo)
    assert cli.main(["dvc", "add", "-q", "data"]) == 0
    assert cli.main(["dvc", "push", "-q"]) == 0
    _sh(["git", "add", "-A"], repo)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v2"], repo)
    md5_v2 = versioning.tracked_md5(repo=repo)
    assert versioning.remote_has(md5_v2)
    assert _files(stack_home / "dvc" / "remote") == stack_remote  # nothing of the demo's push went there

    # nothing of either state dir in the checkout: DVC's committed config stays empty, no config.local
    assert not (repo / ".dvc" / "config.local").exists()
    assert (repo / ".dvc" / "config").read_text().strip() == ""
    assert "dvc" not in _sh(["git", "status", "--porcelain"], repo)

    # pulls fetch from the state dir's own remote: drop both caches and the workspace's data
    for home in (stack_home, demo_home):
        shutil.rmtree(home / "dvc" / "cache")
    shutil.rmtree(repo / "data")
    head = versioning.pull(None, repo=repo)  # the demo: v2, from its remote
    assert head["data_md5"] == md5_v2 and (Path(head["data_uri"]) / "catalog.jsonl").read_text().count("\n") == 3
    monkeypatch.setenv("LREM_HOME", str(stack_home))
    old = versioning.pull(first, repo=repo)  # the stack: v1 pinned by revision, from its remote
    assert old["data_md5"] == md5 and (Path(old["data_uri"]) / "catalog.jsonl").read_text().count("\n") == 2
    with pytest.raises(versioning.DataVersionError, match="dvc pull"):
        versioning.pull(None, repo=repo)  # v2 was pushed to the demo's remote only


def test_the_config_local_of_earlier_versions_is_retired_and_a_users_own_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("LREM_HOME", str(tmp_path / "state"))
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    local = repo / ".dvc" / "config.local"
    old = tmp_path / "other-home" / "dvc"
    written_by_earlier_lrem = (f"[cache]\n    dir = {old}/cache\n[core]\n    site_cache_dir = {old}/site-cache\n"
                               f"    remote = local\n['remote \"local\"']\n    url = {old}/remote\n")
    local.write_text(written_by_earlier_lrem)
    env = versioning.dvc_env(repo)
    assert not local.exists()
    assert env == {"DVC_SYSTEM_CONFIG_DIR": str(tmp_path / "state" / "dvc")}
    config = (tmp_path / "state" / "dvc" / "config").read_text()
    assert f"dir = {tmp_path / 'state' / 'dvc' / 'cache'}" in config and "remote = local" in config
    for users_own in (written_by_earlier_lrem.replace("remote = local\n", "remote = local\n    autostage = true\n"),
                      written_by_earlier_lrem.replace("remote = local", "remote = s3"),
                      "['remote \"s3\"']\n    url = s3://bucket/dvc\n"):
        local.write_text(users_own)
        versioning.dvc_env(repo)
        assert local.read_text() == users_own


def test_the_raw_gate_trusts_links_into_the_state_dirs_cache(tmp_path, monkeypatch):
    """With cache.type symlink/hardlink, `dvc checkout` links data files into the cache, which now lives in
    the state dir: the raw gate's "inside the data folder" rule accepts such a link, and still no other."""
    from components.validation.suites import _outside

    monkeypatch.setenv("LREM_HOME", str(tmp_path / "state"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    target = tmp_path / "state" / "dvc" / "cache" / "files" / "md5" / "ab" / "cdef"
    target.parent.mkdir(parents=True)
    target.write_text("{}\n")
    os.symlink(target, data_dir / "catalog.jsonl")
    assert _outside(data_dir / "catalog.jsonl", data_dir)  # no config names that folder a cache yet
    versioning.write_state_config()
    assert not _outside(data_dir / "catalog.jsonl", data_dir)
    (tmp_path / "elsewhere.jsonl").write_text("{}\n")
    os.symlink(tmp_path / "elsewhere.jsonl", data_dir / "queries.jsonl")
    assert _outside(data_dir / "queries.jsonl", data_dir)
