"""The embedded Milvus Lite server: start, status, stop, ensure."""

from __future__ import annotations

import os
import socket

import pytest

from components.index import server as milvus_server
from components.index.server import (
    MilvusServerError,
    ensure_server,
    is_loopback_uri,
    server_status,
    start_server,
    stop_server,
)


@pytest.fixture
def lrem_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LREM_HOME", str(tmp_path))
    yield tmp_path
    stop_server()  # never leave a server behind, even when a test fails


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_status_stop(lrem_home, loopback_uri):
    uri = loopback_uri
    pid = start_server(uri)

    assert milvus_server.pid_file().read_text().strip() == str(pid)
    assert milvus_server.pid_file().is_relative_to(lrem_home)
    assert (lrem_home / "milvus" / "data").is_dir()
    assert os.getpgid(pid) == pid  # its own process group
    status = server_status(uri)
    assert status["reachable"] is True
    assert status["pid"] == pid
    assert status["collections"] == []
    assert start_server(uri) == pid  # already running: same server

    assert stop_server() is True
    assert not milvus_server.pid_file().exists()
    assert not _process_exists(pid)
    assert server_status(uri)["reachable"] is False
    assert stop_server() is False
    assert "listening" in milvus_server.log_file().read_text()


def test_ensure_server_starts_once(lrem_home, tmp_path, loopback_uri):
    uri = loopback_uri
    data_dir = tmp_path / "elsewhere"
    pid = ensure_server(uri, data_dir=data_dir)
    assert isinstance(pid, int)
    assert data_dir.is_dir()
    assert ensure_server(uri) is None  # already answering: nothing to do
    assert stop_server() is True


def test_ensure_server_refuses_a_remote_uri(lrem_home):
    with pytest.raises(MilvusServerError, match="not a loopback"):
        ensure_server("http://192.0.2.1:19530")


def test_loopback_uris():
    assert is_loopback_uri("http://127.0.0.1:19530")
    assert is_loopback_uri("http://localhost:19530")
    assert is_loopback_uri("http://[::1]:19530")
    assert not is_loopback_uri("http://milvus.prod.svc:19530")
    assert not is_loopback_uri("./milvus.db")


def test_start_failure_names_the_log(lrem_home):
    # a plain TCP listener holds the port, so the server cannot bind it
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        uri = f"http://127.0.0.1:{holder.getsockname()[1]}"
        with pytest.raises(MilvusServerError, match="milvus.log"):
            start_server(uri, timeout=15)
    assert not milvus_server.pid_file().exists()
