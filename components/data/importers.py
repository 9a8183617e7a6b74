"""`lrem data import {beir,esci,wands} SRC --out DIR`: public retrieval data sets into the data contract.

Each importer reads the public format as published and writes the files of
:mod:`components.data.schema` (``catalog.jsonl``, ``queries.jsonl``, ``judgments.jsonl``
and a minimal ``knowledge.json`` for the teacher), so a real data set goes through the same
gate, training, index and evaluation code as the demo world. A malformed input stops the
import with an :class:`ImportFormatError` naming the file, the line (or row) and what is
wrong; nothing is written until every input has been read.

What each format becomes
------------------------
``beir`` (SRC: a BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{train,dev,test}.tsv``)
    item = corpus document (``title`` = its title, or the start of its text when the title is
    blank; ``text`` = its text); product_type ``document``; department = the folder's name.
    Split: queries judged in ``qrels/test.tsv`` are ``eval``, those judged in ``train.tsv`` or
    ``dev.tsv`` are ``train`` (a query in both is ``eval`` and keeps only its test judgments).
    A data set with test qrels only gets no train split (see ``eval_fraction`` below).
``esci`` (SRC: a folder with the examples, ``*.parquet`` with an ``esci_label`` column, and the
    products: ``*products*.parquet`` or ``*.jsonl[.zstd]``, flat rows or Vespa feed rows
    ``{"put": ..., "fields": {...}}``)
    item = product (``title``, ``brand``; ``text`` = description and bullets; attributes color
    and locale); split column ``train``/``test`` -> ``train``/``eval``.
``wands`` (SRC: the WANDS ``dataset/`` folder: tab-separated ``query.csv``, ``product.csv``,
    ``label.csv``)
    item = product (``title`` = product_name, product_type = product_class, department = first
    level of the category hierarchy, ``text`` = product_description); the query's
    ``query_class`` is kept in ``queries.jsonl`` as ``query_class``. WANDS has no split: a
    stable hash of the query id puts ``eval_fraction`` of the queries in ``eval``.

Relevance grades (``judgments.jsonl`` column ``relevance``, an int >= 1; non-relevant pairs
are not written): BEIR keeps its qrels score; ESCI Exact 3, Substitute 2, Complement 1,
Irrelevant 0; WANDS Exact 2, Partial 1, Irrelevant 0. Binary metrics (HitRate, Recall,
Precision) count every written judgment as relevant; nDCG uses the grade as its gain.
Queries without any relevant judgment are dropped (they can be neither trained nor scored).

Query categories (the pipeline's five, :data:`components.config.CATEGORIES`): real data has
no labelled query type, so ``categories="rule"`` (the default) applies :func:`query_category`,
a query-type heuristic on the query text; ``categories="<one of CATEGORIES>"`` puts every
query in that one category.

Prices: none of these sets has one; ``price`` is written as null (the gate accepts a null
price, never a non-number).

Faults of the source (``ImportOptions.repair``, on by default; never silent)
-------------------------------------------------------------------------
Public sets break rules of the raw-data gate (:mod:`components.validation.text_rules`) in the
source itself; BEIR SciFact has a claim in train and test under two ids, U+FFFD in titles and
mojibake or C1 control characters in abstracts. The importer repairs what it safely can, with
the gate's own detectors, and writes every change to ``import_report.json`` beside the data:

1. text (titles, bodies, brands, queries): each mojibake span the gate flags is decoded back
   (Latin-1/cp1252 -> UTF-8 round trip of that span) unless the result holds U+FFFD; then control
   characters (C0 and C1; tabs and newlines stay in body text) -> a space; then U+FFFD is
   removed. A value the gate accepts is never changed. A value still failing the rule after
   this is listed under ``unrepaired`` (the gate then names it).
2. leakage: a train query whose normalised text (:func:`text_rules.normalized_query`) equals an
   eval query's is dropped with its judgments; eval is never touched, so published eval
   figures stay comparable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from components.config import CATEGORIES
from components.data import schema
from components.data.io import write_jsonl
from components.validation import text_rules

FORMATS = ("beir", "esci", "wands")
REPORT_FILE = "import_report.json"
MAX_MOJIBAKE_PASSES = 3  # text encoded twice shows mojibake again once decoded back
ESCI_GRADES = {"E": 3, "S": 2, "C": 1, "I": 0}
WANDS_GRADES = {"Exact": 2, "Partial": 1, "Irrelevant": 0}
TITLE_FROM_TEXT_CHARS = 120  # a blank title is replaced by the first characters of the text

# --- the query-type rule -------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+")
NEGATION_WORDS = frozenset({"not", "without", "no", "non", "excluding", "except", "never"})
ALTERNATIVE_PHRASES = (("alternative",), ("alternatives",), ("instead", "of"), ("similar", "to"),
                       ("like",), ("cheaper", "than"), ("vs",), ("versus",), ("dupe",), ("substitute",))
QUESTION_WORDS = frozenset({"what", "which", "how", "why", "who", "where", "when", "can", "does", "do",
                            "is", "are", "should", "will", "best"})


def query_category(text: str) -> str:
    """The documented query-type rule for real queries, first match wins.

    1. ``negative``: a negation word (``not``, ``without``, ``no``, ``non``, ``excluding``,
       ``except``, ``never``) as a whole word;
    2. ``alternative``: a comparison phrase (``alternative(s)``, ``instead of``, ``similar to``,
       ``like``, ``cheaper than``, ``vs``/``versus``, ``dupe``, ``substitute``);
    3. ``qa``: a question: ends with ``?`` or starts with a question word (what, which, how,
       why, who, where, when, can, does, do, is, are, should, will, best);
    4. ``plain`` otherwise. ``knowledge`` needs world knowledge no heuristic has: never assigned.
    """
    tokens = _WORD.findall(text.lower())
    if any(t in NEGATION_WORDS for t in tokens):
        return "negative"
    for phrase in ALTERNATIVE_PHRASES:
        n = len(phrase)
        if any(tuple(tokens[i:i + n]) == phrase for i in range(len(tokens) - n + 1)):
            return "alternative"
    if text.strip().endswith("?") or (tokens and tokens[0] in QUESTION_WORDS):
        return "qa"
    return "plain"


def hash_split(query_id: str, eval_fraction: float) -> str:
    """A stable split of one query id: the same id gets the same split on every machine."""
    bucket = int(hashlib.sha1(str(query_id).encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "eval" if bucket < eval_fraction else "train"


class ImportFormatError(ValueError):
    """A source file does not have the format its importer reads. Names file, line and problem."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        where = f"{path}" + (f": line {line}" if line is not None else "")
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


