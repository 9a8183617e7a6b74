"""Great Expectations suites for the raw data folder and the teacher's triplets.

Each JSON Lines file becomes a pandas dataframe asset of an ephemeral GX context and is
checked by its own expectation suite; Data Docs are written as HTML under ``docs_dir``
whether or not the checks pass, so a failed nightly run still leaves a report to log.

Row numbers in reports are 1-based line numbers of the JSON Lines file: every frame is
indexed by line number before GX sees it, and GX reports unexpected rows by index.

Nothing a data file holds makes the gate crash: undecodable lines (invalid UTF-8, invalid
JSON, not an object) are reported per line, in the error and in Data Docs (a
``<file>_lines`` suite); a value of the wrong JSON type (a title that is a number, a price
that is a string) is reported by a ``type_of_<column>`` check, and the other checks see it
as text (or, for numbers, as missing) so they run as usual.

The reading rules (UTF-8 without BOM, standard JSON, no duplicate keys, bounded nesting, no
lone surrogates) are the loaders' own (:func:`components.data.io.parse_line`), so what the
gate accepts every later step loads. Only the contract's columns reach the suites (other
keys are ignored), so a key in the data can never collide with a column the suites derive.
A data file that resolves outside the data folder (a symlink elsewhere than DVC's cache) is
reported by name and never read. The whole contract: docs/data-contract.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from components.config import CATEGORIES, ValidationConfig
from components.data import schema
from components.data.io import LINE_RULES, LineProblem, iter_jsonl_lines, parse_line, read_knowledge_text, value_position
from components.validation import drift as drift_rules
from components.validation import text_rules
from components.validation.errors import DataFileError, DataValidationError

TRIPLET_COLUMNS = ("query_id", "query", "category", "cot", "item_id", "item_title")
# Columns the suites add to a frame (computed from the file's own columns).
DERIVED_COLUMNS = ("n_splits_of_query_id", "cot_word_count", "judgments_of_eval_query", "title_chars",
                   "text_chars", "line_error", "splits_of_normalized_text", "pair_issue",
                   "item_id_not_in_catalog", "query_id_not_in_queries", "problem")
ISSUE_PREFIX = "issue_of_"  # derived column: what is wrong with a value (None: nothing)
COLLISION_SUFFIX = "_collision"  # derived column: distinct ids that read as one
# The columns of each file that reach the suites (the contract's, required and optional).
CONTRACT_COLUMNS: dict[str, tuple[str, ...]] = {
    schema.CATALOG_FILE: (*schema.CATALOG_COLUMNS, *schema.OPTIONAL_CATALOG_COLUMNS),
    schema.QUERIES_FILE: schema.QUERY_COLUMNS,
    schema.JUDGMENTS_FILE: (*schema.JUDGMENT_COLUMNS, *schema.OPTIONAL_JUDGMENT_COLUMNS),
}
TYPE_PREFIX = "type_of_"  # derived column: the JSON type of each value of a column

# JSON type names (see _json_type) each column may hold; columns not named are not type-checked.
_STR, _NULLABLE_STR, _NUMBER = ("str",), ("str", "null"), ("int", "float", "null")
COLUMN_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    schema.CATALOG_FILE: {"item_id": _STR, "title": _STR, "product_type": _STR, "department": _STR,
                          "brand": _NULLABLE_STR, "price": _NUMBER, "attributes": ("object", "null"),
                          "text": _NULLABLE_STR},
    schema.QUERIES_FILE: {"query_id": _STR, "text": _STR, "category": _STR, "split": _STR},
    schema.JUDGMENTS_FILE: {"query_id": _STR, "item_id": _STR, "relevance": ("int",)},
}
_NUMERIC_COLUMNS = {"price", "relevance"}
_TYPE_WORDS = {"str": "a string", "null": "null", "int": "an integer", "float": "a number", "object": "an object"}


# Outlier bounds of the raw-data gate: the ``validation`` section of the config.
RawBounds = ValidationConfig

_LINE = "line"  # index name of every frame: GX then shows line numbers in Data Docs
_MAX_ROWS_SHOWN = 20
_MAX_SAMPLES_SHOWN = 5
_MAX_SAMPLE_CHARS = 80


# ---------------------------------------------------------------------------------------
# Reading: line-numbered frames, invalid JSON reported as a failure (not a crash)


@dataclass
class _FileCheck:
    """One file to validate: its frame (None when unreadable) and its expectations."""

    name: str
    frame: pd.DataFrame | None
    failures: list[dict] = field(default_factory=list)  # read errors, found before GX runs
    expectations: list = field(default_factory=list)
    suite: str | None = None  # suite / asset name (default: the file's stem)
    docs_only: bool = False  # its GX results go to Data Docs; the failures are already in `failures`


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float" if value == value else "null"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _typed_rows(rows: list[dict], name: str) -> tuple[list[dict], dict[str, list[str]]]:
    """Rows whose values of the wrong JSON type are made harmless, and the type of every value.

    A value of the wrong type becomes its JSON text (numeric columns: missing), so that GX
    rules on the column evaluate instead of raising; the ``type_of_<column>`` check names it.
    """
    expected = COLUMN_TYPES.get(name, {})
    present = [c for c in expected if any(c in row for row in rows)]
    types: dict[str, list[str]] = {c: [] for c in present}
    cleaned = []
    for row in rows:
        row = dict(row)
        for column in present:
            kind = _json_type(row.get(column))
            types[column].append(kind)
            if kind != "null" and kind not in expected[column]:  # nulls: the not-null rules
                row[column] = None if column in _NUMERIC_COLUMNS else json.dumps(row[column], ensure_ascii=False)
        for column, value in row.items():  # unhashable values elsewhere would break grouping and sets
            if column not in present and isinstance(value, (dict, list)) and column != "attributes":
                row[column] = json.dumps(value, ensure_ascii=False, sort_keys=True)
        cleaned.append(row)
    return cleaned, types


def _read_jsonl_frame(path: Path, name: str, data_dir: Path | None = None) -> tuple[pd.DataFrame | None, list[dict]]:
    """Frame indexed by 1-based line number; every unreadable line becomes a failure.

    When any line is unreadable the frame is None (the file's rules are not run on part of
    it) and the failures, one per kind (invalid UTF-8, invalid JSON, not an object), name
    every such line.
    """
    frame, failures, _ = _read_jsonl(path, name, data_dir)
    return frame, failures


def _trusted_roots(data_dir: Path) -> list[Path]:
    """DVC's caches a data file may link into: of the repo holding the data folder, of this one, and
    the state dir's (``$LREM_HOME/dvc/config``, components/data/versioning.py)."""
    import configparser

    from components.paths import REPO_ROOT, state_dir

    roots: list[Path] = []
    repos = [p for p in (data_dir, *data_dir.parents) if (p / ".dvc").is_dir()][:1] + [REPO_ROOT]
    configs = []
    for repo in repos:
        dvc_dir = repo / ".dvc"
        roots.append((dvc_dir / "cache").resolve())
        configs += [dvc_dir / "config", dvc_dir / "config.local"]
    configs.append(state_dir() / "dvc" / "config")
    for config in configs:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            parser.read(config, encoding="utf-8")
            cache = parser.get("cache", "dir", fallback=None)
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        if cache:  # a relative cache.dir is relative to its config file's folder, as in DVC
            roots.append((config.parent / cache).resolve())
    return roots


