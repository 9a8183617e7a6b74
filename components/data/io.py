"""Reading and writing the data folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from components.data import schema


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Deterministic JSON Lines: sorted keys, no ASCII escaping, '\n' endings."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: row {line_no} is not valid JSON: {exc}") from exc
    return rows


@dataclass
class World:
    """The loaded data folder."""

    catalog: pd.DataFrame
    queries: pd.DataFrame
    judgments: pd.DataFrame

    def relevant(self) -> dict[str, set[str]]:
        """query_id -> set of relevant item ids."""
        out: dict[str, set[str]] = {}
        for qid, iid in zip(self.judgments["query_id"], self.judgments["item_id"]):
            out.setdefault(qid, set()).add(iid)
        return out

    def graded(self) -> dict[str, dict[str, int]]:
        """query_id -> {item id: relevance grade}; 1 for every judgment when the data has no grades."""
        grades = self.judgments["relevance"] if "relevance" in self.judgments.columns else [1] * len(self.judgments)
        out: dict[str, dict[str, int]] = {}
        for qid, iid, grade in zip(self.judgments["query_id"], self.judgments["item_id"], grades):
            out.setdefault(qid, {})[iid] = 1 if grade is None or grade != grade else int(grade)
        return out

    def split(self, name: str) -> pd.DataFrame:
        return self.queries[self.queries["split"] == name].reset_index(drop=True)


def load_world(data_dir: str | Path, max_items: int | None = None, max_queries: int | None = None) -> World:
    """Load catalog, queries and judgments (not the teacher-only knowledge file).

    ``max_queries`` keeps the first N queries of each split proportionally (first rows);
    ``max_items`` keeps the first N items plus every item judged relevant to a kept query.
    """
    data_dir = Path(data_dir)
    catalog = pd.DataFrame(read_jsonl(data_dir / schema.CATALOG_FILE))
    queries = pd.DataFrame(read_jsonl(data_dir / schema.QUERIES_FILE))
    judgments = pd.DataFrame(read_jsonl(data_dir / schema.JUDGMENTS_FILE))
    if max_queries is not None and len(queries) > max_queries:
        parts = []
        for split_name, group in queries.groupby("split", sort=True):
            share = max(1, round(max_queries * len(group) / len(queries)))
            parts.append(group.head(share))
        queries = pd.concat(parts).sort_index().reset_index(drop=True)
        judgments = judgments[judgments["query_id"].isin(set(queries["query_id"]))].reset_index(drop=True)
    if max_items is not None and len(catalog) > max_items:
        keep = set(catalog["item_id"].head(max_items)) | set(judgments["item_id"])
        catalog = catalog[catalog["item_id"].isin(keep)].reset_index(drop=True)
    return World(catalog=catalog, queries=queries, judgments=judgments)


def load_knowledge(data_dir: str | Path) -> dict:
    """The world's knowledge: read by the teacher only."""
    return json.loads((Path(data_dir) / schema.KNOWLEDGE_FILE).read_text(encoding="utf-8"))
