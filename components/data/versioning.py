"""DVC versioning of ``data/``: the state dir's DVC settings, bootstrap, and pulls pinned to a revision.

The committed ``.dvc/config`` names no storage. The embedded default keeps the DVC cache and
a local remote in the state dir, and their settings in the state dir too:
``$LREM_HOME/dvc/config``, handed to every ``dvc`` this code runs as DVC's *system* config
level (``DVC_SYSTEM_CONFIG_DIR=$LREM_HOME/dvc``, read by ``dvc.dirs.system_config_dir``).
Nothing is written into the checkout, so a ``make up`` stack and a ``make demo`` with
different ``LREM_HOME``s in one checkout each use their own cache and remote. The system
level is DVC's lowest: a user's global config and the repository's own ``.dvc/config`` win
over it, so a production deployment that commits an S3/GCS remote as the default uses that
one and nothing here changes. ``lrem dvc ARGS`` is ``dvc ARGS`` with the state dir's settings
(an analyst's ``lrem dvc pull`` / ``lrem dvc push``).

Earlier versions wrote these settings into the checkout's git-ignored ``.dvc/config.local``,
which shadows every other level; a file of exactly that shape is removed on the next use.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from components.paths import REPO_ROOT, state_path

log = logging.getLogger(__name__)

DVC_FILE = "data.dvc"
REMOTE = "local"  # the state dir's remote, by name
CONFIG_DIR_ENV = "DVC_SYSTEM_CONFIG_DIR"


class DataVersionError(RuntimeError):
    pass


def dvc_executable() -> str:
    exe = Path(sys.executable).with_name("dvc")
    return str(exe) if exe.exists() else "dvc"


def state_settings() -> dict[str, Path]:
    """This state dir's DVC folders: cache, local remote, site cache (index, state db), and its config folder."""
    return {"cache": state_path("dvc", "cache"), "remote": state_path("dvc", "remote"),
            "site_cache": state_path("dvc", "site-cache"), "config_dir": state_path("dvc")}


def write_state_config() -> Path:
    """``$LREM_HOME/dvc/config``: the cache, site cache and default remote of this state dir.

    Written atomically and only when its content changes, so processes sharing a state dir
    never read half a file."""
    from configobj import ConfigObj

    paths = state_settings()
    conf = ConfigObj()
    conf["core"] = {"remote": REMOTE, "site_cache_dir": str(paths["site_cache"])}
    conf["cache"] = {"dir": str(paths["cache"])}
    conf[f'remote "{REMOTE}"'] = {"url": str(paths["remote"])}
    text = "# written by lrem (components/data/versioning.py): this state dir's DVC settings\n" \
           + "\n".join(conf.write()) + "\n"
    path = paths["config_dir"] / "config"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_name(f".config.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def retire_checkout_config(repo: Path | None = REPO_ROOT) -> bool:
    """Remove ``repo/.dvc/config.local`` when it is the one earlier versions wrote (it would shadow
    the state dir's settings); any other content is the user's and stays. True when removed."""
    from configobj import ConfigObj, ConfigObjError

    if repo is None:
        return False
    path = Path(repo) / ".dvc" / "config.local"
    try:
        conf = ConfigObj(str(path), file_error=True).dict()
    except (OSError, ConfigObjError, UnicodeDecodeError):
        return False
    allowed = {"cache": {"dir"}, "core": {"site_cache_dir", "remote"}, f'remote "{REMOTE}"': {"url"}}
    if not conf or any(k not in allowed or not isinstance(v, dict) or set(v) - allowed[k] for k, v in conf.items()):
        return False
    cache = conf.get("cache", {}).get("dir", "")
    url = conf.get(f'remote "{REMOTE}"', {}).get("url", "")
    if conf.get("core", {}).get("remote", REMOTE) != REMOTE or not cache.endswith("/dvc/cache") \
            or url != cache.removesuffix("/cache") + "/remote":
        return False
    path.unlink(missing_ok=True)
    log.warning("removed %s (DVC settings of the state dir %s, written by an earlier lrem): each state dir's "
                "settings now live in $LREM_HOME/dvc/config", path, cache.removesuffix("/dvc/cache"))
    return True


def dvc_env(repo: Path | None = REPO_ROOT) -> dict[str, str]:
    """What a ``dvc`` command in ``repo`` (None: not in a DVC repo) needs in its environment to use this state dir's cache and remote."""
    retire_checkout_config(repo)
    write_state_config()
    return {CONFIG_DIR_ENV: str(state_settings()["config_dir"])}


@contextlib.contextmanager
def _dvc_settings_in_process(repo: Path):
    """The state dir's settings for DVC's Python API in this process (dvc.api / DVCFileSystem)."""
    env = dvc_env(repo)
    saved = os.environ.get(CONFIG_DIR_ENV)
    os.environ.update(env)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(CONFIG_DIR_ENV, None)
        else:
            os.environ[CONFIG_DIR_ENV] = saved


def _dvc(*args: str, repo: Path = REPO_ROOT, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [dvc_executable(), *args]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env={**os.environ, **dvc_env(repo)})
    if check and proc.returncode != 0:
        raise DataVersionError(f"`dvc {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def _git(*args: str, repo: Path = REPO_ROOT) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


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


def bootstrap(generate, repo: Path = REPO_ROOT) -> dict:
    """Make sure the remote holds the data that data.dvc names.

    When neither the remote nor the cache has it, ``generate(data_dir)`` writes the seeded
    world into data/, its DVC hash must equal the committed one (else data.dvc is restored
    and this fails), and it is pushed. Local edits in data/ are never overwritten.
    """
    repo = Path(repo)
    original = (repo / DVC_FILE).read_text()
    md5 = tracked_md5(original)
    if remote_has(md5):
        return {"md5": md5, "generated": False}
    if _dvc("push", DVC_FILE, repo=repo, check=False).returncode == 0 and remote_has(md5):
        return {"md5": md5, "generated": False}
    data_dir = repo / "data"
    if data_dir.exists():
        status = _dvc("status", DVC_FILE, "--json", repo=repo, check=False)
        # "not in cache" is fine (same content, empty cache); "modified" means local edits
        if status.returncode != 0 or "modified" in status.stdout or "deleted" in status.stdout:
            raise DataVersionError(
                f"data/ differs from what {DVC_FILE} records and the remote lacks {md5}: refusing to overwrite "
                f"local edits. Version them (`lrem dvc add data && lrem dvc push`, commit data.dvc) or move data/ "
                f"away.\n{status.stdout}{status.stderr}")
        shutil.rmtree(data_dir)
    data_dir.mkdir()
    generate(data_dir)
    _dvc("add", "data", repo=repo)
    produced = tracked_md5(repo=repo)
    if produced != md5:
        (repo / DVC_FILE).write_text(original)
        raise DataVersionError(
            f"generated data hashes to {produced}, but {DVC_FILE} records {md5}: the generator or its "
            "seed changed. Regenerate on purpose with `lrem data generate` + `lrem dvc add data` and commit data.dvc.")
    _dvc("push", DVC_FILE, repo=repo)
    return {"md5": md5, "generated": True}


def pull(rev: str | None = None, repo: Path = REPO_ROOT) -> dict:
    """Materialise data/ at ``rev`` (None: the working tree's data.dvc) into an immutable snapshot.

    The snapshot (state dir, keyed by the data hash) is what downstream steps read, so an
    analyst editing data/ mid-run, or a retried task, never sees a different dataset.
    """
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

            with _dvc_settings_in_process(repo):
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
