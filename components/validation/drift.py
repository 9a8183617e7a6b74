"""Drift of a data snapshot against the last snapshot that passed the raw-data gate.

The figures of a snapshot (:func:`snapshot_figures`: rows per file, query category and
split mix, null rates of the contract's columns, title digests of a fixed sample of items)
are written to the *baseline file* only after the gate passes (:func:`save_baseline`; by
default ``<state dir>/validation/last_good_<config name>.json``, config
``validation.drift_baseline``). The next run compares its snapshot with it
(:func:`compare`) against the ``validation.drift_*`` bounds; a bound named in
``validation.allow_drift`` (the run conf's ``allow_drift``) may be exceeded. Without a
baseline (the first run) nothing is compared, and the report says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from components.config import CATEGORIES, DRIFT_BOUNDS, ValidationConfig
from components.data import schema

FORMAT = 1
_NULLABLE_COLUMNS = {
    schema.CATALOG_FILE: (*schema.CATALOG_COLUMNS, *schema.OPTIONAL_CATALOG_COLUMNS),
    schema.QUERIES_FILE: schema.QUERY_COLUMNS,
    schema.JUDGMENTS_FILE: (*schema.JUDGMENT_COLUMNS, *schema.OPTIONAL_JUDGMENT_COLUMNS),
}


class BaselineError(ValueError):
    """The baseline file exists but cannot be read: the gate reports it (override: allow_drift)."""


@dataclass
class DriftFigure:
    """One compared figure: ``exceeded`` when the change passes the bound, ``allowed`` when the run allows it."""

    bound: str  # one of DRIFT_BOUNDS
    file: str  # the data file the figure is about
    metric: str
    last_good: float | None
    current: float | None
    change: float | None
    limit: str
    exceeded: bool = False
    allowed: bool = False

    def text(self) -> str:
        def show(value: float | None) -> str:
            if value is None:
                return "absent"
            return f"{value:,.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.4f}"
        change = "" if self.change is None else f", change {self.change:+.4f}"
        return f"{self.metric}: last good {show(self.last_good)}, now {show(self.current)}{change} (limit {self.limit})"


def _title_digest(title: Any) -> str:
    return hashlib.blake2b(str(title).encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def _id_rank(item_id: str) -> str:
    return hashlib.blake2b(item_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def snapshot_figures(frames: dict[str, pd.DataFrame | None], title_sample: int) -> dict:
    """The drift figures of one snapshot from the gate's frames (None: the file was unreadable)."""
    rows, nulls = {}, {}
    for name, columns in _NULLABLE_COLUMNS.items():
        frame = frames.get(name)
        if frame is None:
            continue
        rows[name] = int(len(frame))
        nulls[name] = {c: (float(frame[c].isna().mean()) if c in frame.columns else 1.0) if len(frame) else 0.0
                       for c in columns}
    figures: dict[str, Any] = {"format": FORMAT, "rows": rows, "null_rates": nulls}
    queries = frames.get(schema.QUERIES_FILE)
    if queries is not None and len(queries) and {"category", "split"} <= set(queries.columns):
        n = len(queries)
        counts = queries["category"].map(lambda c: c if isinstance(c, str) else None).value_counts()
        figures["category_share"] = {str(c): round(float(counts.get(c, 0)) / n, 6)
                                     for c in sorted(set(CATEGORIES) | set(counts.index))}
        # of the train and eval queries: a dev split (the router's) does not move it
        scored = int(queries["split"].isin(schema.SPLITS).sum())
        figures["eval_share"] = round(float((queries["split"] == "eval").sum()) / scored, 6) if scored else 0.0
    catalog = frames.get(schema.CATALOG_FILE)
    if catalog is not None and {"item_id", "title"} <= set(catalog.columns):
        ids = [(i, t) for i, t in zip(catalog["item_id"], catalog["title"]) if isinstance(i, str)]
        ranked = sorted(ids, key=lambda pair: _id_rank(pair[0]))[:title_sample]
        figures["title_digests"] = {i: _title_digest(t) for i, t in ranked}
    return figures


def _within(value: float | None, low: float | None, high: float | None) -> bool:
    if value is None:
        return True
    return (low is None or value >= low - 1e-12) and (high is None or value <= high + 1e-12)


