"""infra/docker-compose.yml is `make up` in containers: the same services, commands and environment.

Parsed with yaml (there is no Docker engine on the development machines); where the Docker CLI has
its compose plugin, `docker compose config` also validates and interpolates the file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "infra" / ".env.example"
AIRFLOW = {"airflow-api-server": "api-server", "airflow-scheduler": "scheduler",
           "airflow-dag-processor": "dag-processor"}
TRACKING = "http://mlflow:5000"
SECRETS = ("POSTGRES_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
           "AIRFLOW_FERNET_KEY")
# a name whose value is a secret or holds one (a database URL with its password)
SECRET_WORDS = re.compile(r"(?i)(password|secret|fernet|token$|key$|sql_alchemy_conn|store_ur[il]$)")
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _argv(svc: dict) -> list[str]:
    def as_list(value) -> list[str]:
        if value is None:
            return []
        return value.split() if isinstance(value, str) else [str(v) for v in value]

    return as_list(svc.get("entrypoint")) + as_list(svc.get("command"))


def _lrem_services(compose: dict) -> dict[str, dict]:
    """The services run from the training image (all but Postgres)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def test_airflow_runs_as_separate_services_with_an_init_never_standalone(compose):
    services = compose["services"]
    for name, svc in services.items():
        assert "standalone" not in " ".join(_argv(svc)), f"{name}: `airflow standalone` is for development only"
    for name, sub in AIRFLOW.items():
        argv = " ".join(_argv(services[name]))
        assert re.search(rf"\bairflow {sub}\b", argv) or _argv(services[name])[:2] == ["airflow", sub], (name, argv)
        assert services[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
    assert _argv(services["airflow-init"]) == ["airflow", "db", "migrate"]
    assert services["airflow-init"]["restart"] == "no"
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"):
        assert re.fullmatch(r"postgresql\+psycopg://lrem:\$\{POSTGRES_PASSWORD[^}]*\}@postgres:5432/airflow", env[key])
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"


def test_the_services_of_make_up(compose):
    services = compose["services"]
    assert {"postgres", "mlflow", "milvus", "airflow-init", "data-bootstrap", *AIRFLOW, "service"} <= set(services)
    pg = services["postgres"]
    assert pg["environment"]["POSTGRES_DB"] == "airflow" and pg["environment"]["POSTGRES_USER"] == "lrem"
    init_sql = next(v for v in pg["volumes"] if "docker-entrypoint-initdb.d" in v).split(":")[0]
    sql = (COMPOSE.parent / init_sql).read_text()
    for database in ("mlflow", "lrem_events"):
        assert re.search(rf"CREATE DATABASE {database}\b", sql), database
    mlflow = services["mlflow"]
    argv = _argv(mlflow)
    assert argv[:2] == ["mlflow", "server"] and "--serve-artifacts" in argv and "--artifacts-destination" in argv
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://lrem:${POSTGRES_PASSWORD")
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    assert _argv(services["milvus"])[:2] == ["milvus-lite", "server"]
    assert _argv(services["data-bootstrap"])[-2:] == ["data", "bootstrap"]
    assert "serve" in _argv(services["service"])
    assert services["airflow-scheduler"]["depends_on"]["data-bootstrap"] == {
        "condition": "service_completed_successfully"}


def test_every_service_has_make_ups_environment_and_the_tracking_server(compose, tmp_path, monkeypatch):
    """Each service from the training image carries every variable `make up` sets (StackSettings.environment()),
    the steps and the service reach MLflow over HTTP, and the events go to the stack's Postgres."""
    from components.stack.settings import StackSettings

    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))  # make up's secrets are generated there
    make_up = set(StackSettings.from_env().environment())
    services = _lrem_services(compose)
    assert set(services) == set(compose["services"]) - {"postgres"}
    for name, svc in services.items():
        env = svc["environment"]
        missing = make_up - set(env)
        assert not missing, f"{name}: make up sets {sorted(missing)}, compose does not"
        assert env["LREM_MLFLOW_URI"] == env["MLFLOW_TRACKING_URI"] == TRACKING, name
        assert env["LREM_MILVUS_URI"] == "http://milvus:19530", name
        assert env["LREM_EVENT_STORE_URL"].endswith("@postgres:5432/lrem_events"), name
        assert env["LREM_CONFIG"].startswith("${LREM_CONFIG") and env["LREM_SCHEDULE"].startswith("${LREM_SCHEDULE")
        assert "lrem-state:/var/lib/lrem" in svc["volumes"] and env["LREM_HOME"] == "/var/lib/lrem", name


