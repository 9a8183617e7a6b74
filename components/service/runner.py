"""Run `lrem serve` in the background (``make demo``) and stop it (``make serve-stop``).

The service runs in its own session so it outlives the command that started it; its pid
is in ``<state>/serving/service.pid`` and its output in ``<state>/logs/service.log``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from components.config import PipelineConfig
from components.paths import REPO_ROOT, state_path


def pid_file() -> Path:
    return state_path("serving") / "service.pid"


def log_file() -> Path:
    return state_path("logs") / "service.log"


def url_of(cfg: PipelineConfig, host: str | None = None, port: int | None = None) -> str:
    return f"http://{host or cfg.serve.host}:{port or cfg.serve.port}"


def healthz(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503 degraded still answers
        try:
            return json.loads(exc.read())
        except Exception:
            return {"status": f"http {exc.code}"}
    except Exception:
        return None


def _recorded() -> tuple[int, str] | None:
    try:
        pid_text, url = pid_file().read_text().split()[:2]
        pid = int(pid_text)
        os.kill(pid, 0)
    except (OSError, ValueError):
        pid_file().unlink(missing_ok=True)
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"serve" not in cmdline.read_bytes():
        pid_file().unlink(missing_ok=True)
        return None
    return pid, url


def start_background(cfg: PipelineConfig, config_path: str, host: str | None = None, port: int | None = None,
                     timeout: float = 180.0) -> dict:
    """Start the service unless it already runs; wait until /healthz answers; returns {pid, url, health}."""
    running = _recorded()
    if running is not None:
        return {"pid": running[0], "url": running[1], "health": healthz(running[1]), "started": False}
    url = url_of(cfg, host, port)
    if healthz(url) is not None:
        raise RuntimeError(f"something already answers at {url}; stop it or pick another port (--port)")
    cmd = [sys.executable, "-m", "components.cli", "--config", config_path, "serve", "--host", host or cfg.serve.host,
           "--port", str(port or cfg.serve.port)]
    with open(log_file(), "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    pid_file().write_text(f"{proc.pid} {url}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file().unlink(missing_ok=True)
            tail = log_file().read_text(errors="replace").splitlines()[-20:]
            raise RuntimeError(f"lrem serve exited with code {proc.returncode}; {log_file()}:\n" + "\n".join(tail))
        health = healthz(url)
        if health is not None:
            return {"pid": proc.pid, "url": url, "health": health, "started": True}
        time.sleep(0.5)
    stop_background()
    raise RuntimeError(f"lrem serve did not answer at {url} within {timeout:.0f}s; see {log_file()}")


def stop_background(timeout: float = 20.0) -> bool:
    running = _recorded()
    if running is None:
        return False
    pid = running[0]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
            time.sleep(0.2)
        else:
            continue
        break
    pid_file().unlink(missing_ok=True)
    return True