def compare(last_good: dict, current: dict, bounds: ValidationConfig) -> list[DriftFigure]:
    """Every compared figure, in a fixed order; a bound set to None is not compared."""
    out: list[DriftFigure] = []
    drop, growth = bounds.drift_max_rows_drop, bounds.drift_max_rows_growth
    if drop is not None or growth is not None:
        limit = f"rows change within {_pct(-drop) if drop is not None else 'any drop'} .. " \
                f"{_pct(growth) if growth is not None else 'any growth'}"
        for name in _NULLABLE_COLUMNS:
            before, now = last_good.get("rows", {}).get(name), current.get("rows", {}).get(name)
            if before is None or now is None:
                continue
            change = (now - before) / before if before else (0.0 if now == 0 else float("inf"))
            out.append(DriftFigure("rows", name, f"{name} rows", before, now, round(change, 6), limit,
                                   not _within(change, -drop if drop is not None else None, growth)))
    share_limit = bounds.drift_max_category_share_change
    before_mix, now_mix = last_good.get("category_share"), current.get("category_share")
    if before_mix is not None and now_mix is not None:
        for category in sorted(set(before_mix) | set(now_mix)):
            before, now = before_mix.get(category, 0.0), now_mix.get(category, 0.0)
            if before > 0 and now == 0:
                out.append(DriftFigure("category_vanished", schema.QUERIES_FILE, f"share of {category} queries", before, now,
                                       round(now - before, 6), "a category with queries keeps some", True))
            elif share_limit is not None and (before or now):
                out.append(DriftFigure("category_mix", schema.QUERIES_FILE, f"share of {category} queries", before, now,
                                       round(now - before, 6), f"+-{share_limit}",
                                       abs(now - before) > share_limit + 1e-12))
    split_limit = bounds.drift_max_split_share_change
    if split_limit is not None and "eval_share" in last_good and "eval_share" in current:
        before, now = last_good["eval_share"], current["eval_share"]
        out.append(DriftFigure("split_mix", schema.QUERIES_FILE, "share of eval queries", before, now, round(now - before, 6),
                               f"+-{split_limit}", abs(now - before) > split_limit + 1e-12))
    null_limit = bounds.drift_max_null_rate_increase
    if null_limit is not None:
        for name, columns in current.get("null_rates", {}).items():
            before_rates = last_good.get("null_rates", {}).get(name)
            if before_rates is None:
                continue
            for column, now in columns.items():
                before = before_rates.get(column)
                if before is None or (before == 0 and now == 0):
                    continue
                out.append(DriftFigure("null_rates", name, f"{name} {column} null rate", before, now,
                                       round(now - before, 6), f"increase <= {null_limit}",
                                       now - before > null_limit + 1e-12))
    title_limit = bounds.drift_max_changed_titles
    before_titles, now_titles = last_good.get("title_digests"), current.get("title_digests")
    if title_limit is not None and before_titles and now_titles is not None:
        kept = [i for i in before_titles if i in now_titles]
        if kept:
            changed = sum(1 for i in kept if before_titles[i] != now_titles[i]) / len(kept)
            out.append(DriftFigure("changed_titles", schema.CATALOG_FILE, f"share of changed titles ({len(kept)} sampled items kept)",
                                   0.0, round(changed, 6), round(changed, 6), f"<= {title_limit}",
                                   changed > title_limit + 1e-12))
    allowed = set(bounds.allow_drift)
    for figure in out:
        figure.allowed = figure.exceeded and ("all" in allowed or figure.bound in allowed)
    return out


def _pct(value: float) -> str:
    return f"{value * 100:+.0f}%"


def default_baseline_path(config_name: str) -> Path:
    from components.paths import state_path

    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in config_name) or "default"
    return state_path("validation") / f"last_good_{safe}.json"


def load_baseline(path: Path) -> dict | None:
    """The last good snapshot's figures; None when there is none yet; BaselineError when unreadable."""
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"cannot read the last good snapshot's figures {path}: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(
            document.get("figures"), dict):
        raise BaselineError(f"{path} is not a drift baseline of format {FORMAT}")
    return document


def save_baseline(path: Path, figures: dict, snapshot: dict) -> None:
    """Write the figures of a snapshot that passed, atomically (``snapshot``: md5, run, time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": FORMAT, "snapshot": snapshot, "figures": figures}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(document, fh, sort_keys=True)
    os.replace(tmp, path)


def report(figures: list[DriftFigure], baseline: dict | None) -> dict:
    """The drift section of the gate's summary (and the drift.json logged beside the Data Docs)."""
    return {
        "last_good_snapshot": (baseline or {}).get("snapshot"),
        "figures": [asdict(f) for f in figures],
        "exceeded": sorted({f.bound for f in figures if f.exceeded}),
        "allowed": sorted({f.bound for f in figures if f.allowed}),
    }


__all__ = ["DRIFT_BOUNDS", "DriftFigure", "BaselineError", "snapshot_figures", "compare", "default_baseline_path",
           "load_baseline", "save_baseline", "report"]
