"""A real Milvus Lite server per test module, on a free loopback port, state in a tmp dir."""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def loopback_uri() -> str:
    """An http uri on a loopback port that nothing listens on (yet)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    from components.index.server import start_server, stop_server

    home = tmp_path_factory.mktemp("lrem_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LREM_HOME", str(home))
        uri = f"http://127.0.0.1:{free_port()}"
        start_server(uri, timeout=60)
        try:
            yield uri
        finally:
            stop_server()


def title_vector(title: str, dim: int = 16) -> np.ndarray:
    """A fixed pseudo-random unit vector per title (a stand-in for the LREM encoder)."""
    seed = int.from_bytes(hashlib.sha256(title.encode()).digest()[:8], "little")
    vec = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vec / np.linalg.norm(vec)


def _embed_titles(titles: list[str]) -> np.ndarray:
    return np.stack([title_vector(t) for t in titles])


@pytest.fixture
def embed_titles():
    """A deterministic embed_fn: titles -> (n, 16) unit vectors."""
    return _embed_titles
