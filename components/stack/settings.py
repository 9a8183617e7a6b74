"""Where the stack's services listen and what they share, read from the environment.

- ``LREM_HOME`` (``<repo>/.lrem``): state dir: the Postgres cluster, served artifacts, logs, secrets
- ``LREM_STACK_HOST`` (``127.0.0.1``): the interface every service binds to
- ``LREM_PG_PORT`` (``5433``): the local cluster's port (not 5432: the distribution's own cluster may hold it)
- ``LREM_PG_URL`` (none): an existing Postgres server instead of the local cluster,
  ``postgresql://USER:<PASSWORD>@HOST:PORT``; its databases are created where the user may
- ``LREM_MLFLOW_PORT`` (``5000``): ``mlflow server``
- ``LREM_AIRFLOW_PORT`` (``8080``): the Airflow api-server (UI, REST API, execution API)
- ``LREM_MILVUS_URI`` (``http://127.0.0.1:19530``): the Milvus Lite server
- ``LREM_SERVE_PORT`` (``8765``): the search service
- ``LREM_CONFIG`` (``configs/demo.yaml``): the pipeline config of the DAGs and the service
- ``LREM_SCHEDULE`` (``0 2 * * *``): the nightly DAG's schedule (``none``: triggered runs only)

Secrets (the Postgres password, the Airflow admin password, Airflow's JWT secret, API secret
key and Fernet key) are generated on the first ``up`` into ``$LREM_HOME/stack/secrets.json``
(mode 0600) and reused afterwards, so a restart keeps logins and encrypted connections.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse, urlunparse

from components.paths import REPO_ROOT, state_dir, state_path

PG_USER = "lrem"
DATABASES = {"airflow": "airflow", "mlflow": "mlflow", "events": "lrem_events"}
ADMIN_USER = "admin"


class StackError(RuntimeError):
    """The stack cannot be started, reached or stopped; the message says what to do."""


def _port(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        port = int(value)
    except ValueError:
        raise StackError(f"{name}={value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise StackError(f"{name}={value!r} is not a port number (1-65535)")
    return port


def load_secrets(path: Path) -> dict[str, str]:
    """The stack's secrets, generated once (0600) and reused."""
    if path.exists():
        return json.loads(path.read_text())
    values = {
        "pg_password": secrets.token_urlsafe(18),
        "airflow_admin_password": secrets.token_urlsafe(12),
        "airflow_jwt_secret": secrets.token_urlsafe(32),
        "airflow_api_secret_key": secrets.token_urlsafe(32),
        "airflow_fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh, indent=2)
    return values


@dataclass
class StackSettings:
    home: Path
    host: str
    pg_port: int
    pg_url: str | None  # LREM_PG_URL: an external server; None: the local cluster
    mlflow_port: int
    airflow_port: int
    milvus_uri: str
    serve_port: int
    config: str
    schedule: str

    @classmethod
    def from_env(cls) -> "StackSettings":
        pg_url = os.environ.get("LREM_PG_URL") or None
        if pg_url and urlparse(pg_url).scheme.split("+")[0] not in ("postgresql", "postgres"):
            raise StackError(f"LREM_PG_URL={pg_url!r}: expected postgresql://USER:<PASSWORD>@HOST:PORT[/DB]")
        config = os.environ.get("LREM_CONFIG", "configs/demo.yaml")
        if not (Path(config).exists() or (REPO_ROOT / config).exists()):
            raise StackError(f"LREM_CONFIG={config!r}: no such config file")
        return cls(
            home=state_dir(),
            host=os.environ.get("LREM_STACK_HOST", "127.0.0.1"),
            pg_port=_port("LREM_PG_PORT", 5433),
            pg_url=pg_url,
            mlflow_port=_port("LREM_MLFLOW_PORT", 5000),
            airflow_port=_port("LREM_AIRFLOW_PORT", 8080),
            milvus_uri=os.environ.get("LREM_MILVUS_URI", "http://127.0.0.1:19530"),
            serve_port=_port("LREM_SERVE_PORT", 8765),
            config=config,
            schedule=os.environ.get("LREM_SCHEDULE", "0 2 * * *"),
        )

    # --- where things live
    @property
    def stack_dir(self) -> Path:
        return state_path("stack")

    @property
    def logs(self) -> Path:
        return state_path("logs")

    @property
    def secrets(self) -> dict[str, str]:
        return load_secrets(self.stack_dir / "secrets.json")

    @property
    def airflow_passwords_file(self) -> Path:
        return self.stack_dir / "airflow-passwords.json"

    # --- URLs
    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def service_url(self) -> str:
        return f"http://{self.host}:{self.serve_port}"

    def db_url(self, which: str, driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL of one of the stack's databases (``airflow``, ``mlflow``, ``events``)."""
        name = DATABASES[which]
        if self.pg_url:
            parsed = urlparse(self.pg_url)
            return urlunparse(parsed._replace(scheme=driver, path=f"/{name}"))
        password = quote(self.secrets["pg_password"], safe="")
        return f"{driver}://{PG_USER}:{password}@{self.host}:{self.pg_port}/{name}"

    def pg_display(self) -> str:
        """Where Postgres is, without the password."""
        if self.pg_url:
            parsed = urlparse(self.pg_url)
            return f"postgresql://{parsed.username or ''}@{parsed.hostname}:{parsed.port or 5432}"
        return f"postgresql://{PG_USER}@{self.host}:{self.pg_port} (cluster {self.home / 'postgres' / 'data'})"

    def environment(self) -> dict[str, str]:
        """What every service and every step of the stack runs with (on top of this process's env)."""
        s = self.secrets
        env = {
            "LREM_HOME": str(self.home),
            # a shell with the stack's env runs plain `dvc` on this state dir's remote and cache
            # (components/data/versioning.py writes them there)
            "DVC_SYSTEM_CONFIG_DIR": str(self.home / "dvc"),
            "LREM_CONFIG": self.config,
            "LREM_SCHEDULE": self.schedule,
            "LREM_MILVUS_URI": self.milvus_uri,
            # steps and the service talk to the tracking server over HTTP, as in production
            "LREM_MLFLOW_URI": self.mlflow_url,
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "LREM_EVENT_STORE_URL": self.db_url("events"),
            "TOKENIZERS_PARALLELISM": "false",
            # mlflow server: no job runner (seven huey consumers, about 1.5 GB resident, for GenAI
            # scorers and trace roll-ups this pipeline does not use)
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(self.home / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url("airflow"),
            # psycopg 3 serves the async engine too (Airflow's default for postgresql is asyncpg)
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": self.db_url("airflow"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "4"),
            "AIRFLOW__CORE__FERNET_KEY": s["airflow_fernet_key"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.airflow_passwords_file),
            "AIRFLOW__API__BASE_URL": self.airflow_url,
            "AIRFLOW__API__SECRET_KEY": s["airflow_api_secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": s["airflow_jwt_secret"],
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs / "airflow"),
            # a scheduler that died is noticed in about a minute, not five: its running tasks
            # are reset and run again by the next scheduler (the drill in tests/stack)
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": os.environ.get(
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD", "30"),
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": os.environ.get(
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL", "30"),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": os.environ.get(
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "90"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": os.environ.get("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "60"),
        }
        return env
