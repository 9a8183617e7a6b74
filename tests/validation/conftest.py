"""Tiny data folders for the validation suites: a valid world that each test breaks one way."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import settings

from components.data import schema
from components.data.io import write_jsonl


def good_catalog() -> list[dict]:
    return [
        {"item_id": f"I{i}", "title": f"red shoe {i}", "product_type": "shoe", "department": "shoes",
         "brand": "acme", "price": 10.0 + i, "attributes": {"color": "red"}}
        for i in range(1, 6)
    ]


def good_queries() -> list[dict]:
    return [
        {"query_id": "Q1", "text": "red shoes", "category": "plain", "split": "train"},
        {"query_id": "Q2", "text": "what shoe for running", "category": "qa", "split": "train"},
        {"query_id": "Q3", "text": "shoes not blue", "category": "negative", "split": "train"},
        {"query_id": "Q4", "text": "like a sneaker", "category": "alternative", "split": "eval"},
    ]


def good_judgments() -> list[dict]:
    return [
        {"query_id": "Q1", "item_id": "I1"},
        {"query_id": "Q1", "item_id": "I2"},
        {"query_id": "Q2", "item_id": "I3"},
        {"query_id": "Q3", "item_id": "I4"},
        {"query_id": "Q4", "item_id": "I5"},
    ]


def good_knowledge() -> dict:
    return {
        "source": "test",
        "product_types": {"shoe": {"department": "shoes", "synonyms": ["sneaker"], "keywords": ["footwear"],
                                   "attributes": {"color": ["red", "blue"]}, "negatable_attributes": ["color"],
                                   "standard_brands": ["acme"], "premium_brands": [], "price_range": [5.0, 50.0]}},
        "brands": {"acme": {"department": "shoes", "product_types": ["shoe"], "tier": "standard"}},
        "premium_brands": {},
        "uses": [{"use": "running", "product_types": ["shoe"]}],
        "facts": [{"fact": "what sprinters wear", "answer": "spikes", "statement": "Sprinters wear spikes.",
                   "product_types": ["shoe"]}],
        "budget_words": ["budget"],
        "negation_words": ["not"],
    }


def write_knowledge(data_dir: Path, knowledge: dict) -> None:
    (data_dir / schema.KNOWLEDGE_FILE).write_text(json.dumps(knowledge, indent=2, sort_keys=True) + "\n",
                                                  encoding="utf-8")


def good_triplets() -> list[dict]:
    return [
        {"query_id": "Q1", "query": "red shoes", "category": "plain", "cot": "red, shoe",
         "item_id": "I1", "item_title": "red shoe 1"},
        {"query_id": "Q1", "query": "red shoes", "category": "plain", "cot": "red, footwear",
         "item_id": "I2", "item_title": "red shoe 2"},
        {"query_id": "Q2", "query": "what shoe for running", "category": "qa", "cot": "running, shoe, light",
         "item_id": "I3", "item_title": "red shoe 3"},
    ]


@pytest.fixture
def make_data(tmp_path: Path):
    """Write a data folder; any file given replaces the good one."""

    def _make(catalog: list[dict] | None = None, queries: list[dict] | None = None,
              judgments: list[dict] | None = None, knowledge: dict | None = None, name: str = "data") -> Path:
        data_dir = tmp_path / name
        data_dir.mkdir(exist_ok=True)
        write_jsonl(data_dir / schema.CATALOG_FILE, good_catalog() if catalog is None else catalog)
        write_jsonl(data_dir / schema.QUERIES_FILE, good_queries() if queries is None else queries)
        write_jsonl(data_dir / schema.JUDGMENTS_FILE, good_judgments() if judgments is None else judgments)
        write_knowledge(data_dir, good_knowledge() if knowledge is None else knowledge)
        return data_dir

    return _make


@pytest.fixture
def make_triplets(tmp_path: Path):
    def _make(rows: list[dict]) -> Path:
        path = tmp_path / "triplets.jsonl"
        write_jsonl(path, rows)
        return path

    return _make


@pytest.fixture
def rows() -> dict[str, list[dict]]:
    """Fresh copies of the good rows, for a test to break."""
    return {"catalog": good_catalog(), "queries": good_queries(),
            "judgments": good_judgments(), "triplets": good_triplets()}


# Hypothesis: derandomized (CI runs the same examples every time), no deadline (the gate's
# runtime varies with the machine's load); example counts are set per test.
settings.register_profile("lrem", derandomize=True, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "lrem"))