def _outside(path: Path, data_dir: Path | None) -> bool:
    """True when ``path`` resolves outside ``data_dir`` and outside DVC's cache."""
    if data_dir is None:
        return False
    root = data_dir.resolve()
    target = path.resolve()
    if target == root or root in target.parents:
        return False
    return not any(target == r or r in target.parents for r in _trusted_roots(data_dir))


def _unreadable_file(path: Path, name: str, data_dir: Path | None) -> dict | None:
    """A failure when the file is missing, not a regular file, or outside the data folder."""
    if not path.exists() and not path.is_symlink():
        return _failure(name, "file_exists", None, f"{name}: file not found at {path}", description="file exists")
    if _outside(path, data_dir):  # named, never read: its content is not the data's to quote
        return _failure(name, "inside_data_folder", None,
                        f"{name}: resolves outside the data folder (a link elsewhere than DVC's cache); "
                        "not read -- every data file lies in the data folder or DVC's cache",
                        description="every data file lies in the data folder or DVC's cache")
    if not path.is_file():
        return _failure(name, "regular_file", None, f"{name}: not a regular file -- a data file is a regular file",
                        description="a data file is a regular file")
    return None


def _read_jsonl(path: Path, name: str, data_dir: Path | None = None
                ) -> tuple[pd.DataFrame | None, list[dict], pd.DataFrame | None]:
    """(frame, read failures, line frame): the line frame has one row per non-blank line with
    ``line_error`` (None for a good line), for the Data Docs of the unreadable lines."""
    problem = _unreadable_file(path, name, data_dir)
    if problem is not None:
        return None, [problem], None
    rows, line_numbers, all_lines, line_errors = [], [], [], []
    bad: dict[str, tuple[list[int], list[str], str]] = {}  # kind -> (rows, samples, first error)
    for line_no, raw in iter_jsonl_lines(path):
        try:
            row = parse_line(raw)
        except LineProblem as exc:
            all_lines.append(line_no)
            line_errors.append(f"{LINE_RULES[exc.kind][0]}: {exc.detail}")
            rows_of, samples, _ = bad.setdefault(exc.kind, ([], [], exc.detail))
            rows_of.append(line_no)
            if len(samples) < _MAX_SAMPLES_SHOWN:
                samples.append(raw[:4 * _MAX_SAMPLE_CHARS].decode("utf-8", errors="replace").rstrip("\r\n"))
            continue
        all_lines.append(line_no)
        line_errors.append(None)
        rows.append(row)
        line_numbers.append(line_no)
    lines = pd.DataFrame({"line_error": line_errors}, index=pd.Index(all_lines, name=_LINE), dtype=object)
    if bad:
        failures = []
        for kind, (bad_rows, samples, first) in bad.items():
            what, rule = LINE_RULES[kind]
            message = (f"{name}: {what} at rows {_format_rows(bad_rows)}: sample values "
                       f"{_format_samples(samples)} ({first}) -- {rule}")
            failures.append(_failure(name, kind, None, message, rows=bad_rows, samples=samples, description=rule))
        return None, failures, lines
    if not rows:
        return None, [_failure(name, "not_empty", None, f"{name}: the file has no rows -- a data file has rows",
                               description="a data file has rows")], lines
    columns = CONTRACT_COLUMNS.get(name, TRIPLET_COLUMNS)
    rows = [{c: row[c] for c in columns if c in row} for row in rows]  # other keys: ignored
    rows, types = _typed_rows(rows, name)
    index = pd.Index(line_numbers, name=_LINE)
    frame = pd.DataFrame(rows, index=index)
    for column, kinds in types.items():
        frame[TYPE_PREFIX + column] = pd.Series(kinds, index=index, dtype=object)
    return frame, [], lines


