"""The GX suites: good data passes with Data Docs; each broken rule is named with file, rule and rows."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from components.validation import DataValidationError, validate_raw, validate_triplets

MAX_COT_WORDS = 4


def _raw_error(data_dir: Path, docs_dir: Path) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        validate_raw(data_dir, docs_dir)
    return info.value


def _triplet_error(triplets: Path, data_dir: Path, docs_dir: Path) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        validate_triplets(triplets, data_dir, MAX_COT_WORDS, docs_dir)
    return info.value


def _failure(error: DataValidationError, file: str, expectation: str, column: str) -> dict:
    matches = [f for f in error.failures
               if (f["file"], f["expectation"], f["column"]) == (file, expectation, column)]
    assert len(matches) == 1, f"no single {file} {expectation}({column}) in:\n{error}"
    return matches[0]


def test_good_raw_data_passes_and_writes_data_docs(make_data, tmp_path):
    docs = tmp_path / "docs"
    summary = validate_raw(make_data(), docs)
    assert summary["success"] is True and summary["failed"] == 0
    assert set(summary["files"]) == {"catalog.jsonl", "queries.jsonl", "judgments.jsonl", "knowledge.json"}
    assert summary["files"]["catalog.jsonl"]["rows"] == 5
    assert all(f["expectations"] > 0 for f in summary["files"].values())
    assert summary["expectations"] == sum(f["expectations"] for f in summary["files"].values())
    index = Path(summary["docs_index"])
    assert index == docs / "index.html" and index.is_file()
    assert list(docs.rglob("validations/**/*.html")), "no validation result page"


def test_catalog_missing_column_null_and_duplicate_id(make_data, rows, tmp_path):
    catalog = rows["catalog"]
    for row in catalog:
        del row["brand"]
    catalog[2]["item_id"] = None            # line 3
    catalog[3]["item_id"] = catalog[0]["item_id"]  # line 4 duplicates line 1
    docs = tmp_path / "docs"
    error = _raw_error(make_data(catalog=catalog), docs)
    message = str(error)

    assert "catalog.jsonl: expect_column_to_exist(brand) failed: column 'brand' is missing" in message
    assert "catalog.jsonl: expect_column_values_to_not_be_null(item_id) failed at rows [3]" in message
    assert ("catalog.jsonl: expect_column_values_to_be_unique(item_id) failed at rows [1, 4]: "
            "sample values ['I1']") in message
    assert _failure(error, "catalog.jsonl", "expect_column_values_to_be_unique", "item_id")["rows"] == [1, 4]
    # the missing column is reported once, not as errors of other rules on it
    assert [f for f in error.failures if f["column"] == "brand"] == [
        _failure(error, "catalog.jsonl", "expect_column_to_exist", "brand")]
    assert "could not be evaluated" not in message
    # Data Docs are written for a failed run too, and the error carries where
    assert error.docs_index == docs / "index.html" and error.docs_index.is_file()
    assert error.docs_dir == docs
    assert error.summary["success"] is False


def test_bad_price_and_blank_title(make_data, rows, tmp_path):
    rows["catalog"][1]["price"] = 0
    rows["catalog"][4]["title"] = "   "
    error = _raw_error(make_data(catalog=rows["catalog"]), tmp_path / "docs")
    assert "catalog.jsonl: expect_column_values_to_be_between(price) failed at rows [2]: sample values [0.0]" \
        in str(error)
    blank = _failure(error, "catalog.jsonl", "expect_column_values_to_be_null", "issue_of_title")
    assert blank["rows"] == [5] and "blank after removing invisible and control characters" in blank["message"]


def test_judged_item_missing_from_catalog(make_data, rows, tmp_path):
    rows["judgments"].append({"query_id": "Q2", "item_id": "I404"})  # line 6
    rows["judgments"].append({"query_id": "Q9", "item_id": "I1"})  # line 7
    error = _raw_error(make_data(judgments=rows["judgments"]), tmp_path / "docs")
    assert ("judgments.jsonl: expect_column_values_to_be_null(item_id_not_in_catalog) failed at rows [6]: "
            "sample values ['I404'] -- judged item_id exists in catalog.jsonl") in str(error)
    assert _failure(error, "judgments.jsonl", "expect_column_values_to_be_null", "query_id_not_in_queries")["rows"] == [7]
    assert len(error.failures) == 2


def test_bad_category(make_data, rows, tmp_path):
    rows["queries"][1]["category"] = "gossip"
    error = _raw_error(make_data(queries=rows["queries"]), tmp_path / "docs")
    assert ("queries.jsonl: expect_column_values_to_be_in_set(category) failed at rows [2]: "
            "sample values ['gossip']") in str(error)
    assert len(error.failures) == 1


def test_query_id_in_both_splits(make_data, rows, tmp_path):
    rows["queries"].append({"query_id": "Q1", "text": "red shoes", "category": "plain", "split": "eval"})  # line 5
    error = _raw_error(make_data(queries=rows["queries"]), tmp_path / "docs")
    message = str(error)
    assert "queries.jsonl: expect_column_values_to_be_unique(query_id) failed at rows [1, 5]" in message
    disjoint = _failure(error, "queries.jsonl", "expect_column_values_to_be_between", "n_splits_of_query_id")
    assert disjoint["rows"] == [1, 5]
    assert disjoint["message"].endswith("sample values [2] (query_id: ['Q1']) -- train, eval and dev query ids are disjoint")


def test_invalid_json_names_file_and_row(make_data, tmp_path):
    data_dir = make_data()
    path = data_dir / "queries.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"query_id": "Q3", "text": '
    path.write_text("\n".join(lines) + "\n")
    docs = tmp_path / "docs"
    error = _raw_error(data_dir, docs)
    assert "queries.jsonl: not valid JSON at rows [3]" in str(error)
    assert error.failures[0]["rows"] == [3]
    assert isinstance(error, DataValidationError)
    assert error.docs_index is not None and error.docs_index.is_file()  # the other files are still reported


def test_row_numbers_are_file_lines(make_data, rows, tmp_path):
    data_dir = make_data()
    path = data_dir / "catalog.jsonl"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace('"price": 15.0', '"price": -1')
    path.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n")  # a blank line shifts the rest
    error = _raw_error(data_dir, tmp_path / "docs")
    assert _failure(error, "catalog.jsonl", "expect_column_values_to_be_between", "price")["rows"] == [6]


def test_error_survives_pickling(make_data, rows, tmp_path):
    rows["queries"][0]["split"] = "test"
    error = _raw_error(make_data(queries=rows["queries"]), tmp_path / "docs")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.failures == error.failures and copy.docs_index == error.docs_index


def test_good_triplets_pass(make_data, make_triplets, rows, tmp_path):
    docs = tmp_path / "docs"
    summary = validate_triplets(make_triplets(rows["triplets"]), make_data(), MAX_COT_WORDS, docs)
    assert summary["success"] is True
    assert summary["files"]["triplets.jsonl"]["rows"] == 3
    assert (docs / "index.html").is_file() and summary["docs_index"] == str(docs / "index.html")


TRIPLET_CASES = {
    "too_long_cot": ({"cot": "a, b, c, d, e, f"}, "expect_column_values_to_be_between", "cot_word_count",
                     "sample values [6] (cot: ['a, b, c, d, e, f'])"),
    "empty_cot": ({"cot": ""}, "expect_column_values_to_match_regex", "cot", "sample values ['']"),
    "eval_query": ({"query_id": "Q4"}, "expect_column_values_to_not_be_in_set", "query_id",
                   "sample values ['Q4']"),
    "duplicate_pair": ({"query_id": "Q1", "item_id": "I1"}, "expect_compound_columns_to_be_unique",
                       "query_id, item_id", "sample values [{'query_id': 'Q1', 'item_id': 'I1'}]"),
    "unknown_item": ({"item_id": "I404"}, "expect_column_values_to_be_in_set", "item_id",
                     "sample values ['I404']"),
}


@pytest.mark.parametrize("case", list(TRIPLET_CASES))
def test_bad_triplet(case, make_data, make_triplets, rows, tmp_path):
    change, expectation, column, samples = TRIPLET_CASES[case]
    bad = {"query_id": "Q3", "query": "shoes not blue", "category": "negative", "cot": "shoe, not blue",
           "item_id": "I4", "item_title": "red shoe 4", **change}
    triplets = make_triplets(rows["triplets"] + [bad])  # line 4
    docs = tmp_path / "docs"
    error = _triplet_error(triplets, make_data(), docs)
    failure = _failure(error, "triplets.jsonl", expectation, column)
    expected_rows = [1, 4] if case == "duplicate_pair" else [4]
    assert failure["rows"] == expected_rows
    assert f"triplets.jsonl: {expectation}({column}) failed at rows {expected_rows}: {samples}" in str(error)
    assert len(error.failures) == 1, str(error)
    assert (docs / "index.html").is_file()


def test_triplets_missing_column(make_data, make_triplets, rows, tmp_path):
    for row in rows["triplets"]:
        del row["cot"]
    error = _triplet_error(make_triplets(rows["triplets"]), make_data(), tmp_path / "docs")
    assert "triplets.jsonl: expect_column_to_exist(cot) failed: column 'cot' is missing" in str(error)
    assert len(error.failures) == 1