@dataclass
class ImportOptions:
    """Knobs shared by every importer."""

    categories: str = "rule"  # "rule" (query_category) or one of CATEGORIES for every query
    eval_fraction: float = 0.2  # share of queries in eval where the source has no split
    locale: str | None = None  # esci: keep one product_locale (us, es, jp); None keeps all
    repair: bool = True  # repair text and drop leaked train queries (import_report.json); False: as published

    def __post_init__(self) -> None:
        if self.categories != "rule" and self.categories not in CATEGORIES:
            raise ValueError(f"categories must be 'rule' or one of {list(CATEGORIES)}, got {self.categories!r}")
        if not 0.0 <= self.eval_fraction <= 1.0:
            raise ValueError(f"eval_fraction must be within [0, 1], got {self.eval_fraction}")

    def category(self, text: str) -> str:
        return query_category(text) if self.categories == "rule" else self.categories


# --- reading, with line numbers -------------------------------------------------------------
def _require(path: Path) -> Path:
    if not path.is_file():
        raise ImportFormatError(path, None, "file not found")
    return path


def _open_bytes(path: Path) -> bytes:
    data = _require(path).read_bytes()
    if path.name.endswith((".zst", ".zstd")):
        import zstandard

        try:
            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        except zstandard.ZstdError as exc:
            raise ImportFormatError(path, None, f"not a valid zstd stream ({exc})") from exc
    return data


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without its ending), for non-blank lines; bad UTF-8 is named."""
    for line_no, raw in enumerate(_open_bytes(path).split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise ImportFormatError(path, line_no, f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 4]!r})") from exc
        if line.strip():
            yield line_no, line


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for line_no, line in _lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(path, line_no, f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(row, dict):
            raise ImportFormatError(path, line_no, f"expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def _tsv(path: Path, columns: tuple[str, ...], header_first: str | None) -> Iterator[tuple[int, dict]]:
    """Tab-separated rows as dicts. ``header_first``: the first header cell, when the file has a header."""
    lines = _lines(path)
    first = True
    for line_no, line in lines:
        cells = next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))
        if first:
            first = False
            if header_first is not None and cells and cells[0].strip() == header_first:
                missing = [c for c in columns if c not in [x.strip() for x in cells]]
                if missing:
                    raise ImportFormatError(path, line_no, f"header lacks column(s) {missing}; header: {cells}")
                names = [x.strip() for x in cells]
                columns_at = {c: names.index(c) for c in columns}
                continue
            columns_at = {c: i for i, c in enumerate(columns)}
        if len(cells) < len(columns_at):
            raise ImportFormatError(path, line_no, f"expected {len(columns_at)} tab-separated columns "
                                                   f"({', '.join(columns)}), got {len(cells)}: {line[:120]!r}")
        yield line_no, {c: cells[i] for c, i in columns_at.items()}


def _text(path: Path, line: int, row: dict, key: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ImportFormatError(path, line, f"field {key!r} must be a string, got {type(value).__name__}: {value!r}")
    return value


def _id(path: Path, line: int, row: dict, key: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise ImportFormatError(path, line, f"field {key!r} must be a non-empty string or integer id, got {value!r}")
    return str(value).strip()


def _clean(value: Any) -> str:
    """A text cell as a string; the literal "None"/"nan" some dumps hold for a missing value is empty."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value).strip()
    return "" if text in ("None", "nan", "NaN") else text


