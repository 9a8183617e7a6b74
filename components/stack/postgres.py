"""PostgreSQL for the stack: the distribution's package, a cluster under ``$LREM_HOME/postgres``.

Postgres refuses to run as root, so where ``lrem stack up`` runs as root the cluster belongs
to the ``postgres`` system user (created by the Debian package) and ``initdb`` / ``pg_ctl``
run through ``runuser``; otherwise they run as the calling user. The cluster listens on TCP
only (``LREM_PG_PORT`` on ``LREM_STACK_HOST``; no Unix socket, whose path would be too long under
a deep state dir) with password authentication for the ``lrem`` role. ``LREM_PG_URL`` skips
all of this and uses an existing server.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from components.stack.settings import DATABASES, PG_USER, StackError, StackSettings

SYSTEM_USER = "postgres"


def bin_dir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: ``pg_config --bindir``, the newest /usr/lib/postgresql/N/bin, PATH."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).parent))
    for cand in candidates:
        if (Path(cand) / "initdb").exists() and (Path(cand) / "pg_ctl").exists():
            return Path(cand)
    raise StackError("PostgreSQL is not installed (no initdb/pg_ctl): `make up` installs it with apt where it runs "
                     "as root (apt-get install postgresql); or set LREM_PG_URL to an existing server")


def data_dir(settings: StackSettings) -> Path:
    return settings.home / "postgres" / "data"


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    if not shutil.which("runuser"):
        raise StackError("running as root, the Postgres cluster must run as the postgres user, but runuser is missing")
    return ["runuser", "-u", SYSTEM_USER, "--", *cmd]


def _owner_ids() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    import pwd

    try:
        pw = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise StackError(f"running as root, but there is no {SYSTEM_USER!r} system user to own the Postgres cluster "
                         "(the distribution's postgresql package creates it)") from None
    return pw.pw_uid, pw.pw_gid


def _run(cmd: list[str], what: str, log: Path) -> None:
    with open(log, "ab") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        fh.flush()
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        from components.stack.procs import tail

        raise StackError(f"{what} failed (exit {done.returncode}); {log}:\n{tail(log)}")


def is_running(settings: StackSettings) -> bool:
    pid_file = data_dir(settings) / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
        return True
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True


def init_cluster(settings: StackSettings) -> bool:
    """``initdb`` the cluster unless it exists; True when it was created now."""
    data = data_dir(settings)
    if (data / "PG_VERSION").exists():
        return False
    uid, gid = _owner_ids()
    data.mkdir(parents=True, exist_ok=True)
    os.chown(data, uid, gid)
    os.chmod(data, 0o700)
    # the owner must be able to reach the state dir (a state dir under /root would not do)
    probe = subprocess.run(_as_owner(["test", "-w", str(data)]), capture_output=True)
    if probe.returncode != 0:
        raise StackError(f"the Postgres user cannot write {data}: put LREM_HOME where it can reach "
                         f"(every parent folder searchable by {SYSTEM_USER}), or set LREM_PG_URL")
    log = settings.logs / "postgres.log"
    log.touch()
    os.chown(log, uid, gid)
    with tempfile.NamedTemporaryFile("w", dir=data.parent, delete=False) as fh:
        fh.write(settings.secrets["pg_password"] + "\n")
        pwfile = Path(fh.name)
    try:
        os.chown(pwfile, uid, gid)
        _run(_as_owner([str(bin_dir() / "initdb"), "-D", str(data), "-U", PG_USER, "--pwfile", str(pwfile),
                        "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"]),
             "initdb", log)
    finally:
        pwfile.unlink(missing_ok=True)
    with open(data / "postgresql.conf", "a") as fh:
        fh.write("\n# lrem stack\nunix_socket_directories = ''\nshared_buffers = 64MB\nmax_connections = 200\n")
    return True


def start(settings: StackSettings) -> bool:
    """Start the cluster unless it runs; True when it was started now."""
    if is_running(settings):
        return False
    data = data_dir(settings)
    log = settings.logs / "postgres.log"
    uid, gid = _owner_ids()
    log.touch()
    os.chown(log, uid, gid)
    opts = f"-c listen_addresses={settings.host} -c port={settings.pg_port}"
    _run(_as_owner([str(bin_dir() / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60",
                    "start"]), "pg_ctl start", log)
    return True


def stop(settings: StackSettings) -> bool:
    if not is_running(settings):
        return False
    _run(_as_owner([str(bin_dir() / "pg_ctl"), "-D", str(data_dir(settings)), "-m", "fast", "-w", "-t", "60",
                    "stop"]), "pg_ctl stop", settings.logs / "postgres.log")
    return True


def connect(settings: StackSettings, database: str = "postgres", timeout: int = 3):
    import psycopg

    if settings.pg_url:
        from urllib.parse import unquote, urlparse

        p = urlparse(settings.pg_url)
        return psycopg.connect(host=p.hostname, port=p.port or 5432, user=unquote(p.username or ""),
                               password=unquote(p.password or ""), dbname=database, connect_timeout=timeout)
    return psycopg.connect(host=settings.host, port=settings.pg_port, user=PG_USER,
                           password=settings.secrets["pg_password"], dbname=database, connect_timeout=timeout)


def healthy(settings: StackSettings) -> tuple[bool, str]:
    try:
        con = connect(settings)
    except Exception as exc:
        return False, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        with con.cursor() as cur:
            cur.execute("select version()")
            return True, cur.fetchone()[0].split(" on ")[0]
    finally:
        con.close()


def ensure_databases(settings: StackSettings) -> list[str]:
    """Create the stack's databases that are missing; returns those created."""
    base = "postgres"
    if settings.pg_url:
        from urllib.parse import urlparse

        base = urlparse(settings.pg_url).path.lstrip("/") or "postgres"
    con = connect(settings, base)
    con.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    created = []
    try:
        with con.cursor() as cur:
            for name in DATABASES.values():
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if cur.fetchone() is None:
                    try:
                        cur.execute(f'create database "{name}"')
                    except Exception as exc:
                        raise StackError(f"database {name!r} does not exist on {settings.pg_display()} and cannot be "
                                         f"created ({exc}); create it or grant CREATEDB") from exc
                    created.append(name)
    finally:
        con.close()
    return created


def wait_healthy(settings: StackSettings, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = healthy(settings)
        if ok:
            return detail
        if time.monotonic() > deadline:
            raise StackError(f"Postgres at {settings.pg_display()} does not answer: {detail}")
        time.sleep(0.5)
