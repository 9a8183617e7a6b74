"""Great Expectations suites for the raw data folder and the teacher's triplets.

Each JSON Lines file becomes a pandas dataframe asset of an ephemeral GX context and is
checked by its own expectation suite; Data Docs are written as HTML under ``docs_dir``
whether or not the checks pass, so a failed nightly run still leaves a report to log.

Row numbers in reports are 1-based line numbers of the JSON Lines file: every frame is
indexed by line number before GX sees it, and GX reports unexpected rows by index.
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

from components.config import CATEGORIES
from components.data import schema
from components.validation.errors import DataValidationError

TRIPLET_COLUMNS = ("query_id", "query", "category", "cot", "item_id", "item_title")
PRICE_TYPES = ["int", "float", "int64", "float64", "Int64", "Float64"]
# Columns the suites add to a frame (computed from the file's own columns).
DERIVED_COLUMNS = ("n_splits_of_query_id", "cot_word_count")

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


def _read_jsonl_frame(path: Path, name: str) -> tuple[pd.DataFrame | None, list[dict]]:
    """Frame indexed by 1-based line number; every undecodable line becomes one failure."""
    if not path.is_file():
        return None, [_failure(name, "file_exists", None, f"{name}: file not found at {path}",
                               description="file exists")]
    rows, line_numbers, bad_rows, bad_samples, first_error = [], [], [], [], None
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                row, error = None, str(exc)
            else:
                error = None if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"
            if error is not None:
                bad_rows.append(line_no)
                bad_samples.append(line.rstrip("\n"))
                first_error = first_error or error
                continue
            rows.append(row)
            line_numbers.append(line_no)
    if bad_rows:
        message = (f"{name}: not valid JSON at rows {_format_rows(bad_rows)}: sample values "
                   f"{_format_samples(bad_samples)} ({first_error})")
        return None, [_failure(name, "valid_json_lines", None, message, rows=bad_rows,
                               samples=bad_samples, description="every line is a JSON object")]
    frame = pd.DataFrame(rows, index=pd.Index(line_numbers, name=_LINE)) if rows else pd.DataFrame(
        index=pd.Index([], name=_LINE, dtype="int64"))
    return frame, []


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


def _catalog_expectations(frame: pd.DataFrame) -> list:
    import great_expectations.expectations as gxe

    return _with_present_columns(frame, schema.CATALOG_COLUMNS, [
        (["item_id"], gxe.ExpectColumnValuesToNotBeNull(column="item_id", description="item_id is set")),
        (["item_id"], gxe.ExpectColumnValuesToBeUnique(column="item_id", description="item_id is unique")),
        (["title"], gxe.ExpectColumnValuesToNotBeNull(column="title", description="title is set")),
        (["title"], gxe.ExpectColumnValuesToMatchRegex(column="title", regex=r"\S",
                                                       description="title is not blank")),
        (["price"], gxe.ExpectColumnValuesToNotBeNull(column="price", description="price is set")),
        (["price"], gxe.ExpectColumnValuesToBeInTypeList(column="price", type_list=PRICE_TYPES,
                                                         description="price is a number")),
        (["price"], gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, strict_min=True,
                                                      description="price > 0")),
    ])


def _queries_expectations(frame: pd.DataFrame) -> list:
    import great_expectations.expectations as gxe

    if {"query_id", "split"} <= set(frame.columns):
        # A query id seen with more than one split leaks eval queries into training.
        frame["n_splits_of_query_id"] = frame.groupby("query_id")["split"].transform("nunique")
    return _with_present_columns(frame, schema.QUERY_COLUMNS, [
        (["query_id"], gxe.ExpectColumnValuesToNotBeNull(column="query_id", description="query_id is set")),
        (["query_id"], gxe.ExpectColumnValuesToBeUnique(column="query_id", description="query_id is unique")),
        (["text"], gxe.ExpectColumnValuesToMatchRegex(column="text", regex=r"\S",
                                                      description="query text is not blank")),
        (["category"], gxe.ExpectColumnValuesToNotBeNull(column="category", description="category is set")),
        (["category"], gxe.ExpectColumnValuesToBeInSet(column="category", value_set=list(CATEGORIES),
                                                       description="category is one of CATEGORIES")),
        (["split"], gxe.ExpectColumnValuesToNotBeNull(column="split", description="split is set")),
        (["split"], gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(schema.SPLITS),
                                                    description="split is train or eval")),
        (["n_splits_of_query_id"], gxe.ExpectColumnValuesToBeBetween(
            column="n_splits_of_query_id", max_value=1, meta={"source_column": "query_id"},
            description="train and eval query ids are disjoint")),
    ])


def _judgments_expectations(frame: pd.DataFrame, catalog_ids: list | None, query_ids: list | None) -> list:
    import great_expectations.expectations as gxe

    rules: list[tuple[list[str], Any]] = [
        (["query_id"], gxe.ExpectColumnValuesToNotBeNull(column="query_id", description="query_id is set")),
        (["item_id"], gxe.ExpectColumnValuesToNotBeNull(column="item_id", description="item_id is set")),
    ]
    # Without a readable reference file these rules are skipped: that file's own failure says why.
    if catalog_ids is not None:
        rules.append((["item_id"], gxe.ExpectColumnValuesToBeInSet(
            column="item_id", value_set=catalog_ids,
            description=f"judged item_id exists in {schema.CATALOG_FILE}")))
    if query_ids is not None:
        rules.append((["query_id"], gxe.ExpectColumnValuesToBeInSet(
            column="query_id", value_set=query_ids,
            description=f"judged query_id exists in {schema.QUERIES_FILE}")))
    return _with_present_columns(frame, schema.JUDGMENT_COLUMNS, rules)


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
            description="query_id is not an eval-split query")))
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
                extra_failures: list[dict] | None = None) -> dict:
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
        stem = check.name.split(".")[0]
        batch_definition = source.add_dataframe_asset(name=stem).add_batch_definition_whole_dataframe("all_rows")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{suite_prefix}.{stem}",
                                                       expectations=check.expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite_prefix}.{stem}", data=batch_definition, suite=suite))
        result = definition.run(batch_parameters={"dataframe": check.frame},
                                result_format={"result_format": "COMPLETE"})
        file_failures = [_result_failure(check.name, r, check.frame) for r in result.results if not r.success]
        failures += file_failures
        files[check.name] = {"rows": len(check.frame), "expectations": len(result.results),
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
        present = [c for c in frame.columns if c not in DERIVED_COLUMNS]
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


def validate_raw(data_dir: Path, docs_dir: Path) -> dict:
    """Validate catalog, queries and judgments of the data folder with one GX suite per file.

    Returns ``{"success": True, "files": {file: {"rows", "expectations", "failed"}},
    "expectations", "failed", "docs_index", "docs_dir"}``; raises DataValidationError
    listing every failed check (Data Docs are written either way).
    """
    with _quiet_gx():
        return _validate_raw(Path(data_dir), Path(docs_dir))


def _validate_raw(data_dir: Path, docs_dir: Path) -> dict:
    frames = {name: _read_jsonl_frame(data_dir / name, name)
              for name in (schema.CATALOG_FILE, schema.QUERIES_FILE, schema.JUDGMENTS_FILE)}
    catalog, queries = frames[schema.CATALOG_FILE][0], frames[schema.QUERIES_FILE][0]
    builders = {
        schema.CATALOG_FILE: _catalog_expectations,
        schema.QUERIES_FILE: _queries_expectations,
        schema.JUDGMENTS_FILE: lambda f: _judgments_expectations(
            f, _id_set(catalog, "item_id"), _id_set(queries, "query_id")),
    }
    checks = []
    for name, (frame, read_failures) in frames.items():
        check = _FileCheck(name=name, frame=frame, failures=read_failures)
        if frame is not None:
            check.expectations = builders[name](frame)
        checks.append(check)
    return _run_checks(checks, docs_dir, suite_prefix="raw")


def validate_triplets(triplets_path: Path, data_dir: Path, max_cot_words: int, docs_dir: Path) -> dict:
    """Validate the teacher's Query-CoT-Item triplets against the data folder.

    Same return shape and error behaviour as ``validate_raw`` (one file: the triplets).
    """
    with _quiet_gx():
        return _validate_triplets(Path(triplets_path), Path(data_dir), max_cot_words, Path(docs_dir))


def _validate_triplets(triplets_path: Path, data_dir: Path, max_cot_words: int, docs_dir: Path) -> dict:
    name = triplets_path.name
    frame, read_failures = _read_jsonl_frame(triplets_path, name)
    catalog, catalog_failures = _read_jsonl_frame(data_dir / schema.CATALOG_FILE, schema.CATALOG_FILE)
    queries, queries_failures = _read_jsonl_frame(data_dir / schema.QUERIES_FILE, schema.QUERIES_FILE)
    reference_failures = catalog_failures + queries_failures
    catalog_ids = _id_set(catalog, "item_id")
    eval_ids = None
    if queries is not None and {"query_id", "split"} <= set(queries.columns):
        eval_ids = _id_set(queries, "query_id", where=queries["split"] == "eval")
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