def _title(title: str, text: str) -> str:
    title = " ".join(title.split())
    return title or " ".join(text.split())[:TITLE_FROM_TEXT_CHARS]


# --- writing ----------------------------------------------------------------------------------
@dataclass
class _Dataset:
    name: str
    items: list[dict]
    queries: list[dict]  # query_id, text, split (+ extra columns); category added on write
    judgments: list[dict]  # query_id, item_id, relevance (> 0)
    dropped: Counter


def repair_text(value: str, layout_allowed: bool = False) -> tuple[str, list[str]]:
    """``value`` with what the gate's text rules reject repaired, and a description of each fix.

    Mojibake spans (as :func:`text_rules.mojibake_spans` finds them) are decoded back unless that
    yields U+FFFD; control characters (:data:`text_rules.CONTROL`, or ``CONTROL_BUT_LAYOUT`` in
    body text) become one space per run; U+FFFD is removed. Single-line values
    (``layout_allowed`` False) get their whitespace collapsed once changed. A value without
    any of these faults comes back unchanged with no fixes.
    """
    text, fixes = value, []
    for _ in range(MAX_MOJIBAKE_PASSES):
        spans = [s for s in text_rules.mojibake_spans(text) if text_rules.REPLACEMENT not in s[2]]
        if not spans:
            break
        fixes += [f"mojibake {text[start:end]!r} -> {meant!r}" for start, end, meant in spans]
        for start, end, meant in reversed(spans):  # right to left: earlier offsets stay valid
            text = text[:start] + meant + text[end:]
    control = text_rules.CONTROL_BUT_LAYOUT if layout_allowed else text_rules.CONTROL
    found = sorted({f"U+{ord(c):04X}" for c in control.findall(text)})
    if found:
        text = re.sub(f"(?:{control.pattern})+", " ", text)
        fixes.append(f"control character {', '.join(found)} -> space")
    lost = text.count(text_rules.REPLACEMENT)
    if lost:
        text = text.replace(text_rules.REPLACEMENT, "")
        fixes.append(f"U+FFFD removed ({lost}x)")
    if fixes and not layout_allowed:
        text = " ".join(text.split())
    return text, fixes


_ITEM_TEXT_FIELDS = (("title", False), ("text", True), ("brand", False), ("product_type", False),
                     ("department", False))


