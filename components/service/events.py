"""The event store: every search served and every feedback event accepted.

SQLite under the state folder by default (``<state>/serving/events.db``); any SQLAlchemy
URL in ``serve.event_store_url`` (e.g. ``postgresql+psycopg://user@host/lrem``) in
production. Schema (created on first use):

``search_events`` - one row per 200 response of ``POST /search``

    request_id     TEXT  PK   uuid4 hex, returned to the client
    ts             FLOAT      unix time the request arrived
    user_id        TEXT       as sent
    experiment     TEXT       experiment name (its salt splits the users)
    mode           TEXT       "split" (one arm) or "interleave" (team draft of both arms)
    arm            TEXT       "champion" | "challenger" | "interleaved"
    model_version  TEXT       registry version(s) that served, e.g. "3" or "3|4" (interleave)
    collection     TEXT       Milvus collection(s) searched
    query          TEXT       the query
    k              INT        results asked for
    reasoning      BOOL       CoT generated (True) or direct embedding
    cot            TEXT       the generated CoT (interleave: champion's, then " || ", challenger's)
    item_ids       TEXT       JSON list, rank order
    scores         TEXT       JSON list of similarity scores, same order
    teams          TEXT       JSON list of the team of each item (interleave), else NULL
    latency_ms     FLOAT      server-side time from arrival to response
    queue_ms       FLOAT      part of it spent waiting for a batch

``feedback_events`` - one row per 200 response of ``POST /feedback``

    event_id       INT   PK   autoincrement
    ts             FLOAT      unix time
    request_id     TEXT       the search it answers (indexed)
    item_id        TEXT       an item shown by that search
    event          TEXT       "click" | "purchase"
    arm            TEXT       arm of the search
    team           TEXT       interleave: the team that placed the item, else NULL
    position       INT        1-based rank the item was shown at
"""

from __future__ import annotations

import json
import threading
from typing import Any

from components.paths import state_path


def default_url() -> str:
    return "sqlite:///" + str(state_path("serving") / "events.db")


class EventStore:
    def __init__(self, url: str | None = None):
        import sqlalchemy as sa

        self.url = url or default_url()
        kwargs: dict[str, Any] = {}
        if self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _wal(dbapi_conn, _record):  # readers do not block the writer
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()
        meta = sa.MetaData()
        self.searches = sa.Table(
            "search_events", meta,
            sa.Column("request_id", sa.String(64), primary_key=True),
            sa.Column("ts", sa.Float, nullable=False, index=True),
            sa.Column("user_id", sa.String(256), nullable=False),
            sa.Column("experiment", sa.String(128), nullable=False),
            sa.Column("mode", sa.String(16), nullable=False),
            sa.Column("arm", sa.String(16), nullable=False),
            sa.Column("model_version", sa.String(64)),
            sa.Column("collection", sa.String(256)),
            sa.Column("query", sa.Text, nullable=False),
            sa.Column("k", sa.Integer, nullable=False),
            sa.Column("reasoning", sa.Boolean, nullable=False),
            sa.Column("cot", sa.Text),
            sa.Column("item_ids", sa.Text, nullable=False),
            sa.Column("scores", sa.Text),
            sa.Column("teams", sa.Text),
            sa.Column("latency_ms", sa.Float),
            sa.Column("queue_ms", sa.Float),
        )
        self.feedback = sa.Table(
            "feedback_events", meta,
            sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("ts", sa.Float, nullable=False),
            sa.Column("request_id", sa.String(64), nullable=False, index=True),
            sa.Column("item_id", sa.String(256), nullable=False),
            sa.Column("event", sa.String(16), nullable=False),
            sa.Column("arm", sa.String(16)),
            sa.Column("team", sa.String(16)),
            sa.Column("position", sa.Integer),
        )
        meta.create_all(self.engine)
        self._lock = threading.Lock()  # one writer at a time (SQLite); cheap elsewhere

    # ------------------------------------------------------------------ writes
    def log_search(self, row: dict[str, Any]) -> None:
        row = dict(row)
        for key in ("item_ids", "scores", "teams"):
            if row.get(key) is not None and not isinstance(row[key], str):
                row[key] = json.dumps(row[key])
        with self._lock, self.engine.begin() as conn:
            conn.execute(self.searches.insert(), row)

    def log_feedback(self, row: dict[str, Any]) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(self.feedback.insert(), row)

    # ------------------------------------------------------------------ reads
    def get_search(self, request_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            found = conn.execute(self.searches.select().where(self.searches.c.request_id == request_id)).mappings().first()
        return _decode(dict(found)) if found else None

    def counts(self) -> dict[str, int]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return {"search_events": int(conn.execute(sa.select(sa.func.count()).select_from(self.searches)).scalar()),
                    "feedback_events": int(conn.execute(sa.select(sa.func.count()).select_from(self.feedback)).scalar())}

    def frames(self, experiment: str | None = None, since: float | None = None):
        """(searches, feedback) as pandas DataFrames, JSON columns decoded."""
        import pandas as pd

        q_s = self.searches.select()
        if experiment is not None:
            q_s = q_s.where(self.searches.c.experiment == experiment)
        if since is not None:
            q_s = q_s.where(self.searches.c.ts >= since)
        with self.engine.connect() as conn:
            searches = pd.DataFrame(conn.execute(q_s).mappings().all(), columns=[c.name for c in self.searches.c])
            feedback = pd.DataFrame(conn.execute(self.feedback.select()).mappings().all(),
                                    columns=[c.name for c in self.feedback.c])
        for key in ("item_ids", "scores", "teams"):
            searches[key] = [json.loads(v) if isinstance(v, str) else None for v in searches[key]]
        feedback = feedback[feedback["request_id"].isin(set(searches["request_id"]))].reset_index(drop=True)
        return searches, feedback

    def close(self) -> None:
        self.engine.dispose()


def recent_queries(url: str | None, days: float, until: float | None = None) -> list[str]:
    """The query texts of the store's searches of the ``days`` days before ``until`` (epoch seconds;
    default now), in the order logged (repeats kept)."""
    import time

    until = time.time() if until is None else float(until)
    store = EventStore(url)
    try:
        searches, _ = store.frames(since=until - days * 86400.0)
    finally:
        store.close()
    if not len(searches):
        return []
    searches = searches[searches["ts"] <= until].sort_values("ts", kind="stable")
    return searches["query"].astype(str).tolist()


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("item_ids", "scores", "teams"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row
