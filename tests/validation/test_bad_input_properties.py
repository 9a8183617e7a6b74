"""Property-based tests of the raw-data gate (issue 28, class 1 and 6): whatever bytes or JSON
values a data file holds, the gate ends in a DataValidationError naming the file (and the
line, for a line's fault) or passes; whatever it passes, every loader, the backbone corpus
and the teacher read without error.

Example counts are sized for CI (all of tests/validation's new tests within ~90 s);
``LREM_HYPOTHESIS_SCALE=20`` multiplies them for a longer hunt. The profile is derandomized
(tests/validation/conftest.py), so CI runs the same examples every time.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.data import schema
from components.data.io import LineProblem, load_knowledge, load_world, parse_line, read_jsonl
from components.validation import DataFileError, DataValidationError, validate_raw
from conftest import good_catalog, good_judgments, good_knowledge, good_queries, write_knowledge

SCALE = int(os.environ.get("LREM_HYPOTHESIS_SCALE", "1"))
FILES = (schema.CATALOG_FILE, schema.QUERIES_FILE, schema.JUDGMENTS_FILE, schema.KNOWLEDGE_FILE)
COLUMNS = {schema.CATALOG_FILE: [*schema.CATALOG_COLUMNS, "text", "extra", "line", "title_chars"],
           schema.QUERIES_FILE: [*schema.QUERY_COLUMNS, "n_splits_of_query_id", "extra"],
           schema.JUDGMENTS_FILE: [*schema.JUDGMENT_COLUMNS, "relevance", "pair_issue"]}
FAST = settings(max_examples=300 * SCALE, deadline=None)
GATE = settings(max_examples=8 * SCALE, deadline=None, suppress_health_check=list(HealthCheck))

# Text with the characters that break things: controls, invisibles, surrogates, mojibake, BOM.
NASTY = st.sampled_from(["\x00", "\x1b[31m", "\u200b", "\ufeff", "\u00a0", "\ud800", "Ã©", "\ufffd", "\r",
                         "\u2028", "\x85", " ", "", "é", "𝔘", "\\", '"'])
TEXT = st.one_of(st.text(max_size=12), st.lists(NASTY, max_size=4).map("".join),
                 st.tuples(st.text(max_size=6), NASTY).map("".join))
SCALARS = st.one_of(st.none(), st.booleans(), TEXT,
                    st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([2 ** 53, 2 ** 53 + 1, -(2 ** 63), 10 ** 400, 1e308, -0.0]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)


def _json_text(value) -> str:
    """JSON as Python writes it (NaN, Infinity and surrogates included: what real tools emit)."""
    return json.dumps(value, ensure_ascii=bool(hash(repr(value)) % 2))


# Whole lines: valid rows of the contract, rows with one odd value, JSON that is not an object,
# raw byte noise, and the byte-level traps (BOM, deep nesting, duplicate keys, huge numbers).
def _row_with(file: str):
    base = {schema.CATALOG_FILE: good_catalog()[0], schema.QUERIES_FILE: good_queries()[0],
            schema.JUDGMENTS_FILE: good_judgments()[0]}[file]
    return st.tuples(st.sampled_from(COLUMNS[file]), JSON_VALUES).map(
        lambda kv: _json_text({**base, kv[0]: kv[1]}).encode("utf-8", "surrogatepass"))


BYTE_TRAPS = st.sampled_from([
    b"\xef\xbb\xbf{}", b'{"a": 1, "a": 2}', b"[" * 3000 + b"]" * 3000, b'{"x": ' + b"9" * 5000 + b"}",
    b'{"price": NaN}', b'{"price": -Infinity}', b'{"price": 1e999}', b'"\\ud800"', b'{"t": "\\udfff"}',
    b"\x00\x01", b"\r", b'{"a":\r1}', b"\xff\xfe{", b"\xed\xa0\x80", b"null", b"[]", b"42", b"{" * 20 + b"}" * 20,
])


def _lines(file: str):
    if file == schema.KNOWLEDGE_FILE:
        return st.one_of(JSON_VALUES.map(lambda v: _json_text(v).encode("utf-8", "surrogatepass")),
                         BYTE_TRAPS, st.binary(max_size=40))
    return st.one_of(_row_with(file), JSON_VALUES.map(lambda v: _json_text(v).encode("utf-8", "surrogatepass")),
                     BYTE_TRAPS, st.binary(max_size=40))


@st.composite
def broken_file(draw):
    """(file name, its new bytes): a good file with some lines replaced, or a file of noise."""
    file = draw(st.sampled_from(FILES))
    if file == schema.KNOWLEDGE_FILE:
        return file, draw(_lines(file))
    good = {schema.CATALOG_FILE: good_catalog(), schema.QUERIES_FILE: good_queries(),
            schema.JUDGMENTS_FILE: good_judgments()}[file]
    lines = [json.dumps(r).encode() for r in good]
    for _ in range(draw(st.integers(1, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(_lines(file)))
    if draw(st.booleans()):
        lines = lines[:draw(st.integers(0, len(lines)))]
    return file, draw(st.sampled_from([b"\n", b"\r\n"])).join(lines)


def _check_outcome(data_dir: Path, docs: Path) -> dict | None:
    """Run the gate: a pass, or a DataValidationError whose every failure names its file (and its
    lines, for a line's fault); never any other exception."""
    try:
        return validate_raw(data_dir, docs)
    except DataValidationError as error:
        assert error.failures
        for failure in error.failures:
            assert failure["file"] in FILES, failure
            assert failure["message"].startswith(f"{failure['file']}: "), failure["message"]
            if failure["expectation"] in ("valid_utf8", "valid_json_lines", "standard_json", "unique_keys",
                                          "nesting_depth", "valid_unicode", "no_byte_order_mark"):
                assert failure["rows"], failure
        return None


def _load_everything(data_dir: Path, out: Path) -> None:
    """What the later steps read of an accepted folder: the loaders, the backbone corpus, the teacher."""
    from components.config import TeacherConfig
    from components.teacher.triplets import generate_triplets
    from components.training.pretrain import render_world_corpus

    world = load_world(data_dir)
    world.relevant(), world.graded(), world.split("eval")
    knowledge = load_knowledge(data_dir)
    render_world_corpus(world.catalog.to_dict(orient="records"), world.split("train")["text"].tolist(), knowledge)
    generate_triplets(data_dir, TeacherConfig(), out / "triplets.jsonl")


def _write_good(data_dir: Path) -> None:
    from components.data.io import write_jsonl

    data_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(data_dir / schema.CATALOG_FILE, good_catalog())
    write_jsonl(data_dir / schema.QUERIES_FILE, good_queries())
    write_jsonl(data_dir / schema.JUDGMENTS_FILE, good_judgments())
    write_knowledge(data_dir, good_knowledge())


@FAST
@given(raw=st.one_of(st.binary(max_size=60), _lines(schema.CATALOG_FILE), _lines(schema.QUERIES_FILE)))
def test_line_reader_returns_an_object_or_names_the_rule(raw):
    """The reading rules the gate and every loader share: any bytes give a dict or a LineProblem."""
    try:
        row = parse_line(raw)
    except LineProblem as problem:
        assert problem.rule and problem.detail
    else:
        assert isinstance(row, dict)
        json.dumps(row, ensure_ascii=False).encode("utf-8")  # writable again: no surrogates, no NaN


@FAST
@given(case=broken_file())
def test_loaders_fail_only_with_a_named_data_file_error(case, tmp_path_factory):
    """Whatever a file holds, a loader returns or raises DataFileError naming the file (and line)."""
    file, content = case
    data_dir = tmp_path_factory.mktemp("loaders")
    _write_good(data_dir)
    (data_dir / file).write_bytes(content)
    try:
        if file == schema.KNOWLEDGE_FILE:
            load_knowledge(data_dir)
        else:
            read_jsonl(data_dir / file)
            load_world(data_dir)
    except DataFileError as error:
        assert str(error).startswith(file), str(error)
    finally:
        shutil.rmtree(data_dir)


@GATE
@given(case=broken_file())
def test_any_bytes_in_any_file_end_in_a_named_failure_or_a_pass(case, tmp_path_factory):
    file, content = case
    root = tmp_path_factory.mktemp("gate")
    _write_good(root / "data")
    (root / "data" / file).write_bytes(content)
    summary = _check_outcome(root / "data", root / "docs")
    if summary is not None:  # a pass: then every later step reads it
        _load_everything(root / "data", root)
    shutil.rmtree(root)


@GATE
@given(file=st.sampled_from(FILES[:3]), line=st.integers(0, 3), column=st.data(), value=JSON_VALUES)
def test_any_json_value_in_any_field_ends_in_a_named_failure_or_a_pass(file, line, column, value,
                                                                       tmp_path_factory):
    name = column.draw(st.sampled_from(COLUMNS[file]))
    root = tmp_path_factory.mktemp("value")
    _write_good(root / "data")
    rows = read_jsonl(root / "data" / file)
    rows[line][name] = value
    (root / "data" / file).write_bytes(b"\n".join(_json_text(r).encode("utf-8", "surrogatepass") for r in rows))
    summary = _check_outcome(root / "data", root / "docs")
    if summary is not None:
        _load_everything(root / "data", root)
    shutil.rmtree(root)


CLEAN_TEXT = st.text(alphabet=st.characters(categories=("L", "N", "Zs")), min_size=1, max_size=16).filter(
    lambda t: t.strip())
PASSED: list[bool] = []


@st.composite
def accepted_world(draw):
    """A folder the contract allows, in its optional forms: nulls, optional columns, grades."""
    n_items = draw(st.integers(1, 6))
    catalog = [{"item_id": f"I{i}", "title": draw(CLEAN_TEXT), "product_type": "shoe", "department": "shoes",
                "brand": draw(st.one_of(st.none(), CLEAN_TEXT)),
                "price": draw(st.one_of(st.none(), st.floats(0.01, 1e6))),
                "attributes": draw(st.one_of(st.none(), st.dictionaries(CLEAN_TEXT, st.one_of(
                    CLEAN_TEXT, st.integers(-1000, 1000), st.booleans()), max_size=2)))}
               for i in range(n_items)]
    if draw(st.booleans()):
        catalog[0]["text"] = draw(st.text(max_size=30).map(lambda t: "".join(c for c in t if c.isprintable())))
    splits = ["train", "eval"] + draw(st.lists(st.sampled_from(["train", "eval"]), max_size=4))
    queries = [{"query_id": f"Q{i}", "text": f"{draw(CLEAN_TEXT)} {i}", "split": split,
                "category": draw(st.sampled_from(["plain", "qa", "alternative", "negative", "knowledge"]))}
               for i, split in enumerate(splits)]
    graded = draw(st.booleans())
    judgments = [{"query_id": q["query_id"], "item_id": f"I{draw(st.integers(0, n_items - 1))}",
                  **({"relevance": draw(st.integers(1, 3))} if graded else {})} for q in queries]
    return catalog, queries, judgments


@settings(max_examples=5 * SCALE, deadline=None, suppress_health_check=list(HealthCheck))
@given(world=accepted_world())
def test_generated_accepted_folders_load_in_every_later_step(world, tmp_path_factory):
    """Class 6 on generated data: every folder of this strategy the gate accepts goes through the
    loaders, the backbone corpus and the teacher; the strategy's folders do pass (checked at the end)."""
    from components.data.io import write_jsonl

    catalog, queries, judgments = world
    root = tmp_path_factory.mktemp("accepted")
    data_dir = root / "data"
    _write_good(data_dir)
    for rows, name in ((catalog, schema.CATALOG_FILE), (queries, schema.QUERIES_FILE),
                       (judgments, schema.JUDGMENTS_FILE)):
        write_jsonl(data_dir / name, rows)
    summary = _check_outcome(data_dir, root / "docs")
    PASSED.append(summary is not None)
    if summary is not None:
        _load_everything(data_dir, root)
    shutil.rmtree(root)


def test_the_accepted_strategy_was_accepted():
    """Guards the test above: it must have loaded something (runs after it, in file order)."""
    if not PASSED:
        import pytest

        pytest.skip("runs after test_generated_accepted_folders_load_in_every_later_step only")
    assert sum(PASSED) >= 1, PASSED
