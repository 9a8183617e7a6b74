"""File layout and columns of the versioned data folder (``data/``, tracked by ``data.dvc``).

All files are JSON Lines (one object per line, keys sorted, UTF-8) so that the generator's
output is byte-identical for a seed and diffs stay readable for analysts.
"""

from __future__ import annotations

from components.config import CATEGORIES

CATALOG_FILE = "catalog.jsonl"
QUERIES_FILE = "queries.jsonl"
JUDGMENTS_FILE = "judgments.jsonl"
KNOWLEDGE_FILE = "knowledge.json"  # read by the teacher only, never by the model or the eval

# catalog.jsonl: one item per line. `attributes` is a flat mapping of attribute name -> value.
CATALOG_COLUMNS = ("item_id", "title", "product_type", "department", "brand", "price", "attributes")
# queries.jsonl: one query per line; `split` is "train" or "eval" (split by query), or the optional
# "dev": labelled queries no trainer reads (the reasoning router can be fitted on them: routing.use_dev).
QUERY_COLUMNS = ("query_id", "text", "category", "split")
# judgments.jsonl: one relevant (query, item) pair per line.
JUDGMENT_COLUMNS = ("query_id", "item_id")
# Optional columns, written by `lrem data import` for real data: an item's body text (catalog
# `text`, embedded after the title where a model reads documents) and a graded relevance
# (judgments `relevance`, an int >= 1; absent means 1). `price` may be null there (no price).
OPTIONAL_CATALOG_COLUMNS = ("text",)
OPTIONAL_JUDGMENT_COLUMNS = ("relevance",)

SPLITS = ("train", "eval")  # required: every data set has both
OPTIONAL_SPLITS = ("dev",)
ALL_SPLITS = SPLITS + OPTIONAL_SPLITS
UNTRAINED_SPLITS = ("eval", "dev")  # no trainer may read them (a triplet of one fails validation)

# knowledge.json is REQUIRED, everywhere: the gate fails without it, load_knowledge raises
# DataFileError, the teacher cannot reason without product types (`lrem data import` writes
# a minimal one for real data). The full contract: docs/data-contract.md.
KNOWLEDGE_REQUIRED = True

_TEXT = {"type": "string"}
_NAME = {"type": "string", "pattern": r"\S"}  # not blank
_TEXTS = {"type": "array", "items": _TEXT}
_NAMES = {"type": "array", "items": _NAME}
_PRICE_PAIR = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
# JSON Schema (draft 2020-12) of knowledge.json: what the teacher and the backbone corpus read.
# Other top-level keys are allowed (and ignored); product types named elsewhere must exist
# (checked by knowledge_problems, which JSON Schema cannot express).
KNOWLEDGE_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["product_types"],
    "properties": {
        "source": _TEXT,
        "product_types": {
            "type": "object", "minProperties": 1, "propertyNames": _NAME,
            "additionalProperties": {
                "type": "object",
                "required": ["synonyms", "attributes"],
                "properties": {
                    "department": _TEXT, "synonyms": _TEXTS, "keywords": _TEXTS,
                    "attributes": {"type": "object", "additionalProperties": _TEXTS},
                    "negatable_attributes": _TEXTS, "standard_brands": _TEXTS, "premium_brands": _TEXTS,
                    "price_range": _PRICE_PAIR,
                },
            },
        },
        "brands": {"type": "object", "propertyNames": _NAME, "additionalProperties": {
            "type": "object",
            "properties": {"department": _TEXT, "product_types": _NAMES, "tier": _TEXT}}},
        "premium_brands": {"type": "object", "propertyNames": _NAME, "additionalProperties": {
            "type": "object", "required": ["product_type", "price_band"],
            "properties": {"product_type": _NAME, "price_band": _PRICE_PAIR}}},
        "departments": {"type": "object", "additionalProperties": _TEXTS},
        "budget_words": _TEXTS,
        "negation_words": _TEXTS,
        "uses": {"type": "array", "items": {
            "type": "object", "required": ["use", "product_types"],
            "properties": {"use": _NAME, "product_types": {**_NAMES, "minItems": 1}}}},
        "facts": {"type": "array", "items": {
            "type": "object", "required": ["fact", "answer", "statement", "product_types"],
            "properties": {"fact": _NAME, "answer": _NAME, "statement": _TEXT, "kind": _TEXT,
                           "product_types": {**_NAMES, "minItems": 1}}}},
    },
}
MAX_KNOWLEDGE_PROBLEMS = 20


def format_json_path(path) -> str:
    """``$.product_types["Chef Knife"].synonyms[2]``: where in a JSON document."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out


def knowledge_problems(document) -> list[tuple[tuple, str]]:
    """(JSON path, message) of each way ``document`` breaks the knowledge contract (at most 20)."""
    from jsonschema import Draft202012Validator

    problems: list[tuple[tuple, str]] = []
    for error in sorted(Draft202012Validator(KNOWLEDGE_SCHEMA).iter_errors(document),
                        key=lambda e: [str(p) for p in e.absolute_path]):
        problems.append((tuple(error.absolute_path), _short(error.message)))
        if len(problems) >= MAX_KNOWLEDGE_PROBLEMS:
            return problems
    if problems or not isinstance(document, dict):
        return problems
    types = document["product_types"]
    refs: list[tuple[tuple, object]] = []
    for brand, info in (document.get("premium_brands") or {}).items():
        refs.append((("premium_brands", brand, "product_type"), info.get("product_type")))
    for key in ("uses", "facts"):
        for index, entry in enumerate(document.get(key) or []):
            refs += [((key, index, "product_types", k), name) for k, name in enumerate(entry["product_types"])]
    for path, name in refs:
        if name not in types:
            problems.append((path, f"{_short(repr(name))} is not a key of product_types"))
    for name, info in types.items():
        for k, attr in enumerate(info.get("negatable_attributes") or []):
            if attr not in info["attributes"]:
                problems.append((("product_types", name, "negatable_attributes", k),
                                 f"{_short(repr(attr))} is not one of this type's attributes"))
    return problems[:MAX_KNOWLEDGE_PROBLEMS]


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = [
    "CATALOG_FILE", "QUERIES_FILE", "JUDGMENTS_FILE", "KNOWLEDGE_FILE",
    "CATALOG_COLUMNS", "QUERY_COLUMNS", "JUDGMENT_COLUMNS", "CATEGORIES", "SPLITS", "OPTIONAL_SPLITS", "ALL_SPLITS", "UNTRAINED_SPLITS",
    "OPTIONAL_CATALOG_COLUMNS", "OPTIONAL_JUDGMENT_COLUMNS", "KNOWLEDGE_REQUIRED", "KNOWLEDGE_SCHEMA",
    "knowledge_problems", "format_json_path",
]
