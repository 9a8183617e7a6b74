"""Detached services as process groups: started with ``setsid``, stopped by signalling the group.

Each service runs in its own session (its pid is its process group id), so it outlives the
``lrem stack up`` that started it, and ``down`` stops it with everything it forked (uvicorn
workers, LocalExecutor workers, and the task processes, which Airflow's supervisor puts in
sessions of their own, found as descendants) and nothing else. A record per service,
``$LREM_HOME/stack/pids/<name>.json``, keeps the pid, the process's start time (so a pid that
the kernel reused for an unrelated process is never signalled) and the command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from components.paths import REPO_ROOT, state_path


@dataclass
class Record:
    name: str
    pid: int
    start_ticks: int | None  # field 22 of /proc/<pid>/stat: the pid's identity with its start time
    cmd: list[str]
    log: str
    started_at: float


def records_dir() -> Path:
    return state_path("stack", "pids")


def log_path(name: str) -> Path:
    return state_path("logs") / f"{name}.log"


def _start_ticks(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def read(name: str) -> Record | None:
    path = records_dir() / f"{name}.json"
    try:
        return Record(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def alive(rec: Record) -> bool:
    """The recorded leader still runs (and is the same process, not a reused pid)."""
    try:
        os.kill(rec.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # our own exited child: reap it
        if os.waitpid(rec.pid, os.WNOHANG)[0] == rec.pid:
            return False
    except ChildProcessError:
        pass
    if _zombie(rec.pid):
        return False
    ticks = _start_ticks(rec.pid)
    return rec.start_ticks is None or ticks is None or ticks == rec.start_ticks


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every live (non-zombie) process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z":
                table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table


def members(rec: Record) -> set[int]:
    """The recorded group's processes and all their descendants, wherever their own session is.

    Airflow's task supervisor runs each task in a session of its own: signalling the scheduler's
    group alone would leave a running task behind, orphaned."""
    if rec.start_ticks is not None and _start_ticks(rec.pid) not in (None, rec.start_ticks):
        return set()  # the pid now belongs to another process: its group is not ours
    table = _process_table()
    found = {pid for pid, (_, pgid) in table.items() if pgid == rec.pid}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found and pid not in found}
        found |= more
        grew = bool(more)
    return found


def group_alive(rec: Record) -> bool:
    """Any process of the recorded group (or one it started) is left; the leader may be gone."""
    return bool(members(rec))


def kill_tree(rec: Record, sig: int) -> set[int]:
    """Send ``sig`` to every member (see :func:`members`); returns the pids signalled."""
    pids = members(rec)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return pids


def start(name: str, cmd: list[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> Record:
    """Start ``cmd`` detached in its own session, output appended to ``$LREM_HOME/logs/<name>.log``."""
    log = log_path(name)
    with open(log, "ab") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} lrem stack: {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    rec = Record(name=name, pid=proc.pid, start_ticks=_start_ticks(proc.pid), cmd=cmd, log=str(log),
                 started_at=time.time())
    (records_dir() / f"{name}.json").write_text(json.dumps(asdict(rec), indent=2))
    return rec


def forget(name: str) -> None:
    (records_dir() / f"{name}.json").unlink(missing_ok=True)


def stop(name: str, timeout: float = 30.0) -> bool:
    """SIGTERM to the recorded group and its descendants, SIGKILL after ``timeout``; True if something was stopped."""
    rec = read(name)
    if rec is None:
        return False
    stopped = False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not kill_tree(rec, sig):
            break
        stopped = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and group_alive(rec):
            time.sleep(0.2)
    forget(name)
    return stopped


def tail(path: str | Path, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(log is empty)"
