"""The serving-cost bench's services keep their synthetic traffic out of the state dir's event store."""

import importlib.util
from pathlib import Path

import yaml

from components.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_serving_cost", ROOT / "bench" / "bench_serving_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_services_log_to_an_event_store_of_their_own(tmp_path, monkeypatch):
    monkeypatch.setenv("LREM_EVENT_STORE_URL", "sqlite:///somewhere/else/events.db")
    raw = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    configs = _bench().service_configs(raw, tmp_path, 50001, 50002)
    plain, routed = (load_config(configs[name]) for name in ("plain", "routed"))
    store = f"sqlite:///{tmp_path / 'bench-events.db'}"
    assert plain.serve.event_store_url == routed.serve.event_store_url == store  # not the environment's, not the state dir's
    assert (plain.serve.port, plain.serve.routing, plain.serve.cache_size) == (50001, False, 0)
    assert (routed.serve.port, routed.serve.routing) == (50002, True)
    assert plain.name == load_config(ROOT / "configs" / "smoke.yaml").name  # the rest is the config's