def _lines_check(name: str, lines: pd.DataFrame | None) -> _FileCheck | None:
    """The unreadable lines of a file, as a GX suite of their own so they show in Data Docs."""
    if lines is None or lines["line_error"].isna().all():
        return None
    import great_expectations.expectations as gxe

    stem = name.split(".")[0]
    return _FileCheck(name=name, frame=lines, suite=f"{stem}_lines", docs_only=True, expectations=[
        gxe.ExpectColumnValuesToBeNull(column="line_error",
                                       description="every line is valid UTF-8 and a JSON object")])


def _type_expectations(frame: pd.DataFrame, name: str) -> list:
    """One ``type_of_<column>`` rule per type-checked column present in the file."""
    import great_expectations.expectations as gxe

    out = []
    for column, allowed in COLUMN_TYPES.get(name, {}).items():
        if TYPE_PREFIX + column in frame.columns:
            words = " or ".join(_TYPE_WORDS.get(a, a) for a in allowed)
            out.append(gxe.ExpectColumnValuesToBeInSet(  # null passes here; not-null rules say where it may not
                column=TYPE_PREFIX + column, value_set=sorted({*allowed, "null"}), meta={"source_column": column},
                description=f"{column} is {words}"))
    return out


def _lengths(frame: pd.DataFrame, source: str, target: str) -> None:
    if source in frame.columns:
        frame[target] = frame[source].map(lambda v: len(v) if isinstance(v, str) else None).astype(float)


def _id_set(frame: pd.DataFrame | None, column: str, where: pd.Series | None = None) -> list | None:
    """Sorted distinct non-null values of a column, or None if the frame/column is missing."""
    if frame is None or column not in frame.columns:
        return None
    values = frame[column] if where is None else frame.loc[where, column]
    distinct = {v for v in values.dropna().tolist() if isinstance(v, (str, int, float))}
    return sorted(distinct, key=lambda v: (type(v).__name__, v))


# ---------------------------------------------------------------------------------------
# Suites: which expectations each file gets. Column-level rules are added only when their
# columns exist, so a missing column is reported once, by expect_column_to_exist.


def _with_present_columns(frame: pd.DataFrame, required: Sequence[str],
                          rules: Sequence[tuple[Sequence[str], Any]]) -> list:
    import great_expectations.expectations as gxe

    present = set(frame.columns)
    expectations = [gxe.ExpectColumnToExist(column=c, description=f"column {c} exists") for c in required]
    expectations += [exp for needs, exp in rules if set(needs) <= present]
    return expectations


def _issue_column(frame: pd.DataFrame, source: str, check, target: str | None = None) -> None:
    """``issue_of_<source>``: what ``check`` finds wrong with each value (None: nothing); checked once per distinct value."""
    if source in frame.columns:
        found = {v: check(v) for v in frame[source].dropna().unique().tolist()} if len(frame) else {}
        frame[target or ISSUE_PREFIX + source] = frame[source].map(
            lambda v: found.get(v) if isinstance(v, str) else None).astype(object)


def _collision_column(frame: pd.DataFrame, column: str) -> None:
    """``<column>_collision``: set on rows whose id reads the same as a different id once trimmed,
    stripped of invisible characters and NFKC-normalised (plain duplicates: the unique rule)."""
    if column not in frame.columns:
        return
    ids = frame[column].map(lambda v: v if isinstance(v, str) else None)
    canonical = ids.map(lambda v: text_rules.canonical_id(v) if v is not None else None)
    distinct = pd.DataFrame({"id": ids, "key": canonical}).dropna().groupby("key")["id"].nunique()
    colliding = set(distinct[distinct > 1].index)
    frame[column + COLLISION_SUFFIX] = canonical.map(
        lambda k: f"reads as {k!r} like another id" if k in colliding else None).astype(object)


def _attributes_issue(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    for key, item in value.items():
        if isinstance(item, (dict, list)):
            return f"attribute {key[:40]!r} is {'an object' if isinstance(item, dict) else 'an array'}, not a value"
    return None


def _labels_issue(row: pd.Series) -> str | None:
    for column in ("product_type", "department", "brand"):
        issue = text_rules.text_issue(row.get(column))
        if issue:
            return f"{column}: {issue}"
    return None


def _null_rule(column: str, description: str, source: str | None = None):
    import great_expectations.expectations as gxe

    return ([column], gxe.ExpectColumnValuesToBeNull(column=column, description=description,
                                                      meta={"source_column": source} if source else {}))


def _catalog_expectations(frame: pd.DataFrame, bounds: RawBounds | None = None) -> list:
    import great_expectations.expectations as gxe

    bounds = bounds or RawBounds()
    _lengths(frame, "title", "title_chars")
    _issue_column(frame, "item_id", text_rules.id_issue)
    _collision_column(frame, "item_id")
    _issue_column(frame, "title", text_rules.text_issue)
    _issue_column(frame, "text", lambda v: text_rules.text_issue(v, layout_allowed=True))
    labels = [c for c in ("product_type", "department", "brand") if c in frame.columns]
    if labels:
        frame[ISSUE_PREFIX + "labels"] = frame[labels].apply(_labels_issue, axis=1).astype(object) \
            if len(frame) else pd.Series([], dtype=object)
    if "attributes" in frame.columns:
        frame[ISSUE_PREFIX + "attributes"] = frame["attributes"].map(_attributes_issue).astype(object)
    return _type_expectations(frame, schema.CATALOG_FILE) + _with_present_columns(frame, schema.CATALOG_COLUMNS, [
        (["item_id"], gxe.ExpectColumnValuesToNotBeNull(column="item_id", description="item_id is set")),
        (["item_id"], gxe.ExpectColumnValuesToBeUnique(column="item_id", description="item_id is unique")),
        _null_rule("issue_of_item_id", "item_id is visible text: no surrounding whitespace, invisible or "
                                       "control characters", "item_id"),
        _null_rule("item_id_collision", "item_id stays unique once trimmed, stripped of invisible characters "
                                        "and NFKC-normalised", "item_id"),
        (["title"], gxe.ExpectColumnValuesToNotBeNull(column="title", description="title is set")),
        _null_rule("issue_of_title", "title has no control characters, no trace of a failed decoding (mojibake, "
                                     "U+FFFD) and is not blank once invisible characters are removed", "title"),
        _null_rule("issue_of_labels", "product_type, department and brand are clean text (as title)"),
        _null_rule("issue_of_text", "text has no control characters but tabs and newlines, no trace of a "
                                    "failed decoding, and is not blank", "text"),
        _null_rule("issue_of_attributes", "attributes map names to values (strings, numbers, booleans), "
                                          "no nested objects or arrays", "attributes"),
        # price may be null (real data sets have none); its type rule says when it is not a number
        (["price"], gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, strict_min=True,
                                                      description="price > 0")),
        (["title_chars"], gxe.ExpectColumnValuesToBeBetween(
            column="title_chars", max_value=bounds.max_title_chars, meta={"source_column": "title"},
            description=f"title has at most {bounds.max_title_chars} characters")),
    ])