def _repair(ds: _Dataset, queries: list[dict]) -> tuple[list[dict], dict[str, Any]]:
    """Text repair of items and queries, then leaked train queries dropped (with their judgments)."""
    report: dict[str, Any] = {"repaired_items": [], "repaired_queries": [], "dropped_train_queries": [],
                              "dropped_queries": [], "unrepaired": []}
    for item in ds.items:
        fixed: dict[str, list[str]] = {}
        for field, layout in _ITEM_TEXT_FIELDS:
            value = item.get(field)
            if isinstance(value, str):
                new, fixes = repair_text(value, layout)
                if fixes:
                    item[field], fixed[field] = new, fixes
        if "title" in fixed and not item["title"]:
            item["title"] = _title("", item.get("text") or "")
            fixed["title"].append("blank once repaired: start of the text")
        for field, layout in _ITEM_TEXT_FIELDS:
            issue = text_rules.text_issue(item.get(field), layout_allowed=layout)
            if issue:
                report["unrepaired"].append({"file": schema.CATALOG_FILE, "id": item["item_id"], "field": field,
                                             "issue": issue})
        if fixed:
            report["repaired_items"].append({"item_id": item["item_id"], "fixes": fixed})
    kept = []
    for q in queries:
        new, fixes = repair_text(q["text"])
        if fixes:
            if not new:
                report["dropped_queries"].append({"query_id": q["query_id"], "split": q["split"],
                                                  "reason": "blank once repaired", "fixes": fixes})
                continue
            q["text"] = new
            report["repaired_queries"].append({"query_id": q["query_id"], "fixes": {"text": fixes}})
        issue = text_rules.text_issue(q["text"])
        if issue:
            report["unrepaired"].append({"file": schema.QUERIES_FILE, "id": q["query_id"], "field": "text",
                                         "issue": issue})
        kept.append(q)
    eval_ids: dict[Any, list[str]] = {}
    for q in kept:
        if q["split"] == "eval":
            eval_ids.setdefault(text_rules.normalized_query(q["text"]), []).append(q["query_id"])
    queries = []
    for q in kept:
        same = eval_ids.get(text_rules.normalized_query(q["text"])) if q["split"] == "train" else None
        if same:
            report["dropped_train_queries"].append({"query_id": q["query_id"], "text": q["text"],
                                                    "same_text_as_eval": same})
            continue
        queries.append(q)
    gone = {d["query_id"] for d in report["dropped_train_queries"] + report["dropped_queries"]}
    n_judgments = len(ds.judgments)
    ds.judgments = [j for j in ds.judgments if j["query_id"] not in gone]
    counts = {"items_repaired": len(report["repaired_items"]), "queries_repaired": len(report["repaired_queries"]),
              "train_queries_dropped_for_leakage": len(report["dropped_train_queries"]),
              "queries_dropped_blank": len(report["dropped_queries"]),
              "judgments_dropped_with_queries": n_judgments - len(ds.judgments),
              "unrepaired": len(report["unrepaired"])}
    return queries, {"counts": counts, **report}


def _summary(fmt: str, stats: dict[str, Any], counts: dict[str, int] | None) -> str:
    split = stats["queries_per_split"]
    line = (f"lrem data import {fmt}: {stats['n_items']} items, {stats['n_queries']} queries "
            f"({split['train']} train, {split['eval']} eval), {stats['n_judgments']} judgments")
    if counts is None:
        return line + "; repair off: source text and splits as published"
    return (line + f"; repaired {counts['items_repaired']} items and {counts['queries_repaired']} queries, "
            f"dropped {counts['train_queries_dropped_for_leakage']} train queries duplicating eval queries "
            f"and {counts['queries_dropped_blank']} blank once repaired, {counts['unrepaired']} left unrepaired; "
            f"see {REPORT_FILE}")


