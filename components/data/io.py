"""Reading and writing the data folder.

Every reader here applies the data contract's reading rules (docs/data-contract.md), the
same ones the raw-data gate applies (:func:`parse_line` is shared), so that whatever the
gate accepts, every later step loads, and whatever a loader rejects, the gate rejected
first: a line is UTF-8 without a byte order mark, one standard JSON object (no NaN or
Infinity, integers within +-2^53, no duplicate keys, at most :data:`MAX_NESTING` levels,
no lone surrogate escapes). Lines end at ``\\n`` only (a ``\\r`` is JSON whitespace, so CRLF
files read the same); blank lines are skipped. A broken file raises
:class:`~components.validation.errors.DataFileError` naming the file, the line and the rule.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from components.data import schema
from components.validation.errors import DataFileError

MAX_NESTING = 16  # containers inside a row; the contract's values nest two levels at most
MAX_ABS_INT = 2 ** 53  # integers a float64 column holds exactly
_JSON_WS = b" \t\r\n"

# rule key -> (what a failed line is, the rule it breaks); the gate's failure kinds
LINE_RULES: dict[str, tuple[str, str]] = {
    "valid_utf8": ("not valid UTF-8", "every line is valid UTF-8"),
    "no_byte_order_mark": ("starts with a byte order mark", "no byte order mark (save as UTF-8 without BOM)"),
    "valid_json_lines": ("not valid JSON", "every line is a JSON object"),
    "standard_json": ("not standard JSON", "numbers are finite (no NaN or Infinity) and integers within +-2^53"),
    "unique_keys": ("has a duplicate key", "no key appears twice in one object"),
    "nesting_depth": ("nested too deep", f"values nest at most {MAX_NESTING} levels"),
    "valid_unicode": ("holds a lone surrogate", "strings hold no lone surrogate (\\ud800-\\udfff)"),
}
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class LineProblem(ValueError):
    """One line (or document) breaks a reading rule: ``kind`` is a key of :data:`LINE_RULES`."""

    def __init__(self, kind: str, detail: str, pos: int | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.pos = kind, detail, pos

    @property
    def rule(self) -> str:
        return LINE_RULES[self.kind][1]


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise LineProblem("unique_keys", f"key {dup!r} appears twice in one object")
    return obj


def _no_constant(name: str) -> Any:
    raise LineProblem("standard_json", f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise LineProblem("standard_json", f"{text[:40]} is out of the float range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 17:  # cheap pre-check; also keeps int() below Python's digit limit
        digits = text.lstrip("-")
        if len(digits) > 20 or abs(int(digits)) > MAX_ABS_INT:
            raise LineProblem("standard_json", f"integer {text[:24]}{'...' if len(text) > 24 else ''} "
                                               f"({len(digits)} digits) is outside +-2^53")
    value = int(text)
    if abs(value) > MAX_ABS_INT:
        raise LineProblem("standard_json", f"integer {text} is outside +-2^53")
    return value


def _depth_and_surrogates(value: Any) -> None:
    """Reject values nested deeper than MAX_NESTING and strings (values or keys) with surrogates."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= MAX_NESTING:
                raise LineProblem("nesting_depth", f"more than {MAX_NESTING} nested objects or arrays")
            for key, sub in item.items():
                if _SURROGATE.search(key):
                    raise LineProblem("valid_unicode", f"key {key!r} holds a lone surrogate")
                stack.append((sub, depth + 1))
        elif isinstance(item, list):
            if depth >= MAX_NESTING:
                raise LineProblem("nesting_depth", f"more than {MAX_NESTING} nested objects or arrays")
            stack.extend((sub, depth + 1) for sub in item)
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise LineProblem("valid_unicode", f"string {item[:40]!r} holds a lone surrogate")