def _queries_expectations(frame: pd.DataFrame, judged_query_ids: list | None = None,
                           bounds: RawBounds | None = None) -> list:
    import great_expectations.expectations as gxe

    bounds = bounds or RawBounds()
    if {"query_id", "split"} <= set(frame.columns):
        # A query id seen with more than one split leaks eval queries into training.
        frame["n_splits_of_query_id"] = frame.groupby("query_id", dropna=False)["split"].transform("nunique")
        if judged_query_ids is not None:
            # An eval query without a judgment cannot be scored: it would silently shrink the eval set.
            counts = pd.Series(judged_query_ids).value_counts()
            is_eval = frame["split"] == "eval"
            frame["judgments_of_eval_query"] = frame["query_id"].map(
                lambda q: int(counts.get(q, 0)) if isinstance(q, str) else 0).astype(float).where(is_eval)
    if {"text", "split"} <= set(frame.columns):
        # The same query under two ids in train and eval: eval scores a query the model trained on.
        normalized = frame["text"].map(text_rules.normalized_query)
        frame["splits_of_normalized_text"] = pd.DataFrame({"n": normalized, "split": frame["split"]}).groupby(
            "n", dropna=True)["split"].transform("nunique").astype(float)
    _lengths(frame, "text", "text_chars")
    _issue_column(frame, "query_id", text_rules.id_issue)
    _collision_column(frame, "query_id")
    _issue_column(frame, "text", text_rules.text_issue)
    return _type_expectations(frame, schema.QUERIES_FILE) + _with_present_columns(frame, schema.QUERY_COLUMNS, [
        (["query_id"], gxe.ExpectColumnValuesToNotBeNull(column="query_id", description="query_id is set")),
        (["query_id"], gxe.ExpectColumnValuesToBeUnique(column="query_id", description="query_id is unique")),
        _null_rule("issue_of_query_id", "query_id is visible text: no surrounding whitespace, invisible or "
                                        "control characters", "query_id"),
        _null_rule("query_id_collision", "query_id stays unique once trimmed, stripped of invisible characters "
                                         "and NFKC-normalised", "query_id"),
        (["text"], gxe.ExpectColumnValuesToNotBeNull(column="text", description="query text is set")),
        _null_rule("issue_of_text", "query text has no control characters, no trace of a failed decoding "
                                    "(mojibake, U+FFFD) and is not blank once invisible characters are removed",
                   "text"),
        (["splits_of_normalized_text"], gxe.ExpectColumnValuesToBeBetween(
            column="splits_of_normalized_text", max_value=1, meta={"source_column": "text"},
            description="no query text is in both train and eval under two ids, nor in dev and either (compared after NFKC, "
                        "case folding, punctuation and whitespace removal)")),
        (["category"], gxe.ExpectColumnValuesToNotBeNull(column="category", description="category is set")),
        (["category"], gxe.ExpectColumnValuesToBeInSet(column="category", value_set=list(CATEGORIES),
                                                       description="category is one of CATEGORIES")),
        (["split"], gxe.ExpectColumnValuesToNotBeNull(column="split", description="split is set")),
        (["split"], gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(schema.ALL_SPLITS),
                                                    description="split is train, eval or dev")),
        (["n_splits_of_query_id"], gxe.ExpectColumnValuesToBeBetween(
            column="n_splits_of_query_id", max_value=1, meta={"source_column": "query_id"},
            description="train, eval and dev query ids are disjoint")),
        (["split"], gxe.ExpectColumnDistinctValuesToContainSet(
            column="split", value_set=list(schema.SPLITS),
            description="both splits have queries (no training without train, no gate without eval)")),
        (["judgments_of_eval_query"], gxe.ExpectColumnValuesToBeBetween(
            column="judgments_of_eval_query", min_value=1, meta={"source_column": "query_id"},
            description=f"every eval query has a judgment in {schema.JUDGMENTS_FILE}")),
        (["text_chars"], gxe.ExpectColumnValuesToBeBetween(
            column="text_chars", max_value=bounds.max_query_chars, meta={"source_column": "text"},
            description=f"query text has at most {bounds.max_query_chars} characters")),
    ])