def _write(ds: _Dataset, out: Path, options: ImportOptions) -> dict[str, Any]:
    judged = {j["query_id"] for j in ds.judgments}
    queries = []
    for q in ds.queries:
        if q["query_id"] not in judged:
            ds.dropped["queries_without_relevant_judgments"] += 1
            continue
        queries.append(q)
    report = None
    if options.repair:
        queries, report = _repair(ds, queries)
    queries = [{**q, "category": options.category(q["text"])} for q in queries]
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / schema.CATALOG_FILE, ds.items)
    write_jsonl(out / schema.QUERIES_FILE, queries)
    write_jsonl(out / schema.JUDGMENTS_FILE, ds.judgments)
    knowledge = _minimal_knowledge(ds.items)
    (out / schema.KNOWLEDGE_FILE).write_text(json.dumps(knowledge, sort_keys=True, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    by_split = Counter(q["split"] for q in queries)
    stats = {
        "format": ds.name,
        "out": str(out),
        "n_items": len(ds.items),
        "n_queries": len(queries),
        "n_judgments": len(ds.judgments),
        "queries_per_split": {s: by_split.get(s, 0) for s in schema.SPLITS},
        "queries_per_category": dict(sorted(Counter(q["category"] for q in queries).items())),
        "relevance_grades": {str(k): v for k, v in sorted(Counter(j["relevance"] for j in ds.judgments).items())},
        "dropped": dict(sorted(ds.dropped.items())),
    }
    stats["repairs"] = report["counts"] if report is not None else None
    stats["summary"] = _summary(ds.name, stats, stats["repairs"])
    report_path = out / REPORT_FILE
    if report is not None:
        report_path.write_text(json.dumps({"format": ds.name, "summary": stats["summary"], **report}, indent=2,
                                          ensure_ascii=True) + "\n", encoding="utf-8")
        stats["report"] = str(report_path)
    elif report_path.exists():
        report_path.unlink()  # a report of an earlier import would describe other data
    return stats


def _minimal_knowledge(items: list[dict]) -> dict[str, Any]:
    """What the teacher can know of a real catalog: its product types and their brands (no uses or facts)."""
    types: dict[str, dict] = {}
    brands: dict[str, dict] = {}
    brand_counts: dict[str, Counter] = {}
    for item in items:
        info = types.setdefault(item["product_type"], {
            "department": item["department"], "synonyms": [], "keywords": [], "attributes": {},
            "negatable_attributes": [], "standard_brands": [], "premium_brands": []})
        if item.get("brand"):
            brand_counts.setdefault(item["product_type"], Counter())[item["brand"]] += 1
            brands.setdefault(item["brand"], {"tier": "standard", "department": info["department"],
                                              "product_types": []})
    for name, counts in brand_counts.items():
        types[name]["standard_brands"] = [b for b, _ in counts.most_common(5)]
        for brand in counts:
            if name not in brands[brand]["product_types"]:
                brands[brand]["product_types"].append(name)
    return {"source": "imported", "product_types": types, "brands": brands, "premium_brands": {},
            "uses": [], "facts": [], "budget_words": [], "negation_words": sorted(NEGATION_WORDS)}


def _add_judgment(ds: _Dataset, seen: dict[tuple[str, str], tuple[Path, int]], path: Path, line: int,
                  qid: str, iid: str, grade: int) -> None:
    key = (qid, iid)
    if key in seen:
        first_path, first_line = seen[key]
        raise ImportFormatError(path, line, f"duplicate judgment for query {qid!r} and item {iid!r} "
                                            f"(first at {first_path.name} line {first_line})")
    seen[key] = (path, line)
    if grade > 0:
        ds.judgments.append({"query_id": qid, "item_id": iid, "relevance": grade})
    else:
        ds.dropped["non_relevant_judgments"] += 1


# --- BEIR -------------------------------------------------------------------------------------
BEIR_QRELS_SPLITS = (("test", "eval"), ("dev", "train"), ("train", "train"))


def read_beir(src: Path, options: ImportOptions) -> _Dataset:
    src = Path(src)
    ds = _Dataset("beir", [], [], [], Counter())
    corpus_path = src / "corpus.jsonl"
    seen_items: dict[str, int] = {}
    for line, row in _jsonl(corpus_path):
        iid = _id(corpus_path, line, row, "_id")
        if iid in seen_items:
            raise ImportFormatError(corpus_path, line, f"duplicate _id {iid!r} (first at line {seen_items[iid]})")
        seen_items[iid] = line
        text = _text(corpus_path, line, row, "text")
        title = _title(_text(corpus_path, line, row, "title", required=False), text)
        if not title:
            raise ImportFormatError(corpus_path, line, f"document {iid!r} has neither title nor text")
        ds.items.append({"item_id": iid, "title": title, "text": text, "product_type": "document",
                         "department": src.name, "brand": None, "price": None, "attributes": {}})

    qrels_files = [(src / "qrels" / f"{name}.tsv", split) for name, split in BEIR_QRELS_SPLITS]
    qrels_files = [(p, s) for p, s in qrels_files if p.is_file()]
    if not qrels_files:
        raise ImportFormatError(src / "qrels", None, "no qrels: expected qrels/test.tsv, dev.tsv or train.tsv")
    split_of: dict[str, str] = {}
    judged: list[tuple[Path, int, str, str, int, str]] = []
    for path, split in qrels_files:
        for line, row in _tsv(path, ("query-id", "corpus-id", "score"), header_first="query-id"):
            qid, iid = row["query-id"].strip(), row["corpus-id"].strip()
            try:
                grade = int(row["score"].strip())
            except ValueError:
                raise ImportFormatError(path, line, f"score must be an integer, got {row['score']!r}") from None
            if iid not in seen_items:
                raise ImportFormatError(path, line, f"corpus-id {iid!r} is not in {corpus_path.name}")
            if split == "eval" or qid not in split_of:  # test qrels are read first: test wins
                split_of[qid] = split
            judged.append((path, line, qid, iid, grade, split))
    has_train = any(s == "train" for _, s in qrels_files)
    seen: dict[tuple[str, str], tuple[Path, int]] = {}
    for path, line, qid, iid, grade, split in judged:
        if split != split_of[qid]:  # a query judged in test and in train: test wins, its train rows go
            ds.dropped["train_judgments_of_test_queries"] += 1
            continue
        _add_judgment(ds, seen, path, line, qid, iid, grade)
    if not has_train and options.eval_fraction < 1.0:
        # Only test qrels: the documented fallback is a stable hash split of the test queries.
        split_of = {q: hash_split(q, options.eval_fraction) for q in split_of}

    queries_path = src / "queries.jsonl"
    seen_queries: dict[str, int] = {}
    for line, row in _jsonl(queries_path):
        qid = _id(queries_path, line, row, "_id")
        if qid in seen_queries:
            raise ImportFormatError(queries_path, line, f"duplicate _id {qid!r} (first at line {seen_queries[qid]})")
        seen_queries[qid] = line
        text = " ".join(_text(queries_path, line, row, "text").split())
        if qid not in split_of:
            ds.dropped["queries_without_qrels"] += 1
            continue
        if not text:
            raise ImportFormatError(queries_path, line, f"query {qid!r} has a blank text")
        ds.queries.append({"query_id": qid, "text": text, "split": split_of[qid]})
    unknown = sorted(set(split_of) - set(seen_queries))
    if unknown:
        raise ImportFormatError(qrels_files[0][0], None, f"query ids judged but not in {queries_path.name}: {unknown[:5]}")
    return ds


# --- ESCI -------------------------------------------------------------------------------------
ESCI_EXAMPLE_COLUMNS = ("query_id", "query", "product_id", "esci_label", "split")


def _esci_files(src: Path) -> tuple[Path, Path]:
    if src.is_file():
        raise ImportFormatError(src, None, "esci SRC must be the folder holding the examples and products files")
    parquet = sorted(src.glob("*.parquet"))
    products = [p for p in parquet if "product" in p.name] + sorted(
        p for p in src.iterdir() if p.name.endswith((".jsonl", ".jsonl.zst", ".jsonl.zstd")))
    examples = [p for p in parquet if p not in products]
    if len(examples) != 1:
        raise ImportFormatError(src, None, f"expected one examples parquet (with an esci_label column), found "
                                           f"{[p.name for p in examples]}")
    if len(products) != 1:
        raise ImportFormatError(src, None, f"expected one products file (*products*.parquet or *.jsonl[.zstd]), "
                                           f"found {[p.name for p in products]}")
    return examples[0], products[0]


def _parquet_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise ImportFormatError(path, None, f"not a readable parquet file ({exc})") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ImportFormatError(path, None, f"missing column(s) {missing}; columns: {list(frame.columns)}")
    # "line" of a parquet file: the 1-based row number
    for row_no, row in enumerate(frame.to_dict("records"), start=1):
        yield row_no, row


def _esci_product_rows(path: Path) -> Iterator[tuple[int, dict]]:
    if path.suffix == ".parquet":
        for row_no, row in _parquet_rows(path, ("product_id", "product_title")):
            yield row_no, {"id": row["product_id"], "title": row["product_title"],
                           "description": row.get("product_description"), "bullets": row.get("product_bullet_point"),
                           "brand": row.get("product_brand"), "color": row.get("product_color"),
                           "locale": row.get("product_locale")}
        return
    for line, row in _jsonl(path):
        fields = row.get("fields", row)  # Vespa feed rows wrap the product in "fields"
        if not isinstance(fields, dict):
            raise ImportFormatError(path, line, f"'fields' must be an object, got {type(fields).__name__}")
        yield line, fields


def read_esci(src: Path, options: ImportOptions) -> _Dataset:
    src = Path(src)
    examples_path, products_path = _esci_files(src)
    ds = _Dataset("esci", [], [], [], Counter())
    products: dict[str, dict] = {}
    for line, row in _esci_product_rows(products_path):
        pid = _id(products_path, line, row, "id")
        title = _clean(_text(products_path, line, row, "title"))
        if not title:
            raise ImportFormatError(products_path, line, f"product {pid!r} has a blank title")
        locale = _clean(row.get("locale"))
        key = f"{pid}:{locale}" if locale else pid
        if key in products:
            raise ImportFormatError(products_path, line, f"duplicate product {key!r}")
        body = " ".join(x for x in (_clean(row.get("description")), _clean(row.get("bullets"))) if x)
        products[key] = {"item_id": pid, "title": " ".join(title.split()), "text": body, "product_type": "product",
                         "department": f"esci-{locale}" if locale else "esci", "brand": _clean(row.get("brand")) or None,
                         "price": None, "attributes": {k: _clean(row.get(k)) for k in ("color", "locale")
                                                       if _clean(row.get(k))}}
    used: dict[str, dict] = {}
    split_of: dict[str, str] = {}
    seen: dict[tuple[str, str], tuple[Path, int]] = {}
    for row_no, row in _parquet_rows(examples_path, ESCI_EXAMPLE_COLUMNS):
        locale = _clean(row.get("product_locale"))
        if options.locale and locale != options.locale:
            ds.dropped["other_locale_examples"] += 1
            continue
        qid, pid = _id(examples_path, row_no, row, "query_id"), _id(examples_path, row_no, row, "product_id")
        label = row["esci_label"]
        if label not in ESCI_GRADES:
            raise ImportFormatError(examples_path, row_no, f"esci_label must be one of {list(ESCI_GRADES)}, got {label!r}")
        split = {"train": "train", "test": "eval"}.get(row["split"])
        if split is None:
            raise ImportFormatError(examples_path, row_no, f"split must be train or test, got {row['split']!r}")
        text = " ".join(_text(examples_path, row_no, row, "query").split())
        if not text:
            raise ImportFormatError(examples_path, row_no, f"query {qid!r} has a blank text")
        if qid in split_of and split_of[qid] != split:
            raise ImportFormatError(examples_path, row_no, f"query {qid!r} is in both splits")
        product = products.get(f"{pid}:{locale}" if locale else pid) or products.get(pid)
        if product is None:
            raise ImportFormatError(examples_path, row_no, f"product_id {pid!r} ({locale or 'no locale'}) is not in "
                                                           f"{products_path.name}")
        previous = used.setdefault(pid, product)
        if previous is not product:
            raise ImportFormatError(examples_path, row_no, f"product_id {pid!r} appears in two locales; "
                                                           "import one locale at a time (--locale)")
        if qid not in split_of:
            split_of[qid] = split
            ds.queries.append({"query_id": qid, "text": text, "split": split})
        _add_judgment(ds, seen, examples_path, row_no, qid, pid, ESCI_GRADES[label])
    ds.items = list(used.values())  # the judged products: the full product file is a large superset
    return ds


# --- WANDS ------------------------------------------------------------------------------------
def read_wands_queries(path: Path) -> list[tuple[int, dict]]:
    """``query.csv`` rows (query_id, query, query_class), line-numbered."""
    return list(_tsv(Path(path), ("query_id", "query", "query_class"), header_first="query_id"))


def read_wands(src: Path, options: ImportOptions) -> _Dataset:
    src = Path(src)
    ds = _Dataset("wands", [], [], [], Counter())
    product_path = src / "product.csv"
    label_path = src / "label.csv"
    query_path = src / "query.csv"
    for p in (query_path, product_path, label_path):
        _require(p)
    items: dict[str, dict] = {}
    for line, row in _tsv(product_path, ("product_id", "product_name", "product_class", "category hierarchy",
                                         "product_description"), header_first="product_id"):
        pid = _id(product_path, line, row, "product_id")
        if pid in items:
            raise ImportFormatError(product_path, line, f"duplicate product_id {pid!r}")
        title = " ".join(row["product_name"].split())
        if not title:
            raise ImportFormatError(product_path, line, f"product {pid!r} has a blank product_name")
        hierarchy = [h.strip() for h in row["category hierarchy"].split("/") if h.strip()]
        items[pid] = {"item_id": pid, "title": title, "text": _clean(row["product_description"]),
                      "product_type": _clean(row["product_class"]) or "unknown",
                      "department": hierarchy[0] if hierarchy else "unknown", "brand": None, "price": None,
                      "attributes": {"category_hierarchy": " / ".join(hierarchy)} if hierarchy else {}}
    ds.items = list(items.values())
    query_ids: dict[str, int] = {}
    for line, row in read_wands_queries(query_path):
        qid = _id(query_path, line, row, "query_id")
        if qid in query_ids:
            raise ImportFormatError(query_path, line, f"duplicate query_id {qid!r} (first at line {query_ids[qid]})")
        query_ids[qid] = line
        text = " ".join(row["query"].split())
        if not text:
            raise ImportFormatError(query_path, line, f"query {qid!r} has a blank text")
        ds.queries.append({"query_id": qid, "text": text, "split": hash_split(qid, options.eval_fraction),
                           "query_class": row["query_class"].strip()})
    seen: dict[tuple[str, str], tuple[Path, int]] = {}
    for line, row in _tsv(label_path, ("id", "query_id", "product_id", "label"), header_first="id"):
        qid, pid = row["query_id"].strip(), row["product_id"].strip()
        if qid not in query_ids:
            raise ImportFormatError(label_path, line, f"query_id {qid!r} is not in {query_path.name}")
        if pid not in items:
            raise ImportFormatError(label_path, line, f"product_id {pid!r} is not in {product_path.name}")
        label = row["label"].strip()
        if label not in WANDS_GRADES:
            raise ImportFormatError(label_path, line, f"label must be one of {list(WANDS_GRADES)}, got {label!r}")
        _add_judgment(ds, seen, label_path, line, qid, pid, WANDS_GRADES[label])
    return ds


READERS: dict[str, Callable[[Path, ImportOptions], _Dataset]] = {
    "beir": read_beir, "esci": read_esci, "wands": read_wands}


def import_dataset(fmt: str, src: str | Path, out: str | Path, options: ImportOptions | None = None) -> dict[str, Any]:
    """Read ``src`` in format ``fmt`` and write the data contract into ``out``; returns import stats.

    Raises :class:`ImportFormatError` (file, line, problem) on malformed input, before writing anything.
    """
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; known: {list(FORMATS)}")
    src = Path(src)
    if not src.exists():
        raise ImportFormatError(src, None, "source not found")
    options = options or ImportOptions()
    return _write(READERS[fmt](src, options), Path(out), options)


__all__ = ["FORMATS", "REPORT_FILE", "ImportFormatError", "ImportOptions", "hash_split", "import_dataset",
           "query_category", "read_wands_queries", "repair_text"]
