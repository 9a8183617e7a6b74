"""One real stack per test module (``lrem stack up``) in a fresh state dir on free ports.

Skips, saying why, unless ``LREM_STACK_TESTS=1`` (``make test-stack``: they take tens of minutes,
far over ``make test``'s budget), and where PostgreSQL cannot be had: no ``initdb``/``pg_ctl`` and
no ``LREM_PG_URL``, or running as root without the ``postgres`` system user to own the cluster.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = "lrem_nightly"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def why_no_postgres() -> str | None:
    if os.environ.get("LREM_PG_URL"):
        return None
    from components.stack import postgres
    from components.stack.settings import StackError

    try:
        postgres.bin_dir()
    except StackError as exc:
        return str(exc)
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam(postgres.SYSTEM_USER)
        except KeyError:
            return "running as root without a postgres system user to own the cluster (apt-get install postgresql)"
    return None


@dataclass
class Stack:
    settings: object
    env: dict[str, str]
    log: list[str] = field(default_factory=list)
    up_seconds: float = 0.0

    def say(self, line: str) -> None:
        self.log.append(line)
        print(line)


@pytest.fixture(scope="module")
def stack():
    if os.environ.get("LREM_STACK_TESTS", "") != "1":
        # several full nightly runs through the scheduler: far over the suite's time budget
        pytest.skip("the stack tests take tens of minutes (four smoke runs through the scheduler, three stack "
                    "(re)starts): run them with LREM_STACK_TESTS=1 (make test-stack)")
    reason = why_no_postgres()
    if reason:
        pytest.skip(f"no PostgreSQL for the stack: {reason}")
    from components.stack import stack as stack_mod
    from components.stack.settings import StackSettings

    # under /tmp with short names: the postgres user must reach the cluster's folder
    home = Path(tempfile.mkdtemp(prefix="lrem-stack-", dir="/tmp"))
    home.chmod(0o755)
    env = {
        "LREM_HOME": str(home),
        "LREM_PG_PORT": str(free_port()),
        "LREM_MLFLOW_PORT": str(free_port()),
        "LREM_AIRFLOW_PORT": str(free_port()),
        "LREM_SERVE_PORT": str(free_port()),
        "LREM_MILVUS_URI": f"http://127.0.0.1:{free_port()}",
        "LREM_SCHEDULE": "none",
        "LREM_CONFIG": "configs/smoke.yaml",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        for key in ("MLFLOW_TRACKING_URI", "LREM_MLFLOW_URI", "LREM_EVENT_STORE_URL"):
            mp.delenv(key, raising=False)
        settings = StackSettings.from_env()
        st = Stack(settings, env)
        t0 = time.monotonic()
        try:
            stack_mod.up(settings, say=st.say)
            st.up_seconds = time.monotonic() - t0
            print(f"stack up in {st.up_seconds:.0f}s")
            yield st
        finally:
            stack_mod.down(settings, say=st.say)
            shutil.rmtree(home, ignore_errors=True)
