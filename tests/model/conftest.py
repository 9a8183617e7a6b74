import pytest

from components.config import ModelConfig
from components.model.lrem import LREMModel

CORPUS = [
    "Northpeak waterproof nylon hiking backpack 30L", "Lumora black leather office chair",
    "stainless steel travel mug 500ml", "keep my coffee hot on the commute", "cheap alternative to Lumora",
    "running shoes not leather", "gear for the sport played at Wimbledon", "tennis racket graphite",
    "insulated tumbler, thermos, vacuum flask", "ergonomic mesh desk chair",
] * 20


@pytest.fixture(autouse=True)
def own_event_store(tmp_path, monkeypatch):
    """The router reads the event store's traffic (routing.traffic_budget): an empty store of the test's own,
    never the repository's state dir (after a `make demo` it holds that demo's traffic)."""
    monkeypatch.setenv("LREM_EVENT_STORE_URL", f"sqlite:///{tmp_path / 'own-events.db'}")


@pytest.fixture(scope="session")
def tiny_model():
    cfg = ModelConfig(vocab_size=600, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_cot_tokens=8)
    return LREMModel.create(cfg, CORPUS)
