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
# queries.jsonl: one query per line; `split` is "train" or "eval" (split by query).
QUERY_COLUMNS = ("query_id", "text", "category", "split")
# judgments.jsonl: one relevant (query, item) pair per line.
JUDGMENT_COLUMNS = ("query_id", "item_id")
# Optional columns, written by `lrem data import` for real data: an item's body text (catalog
# `text`, embedded after the title where a model reads documents) and a graded relevance
# (judgments `relevance`, an int >= 1; absent means 1). `price` may be null there (no price).
OPTIONAL_CATALOG_COLUMNS = ("text",)
OPTIONAL_JUDGMENT_COLUMNS = ("relevance",)

SPLITS = ("train", "eval")
__all__ = [
    "CATALOG_FILE", "QUERIES_FILE", "JUDGMENTS_FILE", "KNOWLEDGE_FILE",
    "CATALOG_COLUMNS", "QUERY_COLUMNS", "JUDGMENT_COLUMNS", "CATEGORIES", "SPLITS",
    "OPTIONAL_CATALOG_COLUMNS", "OPTIONAL_JUDGMENT_COLUMNS",
]
