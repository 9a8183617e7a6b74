"""The embedded Milvus Lite server: start, stop, status.

Milvus Lite locks its data directory, so two processes opening the same ``.db`` path
conflict. The embedded default therefore runs one ``milvus-lite server`` process and
every step (training, indexing, evaluation, the Airflow workers) connects to it by URI,
exactly as they would to a production Milvus.

The server runs in its own session (process group) so it outlives the task that started
it and can be stopped as a whole by signalling the group. Its pid is recorded in
``<state>/milvus/server.pid`` and its output goes to ``<state>/logs/milvus.log``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from components.paths import state_path

log = logging.getLogger(__name__)

DEFAULT_START_TIMEOUT_S = 60.0
DEFAULT_STOP_TIMEOUT_S = 15.0
_PROBE_TIMEOUT_S = 2.0
_LOG_TAIL_LINES = 30

# Servers started by this Python process, so that they can be reaped (a child that has
# exited stays a zombie, and so "alive" to os.kill, until its parent waits on it).
_children: dict[int, subprocess.Popen] = {}


class MilvusServerError(RuntimeError):
    """The Milvus server could not be started, reached or stopped."""


def pid_file() -> Path:
    return state_path("milvus") / "server.pid"


def log_file() -> Path:
    return state_path("logs") / "milvus.log"


def default_data_dir() -> Path:
    return state_path("milvus", "data")


def _host_port(uri: str) -> tuple[str, int]:
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "tcp") or not parsed.hostname:
        raise MilvusServerError(
            f"cannot start a Milvus Lite server for {uri!r}: expected an http://HOST:PORT uri"
        )
    return parsed.hostname, parsed.port or 19530


def is_loopback_uri(uri: str) -> bool:
    """True for ``http://127.x.x.x:PORT``, ``http://localhost:PORT`` and ``http://[::1]:PORT``."""
    try:
        host, _ = _host_port(uri)
    except MilvusServerError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def can_connect(uri: str, timeout: float = _PROBE_TIMEOUT_S, attempts: int = 3) -> bool:
    """Whether a Milvus client at ``uri`` can list collections right now.

    Tried up to ``attempts`` times, a second apart: pymilvus shares one gRPC channel per
    address, and the Milvus Lite server answers the client's 10 s keepalive pings with a
    GOAWAY ("too_many_pings") once the channel has been idle, so the first call after a quiet
    spell can fail on a server that is up; the next call gets a fresh channel.
    """
    from pymilvus import MilvusClient

    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(1.0)
        try:
            client = MilvusClient(uri=uri, timeout=timeout, dedicated=True)  # its own channel (collections.milvus_client)
        except Exception:
            continue
        try:
            client.list_collections(timeout=timeout)
            return True
        except Exception:
            continue
        finally:
            try:
                client.close()
            except Exception:
                pass
    return False


def _server_command(data_dir: Path, host: str, port: int) -> list[str]:
    # The console script installed next to this interpreter, so the server runs from the
    # same environment (virtualenv or image) as the caller; PATH is the fallback.
    script = Path(sys.executable).parent / "milvus-lite"
    if not script.exists():
        found = shutil.which("milvus-lite")
        if found is None:
            raise MilvusServerError(
                f"the milvus-lite console script is neither next to {sys.executable} nor on PATH; "
                "install pymilvus[milvus_lite]"
            )
        script = Path(found)
    return [str(script), "server", "--data-dir", str(data_dir), "--host", host, "--port", str(port)]