def _strings(node, path=""):
    """Every (path, string) of a parsed YAML tree (keys of an environment mapping are part of the path)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif node is not None:
        yield path, str(node)


def test_no_secret_is_written_in_the_compose_file(compose):
    """A value under a secret-looking name, and every database URL, takes its secret from infra/.env."""
    problems = []
    for path, value in _strings(compose["services"]):
        if "://" in value and "@" in value:
            userinfo = value.split("://", 1)[1].split("@", 1)[0]
            if ":" in userinfo and not INTERPOLATION.fullmatch(userinfo.split(":", 1)[1]):
                problems.append(f"{path}: a URL with a literal password")
        name = path.rsplit(".", 1)[-1]
        if SECRET_WORDS.search(name) and not name.endswith(("_FILE", "_USERS")) and not INTERPOLATION.search(value):
            problems.append(f"{path}: a literal value")
    assert not problems, "\n".join(problems)
    used = set(INTERPOLATION.findall(COMPOSE.read_text()))
    assert set(SECRETS) <= used
    for secret in SECRETS:  # required: compose refuses to start without it
        assert re.search(rf"\$\{{{secret}:\?", COMPOSE.read_text()), secret


def test_the_env_template_holds_no_values_and_env_is_ignored():
    lines = [ln for ln in ENV_EXAMPLE.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    values = dict(ln.split("=", 1) for ln in lines)
    assert set(values) == set(SECRETS) and not any(values.values()), values
    ignored = subprocess.run(["git", "check-ignore", "-q", "infra/.env"], cwd=ROOT)
    assert ignored.returncode == 0, "infra/.env must be git-ignored"
    assert "infra/.env" in (ROOT / ".dockerignore").read_text().split()  # nor sent to the image build


def test_the_image_installs_what_make_up_needs():
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    lock = {ln.split("==")[0].lower() for ln in (ROOT / "requirements.lock").read_text().splitlines()
            if "==" in ln and not ln.startswith("#")}
    assert {"apache-airflow", "mlflow", "psycopg", "psycopg-binary", "milvus-lite", "dvc", "httpx"} <= lock
    assert "-r requirements.lock" not in dockerfile and "grep -v '^playwright=='" in dockerfile
    assert "dvc init --no-scm" in dockerfile  # the image's /opt/lrem is a DVC repo for data bootstrap / pull_data


def _docker_compose() -> list[str] | None:
    if not shutil.which("docker"):
        return None
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    return ["docker", "compose"] if probe.returncode == 0 else None


def test_docker_compose_config_accepts_it(tmp_path):
    cli = _docker_compose()
    if cli is None:
        pytest.skip("no `docker compose` (the Docker CLI's compose plugin) on this machine")
    env = tmp_path / "env"
    env.write_text("".join(f"{name}=placeholder-{i}\n" for i, name in enumerate(SECRETS)))
    done = subprocess.run([*cli, "-f", str(COMPOSE), "--env-file", str(env), "config", "--format", "json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    import json

    resolved = json.loads(done.stdout)
    assert resolved["services"]["airflow-scheduler"]["environment"]["MLFLOW_TRACKING_URI"] == TRACKING
    missing = subprocess.run([*cli, "-f", str(COMPOSE), "--env-file", "/dev/null", "config", "-q"],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr  # no secret, no stack