def _unknown_column(frame: pd.DataFrame, column: str, known: set | None, target: str) -> None:
    """``target``: the id where it is not among ``known`` (a membership column instead of GX's
    in-set rule: a value set of every catalog id costs GX seconds per run)."""
    if known is not None and column in frame.columns:
        values = frame[column]
        frame[target] = values.where(values.notna() & ~values.isin(known)).astype(object)


def _pair_column(frame: pd.DataFrame) -> None:
    """``pair_issue``: set on every line of a (query_id, item_id) pair judged more than once."""
    if not {"query_id", "item_id"} <= set(frame.columns):
        return
    keys = frame[["query_id", "item_id"]]
    repeated = keys.duplicated(keep=False) & keys.notna().all(axis=1)
    issue = pd.Series(None, index=frame.index, dtype=object)
    if repeated.any():
        grades = frame["relevance"] if "relevance" in frame.columns else pd.Series(1, index=frame.index)
        sub = pd.DataFrame({"q": keys["query_id"], "i": keys["item_id"], "g": grades.fillna(1)})[repeated]
        for (_, _), group in sub.groupby(["q", "i"]):
            distinct = sorted({float(g) for g in group["g"]})
            text = (f"judged {len(group)} times with grades {[int(g) if g.is_integer() else g for g in distinct]}"
                    if len(distinct) > 1 else f"judged {len(group)} times")
            issue.loc[group.index] = text
    frame["pair_issue"] = issue


def _judgments_expectations(frame: pd.DataFrame, catalog_ids: list | None, query_ids: list | None,
                            bounds: RawBounds | None = None) -> list:
    import great_expectations.expectations as gxe

    bounds = bounds or RawBounds()
    rules: list[tuple[list[str], Any]] = [
        (["query_id"], gxe.ExpectColumnValuesToNotBeNull(column="query_id", description="query_id is set")),
        (["item_id"], gxe.ExpectColumnValuesToNotBeNull(column="item_id", description="item_id is set")),
    ]
    # Without a readable reference file these rules are skipped: that file's own failure says why.
    _unknown_column(frame, "item_id", set(catalog_ids) if catalog_ids is not None else None, "item_id_not_in_catalog")
    _unknown_column(frame, "query_id", set(query_ids) if query_ids is not None else None, "query_id_not_in_queries")
    _pair_column(frame)
    rules += [
        _null_rule("item_id_not_in_catalog", f"judged item_id exists in {schema.CATALOG_FILE}"),
        _null_rule("query_id_not_in_queries", f"judged query_id exists in {schema.QUERIES_FILE}"),
        _null_rule("pair_issue", "each (query_id, item_id) pair is judged once (one grade)", "query_id"),
    ]
    if "relevance" in frame.columns:
        rules.append((["relevance"], gxe.ExpectColumnValuesToBeBetween(
            column="relevance", min_value=bounds.min_relevance, max_value=bounds.max_relevance,
            description=f"relevance is on the declared scale {bounds.min_relevance}..{bounds.max_relevance} "
                        "(validation.min_relevance, max_relevance; non-relevant pairs are not listed)")))
    return _type_expectations(frame, schema.JUDGMENTS_FILE) + _with_present_columns(frame, schema.JUDGMENT_COLUMNS, rules)


def _triplet_expectations(frame: pd.DataFrame, catalog_ids: list | None, eval_query_ids: list | None,
                          max_cot_words: int) -> list:
    import great_expectations.expectations as gxe

    if "cot" in frame.columns:
        frame["cot_word_count"] = frame["cot"].map(lambda c: len(c.split()) if isinstance(c, str) else None)
    rules: list[tuple[list[str], Any]] = [
        (["query_id"], gxe.ExpectColumnValuesToNotBeNull(column="query_id", description="query_id is set")),
        (["item_id"], gxe.ExpectColumnValuesToNotBeNull(column="item_id", description="item_id is set")),
        (["cot"], gxe.ExpectColumnValuesToNotBeNull(column="cot", description="cot is set")),
        (["cot"], gxe.ExpectColumnValuesToMatchRegex(column="cot", regex=r"\S", description="cot is not empty")),
        (["cot_word_count"], gxe.ExpectColumnValuesToBeBetween(
            column="cot_word_count", max_value=max_cot_words, meta={"source_column": "cot"},
            description=f"cot has at most {max_cot_words} words")),
        (["category"], gxe.ExpectColumnValuesToBeInSet(column="category", value_set=list(CATEGORIES),
                                                       description="category is one of CATEGORIES")),
        (["query_id", "item_id"], gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["query_id", "item_id"], description="no duplicate (query_id, item_id) pairs")),
    ]
    # Without a usable reference file these rules are skipped; the caller reports that file.
    if catalog_ids is not None:
        rules.append((["item_id"], gxe.ExpectColumnValuesToBeInSet(
            column="item_id", value_set=catalog_ids, description=f"item_id exists in {schema.CATALOG_FILE}")))
    if eval_query_ids is not None:
        rules.append((["query_id"], gxe.ExpectColumnValuesToNotBeInSet(
            column="query_id", value_set=eval_query_ids,
            description="query_id is not an eval-split (or dev-split) query")))
    return _with_present_columns(frame, TRIPLET_COLUMNS, rules)


# ---------------------------------------------------------------------------------------
# Running: one ephemeral context per call, a filesystem Data Docs site under docs_dir.