def loads_strict(text: str, raw: bytes | None = None) -> Any:
    """``json.loads`` under the contract's rules; raises LineProblem (never anything else)."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant,
                           parse_float=_finite_float, parse_int=_bounded_int)
    except LineProblem:
        raise
    except RecursionError:
        raise LineProblem("nesting_depth", "nested too deep to parse") from None
    except json.JSONDecodeError as exc:
        message = "unexpected UTF-8 byte order mark" if text.startswith("\ufeff") else exc.msg
        raise LineProblem("valid_json_lines", f"{message} (column {exc.colno})", exc.pos) from None
    except (ValueError, OverflowError) as exc:  # e.g. Python's integer digit limit
        raise LineProblem("standard_json", str(exc)[:120]) from None
    raw_has_escape = raw is None or _SURROGATE_ESCAPE.search(raw) is not None
    if raw_has_escape or (raw.count(b"{") + raw.count(b"[")) > MAX_NESTING:
        _depth_and_surrogates(value)
    return value


def is_blank(raw: bytes) -> bool:
    return not raw.strip(_JSON_WS)


def parse_line(raw: bytes) -> dict:
    """One JSON Lines row from its bytes (without or with its ``\\n``); raises LineProblem."""
    if raw.startswith(codecs.BOM_UTF8):
        raise LineProblem("no_byte_order_mark", "the line starts with the bytes EF BB BF")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineProblem("valid_utf8", f"invalid UTF-8 byte {raw[exc.start:exc.start + 1]!r} "
                                        f"at offset {exc.start}") from None
    value = loads_strict(text, raw)
    if not isinstance(value, dict):
        raise LineProblem("valid_json_lines", f"expected a JSON object, got {_json_word(value)}")
    return value


def _json_word(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def iter_jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes) of every non-blank line; lines end at ``\\n`` only."""
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not is_blank(raw):
                yield line_no, raw


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Deterministic JSON Lines: sorted keys, no ASCII escaping, '\n' endings.

    A NaN (pandas' missing value, e.g. an optional column absent from some rows) is
    written as null: NaN is not JSON and the gate would reject it.
    """
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            try:
                text = json.dumps(row, sort_keys=True, ensure_ascii=False, allow_nan=False)
            except ValueError:
                text = json.dumps(_nan_to_none(row), sort_keys=True, ensure_ascii=False, allow_nan=False)
            fh.write(text + "\n")


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise DataFileError(path.name, None, "the file is required (docs/data-contract.md)",
                            f"not found at {path}" if not path.exists() else "not a regular file")


def read_jsonl(path: Path) -> list[dict]:
    """Every row of a JSON Lines file; raises DataFileError naming the first bad line."""
    path = Path(path)
    _require_file(path)
    rows = []
    for line_no, raw in iter_jsonl_lines(path):
        try:
            rows.append(parse_line(raw))
        except LineProblem as exc:
            raise DataFileError(path.name, line_no, exc.rule, exc.detail) from None
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


def _frame(rows: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
    """Rows as a frame; an empty file still has the contract's columns. In text (object) columns a
    JSON null or a missing key stays None: pandas would make it NaN, which is truthy, so
    ``if item.get("brand")`` would take a missing brand for one."""
    if not rows:
        return pd.DataFrame(columns=list(columns))
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) and values.isna().any():  # object or pandas' str dtype
            frame[column] = pd.Series([None if _missing(v) else v for v in values], index=frame.index, dtype=object)
    return frame


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def load_world(data_dir: str | Path, max_items: int | None = None, max_queries: int | None = None) -> World:
    """Load catalog, queries and judgments (not the teacher-only knowledge file).

    ``max_queries`` keeps the first N train and eval queries, each split proportionally (first
    rows), and the same share of a dev split;
    ``max_items`` keeps the first N items plus every item judged relevant to a kept query.
    """
    data_dir = Path(data_dir)
    catalog = _frame(read_jsonl(data_dir / schema.CATALOG_FILE), schema.CATALOG_COLUMNS)
    queries = _frame(read_jsonl(data_dir / schema.QUERIES_FILE), schema.QUERY_COLUMNS)
    judgments = _frame(read_jsonl(data_dir / schema.JUDGMENTS_FILE), schema.JUDGMENT_COLUMNS)
    scored = int(queries["split"].isin(schema.SPLITS).sum()) if len(queries) else 0
    if max_queries is not None and scored > max_queries:
        parts = []
        for split_name, group in queries.groupby("split", sort=True):
            # the same share of every split, reckoned on train and eval (a dev split scales alike)
            share = max(1, round(max_queries * len(group) / scored))
            parts.append(group.head(share))
        queries = pd.concat(parts).sort_index().reset_index(drop=True)
        judgments = judgments[judgments["query_id"].isin(set(queries["query_id"]))].reset_index(drop=True)
    if max_items is not None and len(catalog) > max_items:
        keep = set(catalog["item_id"].head(max_items)) | set(judgments["item_id"])
        catalog = catalog[catalog["item_id"].isin(keep)].reset_index(drop=True)
    return World(catalog=catalog, queries=queries, judgments=judgments)


def read_knowledge_text(path: Path) -> tuple[str, Any]:
    """(text, parsed document) of a knowledge file under the reading rules; raises DataFileError."""
    _require_file(path)
    raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raise DataFileError(path.name, 1, LINE_RULES["no_byte_order_mark"][1], "the file starts with EF BB BF")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataFileError(path.name, line, LINE_RULES["valid_utf8"][1],
                            f"invalid UTF-8 byte {raw[exc.start:exc.start + 1]!r}") from None
    try:
        return text, loads_strict(text)
    except LineProblem as exc:
        pos = exc.pos if exc.pos is not None else locate_problem(text)
        line = text.count("\n", 0, pos) + 1 if pos is not None else None
        raise DataFileError(path.name, line, exc.rule, exc.detail) from None


def load_knowledge(data_dir: str | Path) -> dict:
    """The world's knowledge: read by the teacher (and the backbone's corpus).

    Required (docs/data-contract.md): a missing, unreadable or off-schema file raises
    DataFileError naming the file, the line and the rule.
    """
    path = Path(data_dir) / schema.KNOWLEDGE_FILE
    text, document = read_knowledge_text(path)
    problems = schema.knowledge_problems(document)
    if problems:
        json_path, message = problems[0]
        pos = value_position(text, json_path)
        line = text.count("\n", 0, pos) + 1 if pos is not None else None
        raise DataFileError(path.name, line, "matches the knowledge schema (docs/data-contract.md)",
                            f"{schema.format_json_path(json_path)}: {message}")
    return document


# ---------------------------------------------------------------------------------------
# Where in a JSON document: a scan over its structure (containers here, scalars by the json
# module), to name the line of a value (by its path) or of the first rule a value breaks.

_WS = re.compile(r"[ \t\n\r]*")


class _Found(Exception):
    def __init__(self, pos: int) -> None:
        self.pos = pos


def _scan(text: str, want: tuple | None) -> int | None:
    """Position of the value at path ``want``; with ``want`` None, of the first value that
    breaks a reading rule (NaN, huge integer, duplicate key, surrogate, nesting). None: not found."""
    decoder = json.JSONDecoder()
    scanstring = json.decoder.scanstring

    def ws(i: int) -> int:
        return _WS.match(text, i).end()

    def value(i: int, path: tuple, depth: int) -> int:
        i = ws(i)
        if want is not None and path == want:
            raise _Found(i)
        if want is not None and path != want[:len(path)]:
            return _skip(i)
        char = text[i:i + 1]
        if char in ("{", "["):
            if want is None and depth >= MAX_NESTING:
                raise _Found(i)
            return (obj if char == "{" else arr)(i, path, depth + 1)
        try:
            scalar, end = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            raise _Found(i) from None
        if want is None and ((isinstance(scalar, float) and not math.isfinite(scalar))
                             or (isinstance(scalar, int) and abs(scalar) > MAX_ABS_INT)
                             or (isinstance(scalar, str) and _SURROGATE.search(scalar))):
            raise _Found(i)
        return end

    def _skip(i: int) -> int:
        try:
            return decoder.raw_decode(text, i)[1]
        except (ValueError, RecursionError):
            raise _Found(i) from None

    def obj(i: int, path: tuple, depth: int) -> int:
        i = ws(i + 1)
        if text[i:i + 1] == "}":
            return i + 1
        keys: set[str] = set()
        while True:
            i = ws(i)
            key, end = scanstring(text, i + 1)
            if want is None and (key in keys or _SURROGATE.search(key)):
                raise _Found(i)
            keys.add(key)
            i = ws(end) + 1  # past ':'
            i = ws(value(i, path + (key,), depth))
            if text[i:i + 1] == ",":
                i += 1
                continue
            return i + 1

    def arr(i: int, path: tuple, depth: int) -> int:
        i = ws(i + 1)
        if text[i:i + 1] == "]":
            return i + 1
        index = 0
        while True:
            i = ws(value(i, path + (index,), depth))
            index += 1
            if text[i:i + 1] == ",":
                i += 1
                continue
            return i + 1

    try:
        value(0, (), 0)
    except _Found as found:
        return found.pos
    except (ValueError, IndexError, RecursionError):  # a syntax error: json.loads names its position
        return None
    return None


def value_position(text: str, path: tuple | list) -> int | None:
    """Character offset of the value at ``path`` (keys and indexes) in a JSON document."""
    path = tuple(path)
    while True:
        pos = _scan(text, path)
        if pos is not None or not path:
            return pos
        path = path[:-1]  # a missing key: the line of the object that lacks it


def locate_problem(text: str) -> int | None:
    """Character offset of the first value breaking a reading rule, if the scan finds one."""
    return _scan(text, None)
