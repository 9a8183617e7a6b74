"""A tiny real serving stack per test module: Milvus Lite server, MLflow SQLite registry with two
registered LREM versions (champion v1, challenger v2), one collection each, a seeded demo world."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_stack(home: Path, milvus_uri: str, model_name: str = "lrem-svc", prefix: str = "svc_items_v"):
    import mlflow

    from components import tracking
    from components.config import (IndexConfig, ModelConfig, OnlineConfig, PipelineConfig, ServeConfig,
                                   TrackingConfig, WorldConfig)
    from components.data.generate import generate_world
    from components.data.io import load_world
    from components.index.collections import build_item_index
    from components.model.lrem import LREMModel
    from components.registry.models import log_lrem_model

    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    generate_world(WorldConfig(n_items=200, n_queries=100), data)
    world = load_world(data)
    db = f"sqlite:///{home / 'mlflow.db'}"
    cfg = PipelineConfig(
        tracking=TrackingConfig(mlflow_uri=db, experiment="svc-test", model_name=model_name),
        index=IndexConfig(milvus_uri=milvus_uri, collection_prefix=prefix, serving_alias=f"{prefix}serving",
                          index_type="FLAT"),
        serve=ServeConfig(poll_seconds=0.5, max_k=50, max_query_chars=200, max_batch=8, batch_wait_ms=5.0,
                          event_store_url=f"sqlite:///{home / 'events.db'}"),
        online=OnlineConfig(experiment="svc-ab", challenger_share=0.5, n_users=50, max_requests=60, max_seconds=60,
                            concurrency=3, k=10),
    )
    exp_id = tracking.configure(cfg)
    corpus = world.catalog["title"].tolist() + world.queries["text"].tolist()
    client = mlflow.MlflowClient()
    for version, seed in ((1, 0), (2, 1)):
        mcfg = ModelConfig(vocab_size=600, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_cot_tokens=6, seed=seed)
        model = LREMModel.create(mcfg, corpus)
        saved = model.save(home / f"model_v{version}")
        with mlflow.start_run(experiment_id=exp_id) as run:
            mlflow.set_tag("data_uri", str(data))
            info = log_lrem_model(saved, registered_name=model_name)
        assert str(info.registered_model_version) == str(version)
        name = f"{prefix}{version}"
        build_item_index(milvus_uri, name, world.catalog["item_id"].tolist(), world.catalog["title"].tolist(),
                         model.embed_items, cfg.index)
        client.set_model_version_tag(model_name, str(version), "milvus_collection", name)
        client.set_model_version_tag(model_name, str(version), "mlflow_run_id", run.info.run_id)
    client.set_registered_model_alias(model_name, "champion", "1")
    client.set_registered_model_alias(model_name, "challenger", "2")
    return cfg, world


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from components.index.server import start_server, stop_server

    home = tmp_path_factory.mktemp("svc_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LREM_HOME", str(home))
        uri = f"http://127.0.0.1:{free_port()}"
        start_server(uri, timeout=60)
        try:
            cfg, world = build_stack(home, uri)
            yield cfg, world, home
        finally:
            stop_server()


class RunningService:
    def __init__(self, cfg):
        import uvicorn

        from components.service.app import build

        self.app = build(cfg)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("service did not start")
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def service(stack):
    cfg, world, home = stack
    running = RunningService(cfg)
    try:
        yield running
    finally:
        running.stop()