@contextlib.contextmanager
def _quiet_gx() -> Iterator[None]:
    """GX logs INFO chatter and pandas warnings on every run; keep the caller's log readable."""
    gx_logger = logging.getLogger("great_expectations")
    previous = gx_logger.level
    gx_logger.setLevel(max(previous, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        gx_logger.setLevel(previous)


def _context(docs_dir: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={},
    )
    context = gx.get_context(project_config=config, mode="ephemeral")
    context.add_data_docs_site(site_name="lrem_data_docs", site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    return context


def _run_checks(checks: list[_FileCheck], docs_dir: Path, suite_prefix: str,
                extra_failures: list[dict] | None = None, extra_summary: dict | None = None) -> dict:
    """Validate every readable file, build Data Docs, then return the summary or raise."""
    docs_dir = Path(docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    failures: list[dict] = []
    files: dict[str, dict] = {}
    docs_index: Path | None = None
    context = _context(docs_dir)
    try:
        _validate_each(context, checks, suite_prefix, failures, files)
    finally:  # a report even when validation or reporting broke half-way
        docs_index = _build_docs(context, docs_dir)
    failures += extra_failures or []
    summary = {
        "success": not failures,
        "files": files,
        "expectations": sum(f["expectations"] for f in files.values()),
        "failed": len(failures),
        "docs_index": str(docs_index) if docs_index else None,
        "docs_dir": str(docs_dir),
        **(extra_summary or {}),
    }
    if failures:
        header = (f"data validation failed: {len(failures)} failed check(s); "
                  f"Data Docs: {docs_index or 'not built'}")
        raise DataValidationError("\n".join([header] + [f["message"] for f in failures]),
                                  failures=failures, docs_index=docs_index, summary=summary)
    return summary


def _validate_each(context, checks: list[_FileCheck], suite_prefix: str,
                   failures: list[dict], files: dict[str, dict]) -> None:
    import great_expectations as gx

    source = context.data_sources.add_pandas(f"{suite_prefix}_files")
    for check in checks:
        failures += check.failures
        if check.frame is None:
            files[check.name] = {"rows": 0, "expectations": 0, "failed": len(check.failures)}
            continue
        stem = check.suite or check.name.split(".")[0]
        batch_definition = source.add_dataframe_asset(name=stem).add_batch_definition_whole_dataframe("all_rows")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{suite_prefix}.{stem}",
                                                       expectations=check.expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite_prefix}.{stem}", data=batch_definition, suite=suite))
        try:
            result = definition.run(batch_parameters={"dataframe": check.frame},
                                    result_format={"result_format": "COMPLETE"})
            file_failures = [_result_failure(check.name, r, check.frame) for r in result.results if not r.success]
        except Exception as exc:  # a last resort: the gate reports, it never crashes
            file_failures = [_failure(check.name, "validate", None,
                                      f"{check.name}: its suite could not be run ({type(exc).__name__}) -- "
                                      "the file's suite runs", description="the file's suite runs")]
            result = None
        if check.docs_only and result is None:
            failures += file_failures
            continue
        if check.docs_only:
            continue
        failures += file_failures
        files[check.name] = {"rows": len(check.frame), "expectations": len(result.results) if result else 0,
                             "failed": len(file_failures) + len(check.failures)}


def _build_docs(context, docs_dir: Path) -> Path | None:
    try:
        context.build_data_docs()
    except Exception as exc:  # the verdict on the data must not hinge on rendering
        logging.getLogger(__name__).warning("could not build Data Docs in %s: %s", docs_dir, exc)
        return None
    index = docs_dir / "index.html"
    return index if index.is_file() else None


# ---------------------------------------------------------------------------------------
# Reporting: one line per failed expectation, with file, rule, rows and sample values.


def _failure(file: str, expectation: str, column: str | None, message: str, *,
             description: str | None = None, rows: list[int] | None = None,
             samples: list | None = None, unexpected_count: int | None = None) -> dict:
    rows = rows or []
    return {
        "file": file, "expectation": expectation, "column": column, "description": description,
        "rows": rows, "unexpected_count": unexpected_count if unexpected_count is not None else len(rows),
        "sample_values": _distinct(samples or [])[:_MAX_SAMPLES_SHOWN], "message": message,
    }


def _result_failure(file: str, result, frame: pd.DataFrame) -> dict:
    config = result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column") or ", ".join(kwargs.get("column_list") or [])
    description = config.description
    rule = f"{config.type}({column})"
    suffix = f" -- {description}" if description else ""
    error = _exception_message(result.exception_info)
    if error is not None:
        message = f"{file}: {rule} could not be evaluated: {error}{suffix}"
        return _failure(file, config.type, column, message, description=description)
    outcome = result.result or {}
    if config.type == "expect_column_to_exist":
        present = [c for c in frame.columns if c not in DERIVED_COLUMNS and not str(c).startswith(TYPE_PREFIX)
                   and not str(c).startswith(ISSUE_PREFIX) and not str(c).endswith(COLLISION_SUFFIX)]
        message = f"{file}: {rule} failed: column '{column}' is missing (columns present: {present})"
        return _failure(file, config.type, column, message, description=description)
    if "unexpected_index_list" not in outcome and "partial_unexpected_list" not in outcome:
        message = f"{file}: {rule} failed: observed value {outcome.get('observed_value')!r}{suffix}"
        return _failure(file, config.type, column, message, description=description)
    rows = sorted(_line_number(i) for i in outcome.get("unexpected_index_list") or [])
    samples = _distinct(outcome.get("partial_unexpected_list") or [])
    shown = _format_samples(samples)
    source = (config.meta or {}).get("source_column")
    if source and source in frame.columns and rows:
        shown += f" ({source}: {_format_samples(_distinct(frame.loc[rows, source].tolist()))})"
    count = outcome.get("unexpected_count", len(rows))
    message = f"{file}: {rule} failed at rows {_format_rows(rows)}: sample values {shown}{suffix}"
    return _failure(file, config.type, column, message, description=description, rows=rows,
                    samples=samples, unexpected_count=count)


def _line_number(index_entry: Any) -> int:
    """GX names the index column in each entry when the index has a name (ours: "line")."""
    if isinstance(index_entry, dict):
        return int(index_entry[_LINE])
    return int(index_entry)


def _exception_message(info: Any) -> str | None:
    """GX puts either one exception dict or a dict of them (keyed by metric) here."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _distinct(values: list) -> list:
    seen, out = set(), []
    for value in values:
        key = json.dumps(value, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


def _format_rows(rows: list[int]) -> str:
    if len(rows) <= _MAX_ROWS_SHOWN:
        return str(rows)
    return f"{rows[:_MAX_ROWS_SHOWN]} and {len(rows) - _MAX_ROWS_SHOWN} more"


def _format_samples(values: list) -> str:
    def short(value: Any) -> Any:
        if isinstance(value, float) and value != value:  # NaN: GX's spelling of a null
            return None
        if isinstance(value, str) and len(value) > _MAX_SAMPLE_CHARS:
            return value[:_MAX_SAMPLE_CHARS] + "..."
        return value
    return repr([short(v) for v in _distinct(values)[:_MAX_SAMPLES_SHOWN]])


# ---------------------------------------------------------------------------------------
# Public API


def validate_raw(data_dir: Path, docs_dir: Path, bounds: RawBounds | None = None,
                 baseline_path: Path | None = None) -> dict:
    """Validate the data folder against its contract (docs/data-contract.md): one GX suite per
    file (catalog, queries, judgments, knowledge.json), and drift against the last good snapshot.

    ``bounds``: the ``validation`` config (outlier bounds, grade scale, drift bounds and
    ``allow_drift``); default :class:`RawBounds`. ``baseline_path``: the last good snapshot's
    figures (:mod:`components.validation.drift`); None or a missing file: no drift check.

    Returns ``{"success": True, "files": {file: {"rows", "expectations", "failed"}},
    "expectations", "failed", "docs_index", "docs_dir", "figures", "drift"}`` (``figures``:
    this snapshot's, for :func:`~components.validation.drift.save_baseline` once it passed;
    ``drift``: the comparison, None without a baseline); raises DataValidationError listing
    every failed check (Data Docs are written either way).
    """
    with _quiet_gx():
        return _validate_raw(Path(data_dir), Path(docs_dir), bounds or RawBounds(),
                             Path(baseline_path) if baseline_path is not None else None)


def _knowledge_check(data_dir: Path) -> _FileCheck:
    """knowledge.json (required): read under the reading rules, then its JSON Schema and references.

    Its suite has one row per line with a problem (the line of the value at fault), or one
    good row: Data Docs show the file either way."""
    import great_expectations.expectations as gxe

    name = schema.KNOWLEDGE_FILE
    path = data_dir / name
    unreadable = _unreadable_file(path, name, data_dir)
    if unreadable is not None:
        return _FileCheck(name=name, frame=None, failures=[unreadable])
    problems: dict[int, list[str]] = {}
    try:
        text, document = read_knowledge_text(path)
        for json_path, message in schema.knowledge_problems(document):
            pos = value_position(text, json_path)
            line = text.count("\n", 0, pos) + 1 if pos is not None else 1
            problems.setdefault(line, []).append(f"{schema.format_json_path(json_path)}: {message}")
    except DataFileError as exc:
        problems.setdefault(exc.line or 1, []).append(f"{exc.detail} ({exc.rule})")
    frame = pd.DataFrame({"problem": ["; ".join(p) for p in problems.values()] or [None]},
                         index=pd.Index(list(problems) or [1], name=_LINE), dtype=object)
    return _FileCheck(name=name, frame=frame, expectations=[gxe.ExpectColumnValuesToBeNull(
        column="problem", description="knowledge.json is required, reads as one JSON document under the "
                                      "reading rules and matches its schema (docs/data-contract.md)")])


def _drift_check(figures: list, baseline: dict) -> tuple[_FileCheck, list[dict]]:
    """The drift suite (one row per compared figure, both snapshots' values) and its failures."""
    import great_expectations.expectations as gxe

    snapshot = baseline.get("snapshot") or {}
    last_good = f"last good snapshot {str(snapshot.get('data_md5', '?'))[:12]} (run {snapshot.get('run_key', '?')})"
    frame = pd.DataFrame({"figure": [f.text() for f in figures], "bound": [f.bound for f in figures]},
                         index=pd.Index(range(1, len(figures) + 1), name="figure_no"), dtype=object)
    expectations, failures = [], []
    for bound in dict.fromkeys(f.bound for f in figures):
        mine = [f for f in figures if f.bound == bound]
        frame["beyond_" + bound] = [f.text() if f.bound == bound and f.exceeded and not f.allowed else None
                                    for f in figures]
        allowed = [f for f in mine if f.allowed]
        note = f"; exceeded but allowed by the run conf: {len(allowed)}" if allowed else ""
        expectations.append(gxe.ExpectColumnValuesToBeNull(
            column="beyond_" + bound, meta={"figures": [f.text() for f in mine]},
            description=f"drift '{bound}' against the {last_good} within bounds{note}. "
                        + " | ".join(f.text() for f in mine)))
        for f in mine:
            if f.exceeded and not f.allowed:
                failures.append(_failure(
                    f.file, f"drift_{bound}", None,
                    f"{f.file}: drift beyond the '{bound}' bound: {f.text()} -- against the {last_good}; "
                    f"an intended change: run with the run conf {{\"allow_drift\": [\"{bound}\"]}}",
                    description=f"drift '{bound}' within bounds"))
    return _FileCheck(name="drift", frame=frame, suite="drift", docs_only=True, expectations=expectations), failures


def _validate_raw(data_dir: Path, docs_dir: Path, bounds: RawBounds, baseline_path: Path | None = None) -> dict:
    read = {name: _read_jsonl(data_dir / name, name, data_dir)
            for name in (schema.CATALOG_FILE, schema.QUERIES_FILE, schema.JUDGMENTS_FILE)}
    catalog, queries, judgments = (read[n][0] for n in (schema.CATALOG_FILE, schema.QUERIES_FILE,
                                                        schema.JUDGMENTS_FILE))
    figures = drift_rules.snapshot_figures({n: read[n][0] for n in read}, bounds.drift_title_sample)
    judged = None
    if judgments is not None and "query_id" in judgments.columns:
        judged = [q for q in judgments["query_id"].tolist() if isinstance(q, str)]
    builders = {
        schema.CATALOG_FILE: lambda f: _catalog_expectations(f, bounds),
        schema.QUERIES_FILE: lambda f: _queries_expectations(f, judged, bounds),
        schema.JUDGMENTS_FILE: lambda f: _judgments_expectations(
            f, _id_set(catalog, "item_id"), _id_set(queries, "query_id"), bounds),
    }
    checks = []
    for name, (frame, read_failures, lines) in read.items():
        check = _FileCheck(name=name, frame=frame, failures=read_failures)
        if frame is not None:
            try:
                check.expectations = builders[name](frame)
            except Exception as exc:  # a last resort: the gate reports, it never crashes
                check.failures.append(_failure(name, "build_checks", None,
                                               f"{name}: its checks could not be built: {type(exc).__name__}",
                                               description="the file's checks can be built"))
                check.frame = None
        checks.append(check)
        lines_check = _lines_check(name, lines)
        if lines_check is not None:
            checks.append(lines_check)
    checks.append(_knowledge_check(data_dir))
    drift_failures, drift_report = [], None
    if baseline_path is not None:
        try:
            baseline = drift_rules.load_baseline(baseline_path)
        except drift_rules.BaselineError as exc:
            baseline = None
            if "all" not in bounds.allow_drift:
                drift_failures.append(_failure("drift", "drift_baseline", None,
                                               f"drift: {exc} -- the last good snapshot's figures are readable "
                                               "(delete the file to start over, or allow_drift: all)",
                                               description="the drift baseline is readable"))
        if baseline is not None:
            compared = drift_rules.compare(baseline["figures"], figures, bounds)
            drift_report = drift_rules.report(compared, baseline)
            if compared:
                drift_check, drift_failures = _drift_check(compared, baseline)
                checks.append(drift_check)
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / "drift.json").write_text(json.dumps({"this_snapshot": {k: v for k, v in figures.items()
                                                                       if k != "title_digests"},
                                                     "comparison": drift_report}, indent=2, sort_keys=True))
    return _run_checks(checks, docs_dir, suite_prefix="raw", extra_failures=drift_failures,
                       extra_summary={"figures": figures, "drift": drift_report})


def validate_triplets(triplets_path: Path, data_dir: Path, max_cot_words: int, docs_dir: Path) -> dict:
    """Validate the teacher's Query-CoT-Item triplets against the data folder.

    Same return shape and error behaviour as ``validate_raw`` (one file: the triplets).
    """
    with _quiet_gx():
        return _validate_triplets(Path(triplets_path), Path(data_dir), max_cot_words, Path(docs_dir))


def _validate_triplets(triplets_path: Path, data_dir: Path, max_cot_words: int, docs_dir: Path) -> dict:
    name = triplets_path.name
    frame, read_failures = _read_jsonl_frame(triplets_path, name)
    catalog, catalog_failures = _read_jsonl_frame(data_dir / schema.CATALOG_FILE, schema.CATALOG_FILE, data_dir)
    queries, queries_failures = _read_jsonl_frame(data_dir / schema.QUERIES_FILE, schema.QUERIES_FILE, data_dir)
    reference_failures = catalog_failures + queries_failures
    catalog_ids = _id_set(catalog, "item_id")
    eval_ids = None
    if queries is not None and {"query_id", "split"} <= set(queries.columns):
        eval_ids = _id_set(queries, "query_id", where=queries["split"].isin(schema.UNTRAINED_SPLITS))
    # The triplets cannot be checked against references that are not there: say so, never pass.
    for ref_name, ids, needed in ((schema.CATALOG_FILE, catalog_ids, "item_id"),
                                  (schema.QUERIES_FILE, eval_ids, "query_id and split")):
        if ids is None and not any(f["file"] == ref_name for f in reference_failures):
            reference_failures.append(_failure(
                ref_name, "reference_columns", needed,
                f"{ref_name}: cannot check {name} against it: column(s) {needed} missing",
                description="reference for the triplet checks"))
    check = _FileCheck(name=name, frame=frame, failures=read_failures)
    if frame is not None:
        check.expectations = _triplet_expectations(frame, catalog_ids, eval_ids, max_cot_words)
    return _run_checks([check], docs_dir, suite_prefix="triplets", extra_failures=reference_failures)