def _log_tail(path: Path, offset: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


def _read_pid() -> int | None:
    path = pid_file()
    if not path.exists():
        return None
    try:
        return int(path.read_text().split()[0])
    except (ValueError, IndexError, OSError):
        return None


def _is_milvus_process(pid: int) -> bool:
    """Guards against a stale pid file whose pid was reused by an unrelated process."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no procfs (macOS): trust the pid file
    try:
        return b"milvus" in cmdline.read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # reap it if it is our exited child that was not started through Popen here
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            return False
    except (OSError, IndexError):
        pass
    return True


def _recorded_server() -> int | None:
    """The pid in the pid file if that process is a live Milvus server; clears a stale file."""
    pid = _read_pid()
    if pid is None:
        return None
    if _alive(pid) and _is_milvus_process(pid):
        return pid
    pid_file().unlink(missing_ok=True)
    return None


def start_server(
    uri: str,
    data_dir: str | os.PathLike | None = None,
    timeout: float = DEFAULT_START_TIMEOUT_S,
) -> int:
    """Start a Milvus Lite server listening on ``uri``'s host and port; return its pid.

    Returns the recorded server's pid when it already answers at ``uri``. Raises
    :class:`MilvusServerError` (with the tail of the server log) when another process
    holds the port, or the server exits or does not answer within ``timeout`` seconds.
    """
    host, port = _host_port(uri)
    running = _recorded_server()
    if running is not None:
        if can_connect(uri):
            log.info("Milvus Lite server already running (pid %d) at %s", running, uri)
            return running
        raise MilvusServerError(
            f"a Milvus Lite server (pid {running}, pid file {pid_file()}) is already running "
            f"but does not answer at {uri}; stop it first (lrem/stop_server)"
        )
    if can_connect(uri, attempts=1):
        raise MilvusServerError(
            f"something already answers at {uri} that this project did not start; "
            "use it as is (ensure_server) or pick another port"
        )

    data = Path(data_dir) if data_dir is not None else default_data_dir()
    data.mkdir(parents=True, exist_ok=True)
    cmd = _server_command(data.resolve(), host, port)
    logpath = log_file()
    with open(logpath, "ab") as logfh:
        offset = logfh.tell()
        logfh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(cmd)}\n".encode())
        logfh.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=logfh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: outlives the caller, stopped as a group
            close_fds=True,
        )
    _children[proc.pid] = proc
    pid_file().write_text(f"{proc.pid}\n")

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _children.pop(proc.pid, None)
            pid_file().unlink(missing_ok=True)
            raise MilvusServerError(
                f"milvus-lite server exited with code {proc.returncode} while starting at {uri}; "
                f"log {logpath}:\n{_log_tail(logpath, offset)}"
            )
        if can_connect(uri, attempts=1):
            log.info("Milvus Lite server pid %d listening at %s (data %s)", proc.pid, uri, data)
            return proc.pid
        if time.monotonic() > deadline:
            _terminate_group(proc.pid, DEFAULT_STOP_TIMEOUT_S)
            pid_file().unlink(missing_ok=True)
            raise MilvusServerError(
                f"milvus-lite server did not answer at {uri} within {timeout:.0f}s; "
                f"log {logpath}:\n{_log_tail(logpath, offset)}"
            )
        time.sleep(0.2)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


def _terminate_group(pid: int, timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # the server leads its own session, so pgid == pid
        except ProcessLookupError:
            break
        except PermissionError:
            os.kill(pid, sig)
        if _wait_gone(pid, timeout):
            break
        log.warning("Milvus Lite server pid %d ignored %s", pid, sig.name)
    _children.pop(pid, None)


def stop_server(timeout: float = DEFAULT_STOP_TIMEOUT_S) -> bool:
    """Stop the recorded server (SIGTERM to its process group, SIGKILL after ``timeout``).

    Returns True when a running server was stopped, False when none was recorded.
    """
    pid = _recorded_server()
    if pid is None:
        return False
    _terminate_group(pid, timeout)
    pid_file().unlink(missing_ok=True)
    log.info("Milvus Lite server pid %d stopped", pid)
    return True


def server_status(uri: str) -> dict[str, Any]:
    """Whether a server answers at ``uri``, its collections, and the recorded pid."""
    from pymilvus import MilvusClient

    pid = _recorded_server()
    status: dict[str, Any] = {
        "uri": uri,
        "reachable": False,
        "collections": None,
        "aliases": None,
        "pid": pid,
        "pid_file": str(pid_file()),
        "log": str(log_file()),
    }
    for attempt in range(3):  # a GOAWAY'd shared channel fails one call (see can_connect)
        if attempt:
            time.sleep(1.0)
        status.pop("error", None)
        try:
            client = MilvusClient(uri=uri, timeout=_PROBE_TIMEOUT_S, dedicated=True)
        except Exception as exc:
            status["error"] = str(exc)
            continue
        try:
            status["collections"] = sorted(client.list_collections(timeout=_PROBE_TIMEOUT_S))
            status["reachable"] = True
            status["aliases"] = sorted(client.list_aliases().get("aliases", []))
        except Exception as exc:
            status.setdefault("error", str(exc))
        finally:
            client.close()
        if status["reachable"]:
            break
    return status


def ensure_server(uri: str, data_dir: str | os.PathLike | None = None) -> int | None:
    """Make sure a Milvus server answers at ``uri``.

    Does nothing (returns None) when one already answers; starts the embedded Milvus Lite
    server (returns its pid) when ``uri`` is a loopback http uri; otherwise raises,
    because a remote Milvus is not this process's to start.
    """
    if can_connect(uri):
        return None
    if not is_loopback_uri(uri):
        raise MilvusServerError(
            f"no Milvus server answers at {uri}, and it is not a loopback http uri that the "
            "embedded Milvus Lite server could serve; start that server or fix index.milvus_uri"
        )
    return start_server(uri, data_dir=data_dir)
