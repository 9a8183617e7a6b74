"""DVC versioning of ``data/``: the local remote, bootstrap, and pulls pinned to a revision.

The committed ``.dvc/config`` names no storage: the embedded default writes
``.dvc/config.local`` (git-ignored) so that the DVC cache and the local remote live in
the state dir. A production deployment commits an S3/GCS remote instead and nothing
here changes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from components.paths import REPO_ROOT, state_path

DVC_FILE = "data.dvc"


class DataVersionError(RuntimeError):
    pass


def _dvc(*args: str, repo: Path = REPO_ROOT, check: bool = True) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("dvc")
    cmd = [str(exe) if exe.exists() else "dvc", *args]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise DataVersionError(f"`dvc {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def _git(*args: str, repo: Path = REPO_ROOT) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def configure_local_remote(repo: Path = REPO_ROOT) -> dict[str, str]:
    """Point DVC's cache and default remote at the state dir (writes .dvc/config.local)."""
    cache = state_path("dvc", "cache")
    remote = state_path("dvc", "remote")
    site = state_path("dvc", "site-cache")
    _dvc("config", "--local", "cache.dir", str(cache), repo=repo)
    _dvc("config", "--local", "core.site_cache_dir", str(site), repo=repo)
    _dvc("remote", "add", "--local", "--force", "--default", "local", str(remote), repo=repo)
    return {"cache": str(cache), "remote": str(remote)}


def tracked_md5(dvc_text: str | None = None, repo: Path = REPO_ROOT) -> str:
    """The md5 of data/ recorded in data.dvc (of the working tree, or the text given)."""
    text = dvc_text if dvc_text is not None else (repo / DVC_FILE).read_text()
    outs = (yaml.safe_load(text) or {}).get("outs") or []
    if not outs or "md5" not in outs[0]:
        raise DataVersionError(f"{DVC_FILE} records no md5 for data/")
    return outs[0]["md5"]


def remote_has(md5: str) -> bool:
    """Whether the local remote holds the directory object (and so, after a push, its files)."""
    remote = state_path("dvc", "remote")
    digest = md5.removesuffix(".dir")
    return (remote / "files" / "md5" / digest[:2] / (digest[2:] + ".dir")).exists()


def bootstrap(generate) -> dict:
    """Make sure the remote holds the data that data.dvc names.

    When neither the remote nor the cache has it, ``generate(data_dir)`` writes the seeded
    world into data/, its DVC hash must equal the committed one (else data.dvc is restored
    and this fails), and it is pushed. Local edits in data/ are never overwritten.
    """
    configure_local_remote()
    original = (REPO_ROOT / DVC_FILE).read_text()
    md5 = tracked_md5(original)
    if remote_has(md5):
        return {"md5": md5, "generated": False}
    if _dvc("push", DVC_FILE, check=False).returncode == 0 and remote_has(md5):
        return {"md5": md5, "generated": False}
    data_dir = REPO_ROOT / "data"
    if data_dir.exists():
        status = _dvc("status", DVC_FILE, "--json", check=False)
        # "not in cache" is fine (same content, empty cache); "modified" means local edits
        if status.returncode != 0 or "modified" in status.stdout or "deleted" in status.stdout:
            raise DataVersionError(
                f"data/ differs from what {DVC_FILE} records and the remote lacks {md5}: refusing to overwrite "
                f"local edits. Version them (`dvc add data && dvc push`, commit data.dvc) or move data/ away.\n"
                f"{status.stdout}{status.stderr}")
        shutil.rmtree(data_dir)
    data_dir.mkdir()
    generate(data_dir)
    _dvc("add", "data")
    produced = tracked_md5()
    if produced != md5:
        (REPO_ROOT / DVC_FILE).write_text(original)
        raise DataVersionError(
            f"generated data hashes to {produced}, but {DVC_FILE} records {md5}: the generator or its "
            "seed changed. Regenerate on purpose with `lrem data generate` + `dvc add data` and commit data.dvc.")
    _dvc("push", DVC_FILE)
    return {"md5": md5, "generated": True}


def pull(rev: str | None = None, repo: Path = REPO_ROOT) -> dict:
    """Materialise data/ at ``rev`` (None: the working tree's data.dvc) into an immutable snapshot.

    The snapshot (state dir, keyed by the data hash) is what downstream steps read, so an
    analyst editing data/ mid-run, or a retried task, never sees a different dataset.
    """
    configure_local_remote(repo)
    if rev is None:
        md5 = tracked_md5(repo=repo)
        label = "workspace"
        commit = _git("rev-parse", "HEAD", repo=repo)
        dirty = bool(_git("status", "--porcelain", "--", DVC_FILE, repo=repo))
        if dirty:
            label = "workspace (data.dvc modified since last commit)"
    else:
        commit = _git("rev-parse", f"{rev}^{{commit}}", repo=repo)
        if not commit:
            raise DataVersionError(f"unknown git revision {rev!r} in {repo}")
        md5 = tracked_md5(_git("show", f"{commit}:{DVC_FILE}", repo=repo))
        label = rev
    snapshot = state_path("snapshots") / md5.removesuffix(".dir")
    if not (snapshot / ".complete").exists():
        tmp = snapshot.with_name(snapshot.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if rev is None:
            _dvc("pull", DVC_FILE, repo=repo)
            shutil.copytree(repo / "data", tmp)
        else:
            from dvc.api import DVCFileSystem

            fs = DVCFileSystem(str(repo), rev=commit)
            fs.get("data", str(tmp), recursive=True)
        shutil.rmtree(snapshot, ignore_errors=True)
        tmp.rename(snapshot)
        (snapshot / ".complete").write_text(md5)
    return {
        "data_uri": str(snapshot),
        "dvc_rev": label,
        "data_md5": md5,
        "git_commit": commit,
        "content_sha256": content_hash(snapshot),
    }


def content_hash(folder: Path) -> str:
    """sha256 over the data files (names and bytes): an independent check of the snapshot."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != ".complete"):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
