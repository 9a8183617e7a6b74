"""No secrets in code or configs: production URIs and credentials come from the environment (infra/README.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from components.config import load_config

REPO = Path(__file__).resolve().parents[1]
SCANNED_DIRS = ("components", "configs", "dags", "infra", "mlflow", "bench")
SCANNED_FILES = ("Makefile", "pyproject.toml", "data.dvc", ".dvc/config")
CONFIG_SUFFIXES = {".yaml", ".yml", ".env", ".example", ".toml", ".ini", ".cfg", ""}
PLACEHOLDER = re.compile(r"^(\$\{|\$\(|\$[A-Z_]|CHANGE_ME|<|\{\{)")

EVERYWHERE = [
    ("AWS access key id", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("private key", re.compile(r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----")),
]
URI_WITH_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:([^\s@/'\"]+)@")
# a key that ends in a secret word (db_password:, AWS_SECRET_ACCESS_KEY=, token:), set to a literal
CONFIG_SECRET = re.compile(r"(?i)\b[\w.-]*(password|secret|token|api_key|access_key)\s*[:=]\s*[\"']?([^\s\"'#]+)")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", *SCANNED_DIRS, *SCANNED_FILES], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
        return [REPO / p for p in out]
    except (OSError, subprocess.CalledProcessError):  # no git: scan the folders as they are
        return [p for d in SCANNED_DIRS for p in (REPO / d).rglob("*") if p.is_file()] + [
            REPO / f for f in SCANNED_FILES if (REPO / f).is_file()]


def test_no_credentials_in_tracked_code_or_configs():
    found = []
    for path in _tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        rel = path.relative_to(REPO)
        for line_no, line in enumerate(text.splitlines(), start=1):
            for what, pattern in EVERYWHERE:
                if pattern.search(line):
                    found.append(f"{rel}:{line_no}: {what}")
            for match in URI_WITH_PASSWORD.finditer(line):
                if not PLACEHOLDER.match(match.group(1)):
                    found.append(f"{rel}:{line_no}: URI with an inline password")
            if path.suffix in CONFIG_SUFFIXES and path.suffix != ".py":
                for match in CONFIG_SECRET.finditer(line):
                    if not PLACEHOLDER.match(match.group(2)) and not line.lstrip().startswith("#"):
                        found.append(f"{rel}:{line_no}: {match.group(1)} set to a literal")
    assert not found, "secrets in tracked files (use environment variables, infra/README.md):\n" + "\n".join(found)


def test_production_endpoints_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LREM_MLFLOW_URI", "http://mlflow.prod:5000")
    monkeypatch.setenv("LREM_MILVUS_URI", "http://milvus.prod:19530")
    cfg = load_config("configs/demo.yaml")
    assert cfg.tracking.mlflow_uri == "http://mlflow.prod:5000"
    assert cfg.index.milvus_uri == "http://milvus.prod:19530"
    monkeypatch.delenv("LREM_MLFLOW_URI")
    assert load_config("configs/demo.yaml").tracking.mlflow_uri.startswith("sqlite:///")


@pytest.mark.parametrize("line", ["postgresql://mlflow:hunter22@db:5432/x", "password: hunter22"])
def test_the_scanner_catches_a_literal(line):
    hits = [m.group(1) for m in URI_WITH_PASSWORD.finditer(line) if not PLACEHOLDER.match(m.group(1))]
    hits += [m.group(2) for m in CONFIG_SECRET.finditer(line) if not PLACEHOLDER.match(m.group(2))]
    assert hits == ["hunter22"]
