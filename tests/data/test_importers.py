"""`lrem data import`: the public formats into the data contract, on the real samples in ../shared/data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from components.cli import main as lrem
from components.data import schema
from components.data.importers import (
    REPORT_FILE, ImportFormatError, ImportOptions, hash_split, import_dataset, query_category, read_wands_queries,
    repair_text,
)
from components.data.io import load_world, read_jsonl

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SCIFACT = SHARED / "beir-scifact"
ESCI = SHARED / "esci-sample"
WANDS = SHARED / "wands-queries"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real data sample {path} is absent (../shared/data is not checked out beside the repo)")


def _contract(out: Path) -> None:
    """Every file of the contract is there with its columns, and ids line up."""
    world = load_world(out)
    assert set(schema.CATALOG_COLUMNS) <= set(world.catalog.columns)
    assert set(schema.QUERY_COLUMNS) <= set(world.queries.columns)
    assert set(schema.JUDGMENT_COLUMNS) <= set(world.judgments.columns)
    assert world.catalog["item_id"].is_unique and world.queries["query_id"].is_unique
    assert set(world.judgments["item_id"]) <= set(world.catalog["item_id"])
    assert set(world.judgments["query_id"]) == set(world.queries["query_id"])  # no unjudged query kept
    assert set(world.queries["split"]) <= set(schema.SPLITS)
    assert set(world.queries["category"]) <= set(schema.CATEGORIES)
    assert (world.judgments["relevance"] >= 1).all()
    assert json.loads((out / schema.KNOWLEDGE_FILE).read_text())["product_types"]


# ----------------------------------------------------------------------------- BEIR SciFact
def test_beir_scifact_complete(tmp_path):
    _need(SCIFACT)
    stats = import_dataset("beir", SCIFACT, tmp_path / "scifact")
    _contract(tmp_path / "scifact")
    # README of the sample: 5,183 docs; test qrels 300 queries / 339 judgments; train qrels 809
    # queries, of which 2 repeat a test claim under another id and are dropped (eval untouched)
    assert stats["n_items"] == 5183
    assert stats["queries_per_split"] == {"train": 807, "eval": 300}
    report = json.loads((tmp_path / "scifact" / REPORT_FILE).read_text())
    assert {d["query_id"]: d["same_text_as_eval"] for d in report["dropped_train_queries"]} == {
        "871": ["870"], "1291": ["1292"]}
    repaired = {r["item_id"]: sorted(r["fixes"]) for r in report["repaired_items"]}
    assert repaired == {i: ["title"] for i in ("11616424", "14615911", "18447487")} | {
        i: ["text"] for i in ("4336849", "8677721", "12207167", "15319019", "17415081", "36271512", "154549459")}
    assert report["unrepaired"] == [] and stats["repairs"]["judgments_dropped_with_queries"] == 2
    texts = world_texts = load_world(tmp_path / "scifact").catalog.set_index("item_id")["text"]
    assert "world’s largest prospective study" in world_texts.loc["17415081"]  # mojibake decoded back
    assert "function1 4." in texts.loc["4336849"]  # C1 U+0096 (a cp1252 dash) -> space
    world = load_world(tmp_path / "scifact")
    eval_ids = set(world.split("eval")["query_id"])
    assert int(world.judgments["query_id"].isin(eval_ids).sum()) == 339
    doc = world.catalog.set_index("item_id").loc["4983"]
    assert doc["title"].startswith("Microstructural development of human newborn cerebral white matter")
    assert doc["text"].startswith("Alterations of the architecture of cerebral white matter")
    assert doc["price"] is None or doc["price"] != doc["price"]  # no price in BEIR: null


def test_full_scifact_import_passes_the_raw_gate(tmp_path):
    """The real-data path: full SciFact, repaired by the importer, through the raw-data gate
    (gating 5,183 documents takes about 25 s on a loaded 2-core machine). The gate's coverage
    of the same faults, unrepaired: tests/validation/test_raw_gate_bad_input.py."""
    _need(SCIFACT)
    from components.validation import validate_raw

    import_dataset("beir", SCIFACT, tmp_path / "scifact")
    validate_raw(tmp_path / "scifact", tmp_path / "docs")  # raises DataValidationError on any failure


def test_beir_test_only_gets_a_stable_hash_split(tmp_path):
    _need(SCIFACT)
    src = tmp_path / "src"
    (src / "qrels").mkdir(parents=True)
    shutil.copy(SCIFACT / "corpus.jsonl", src / "corpus.jsonl")
    shutil.copy(SCIFACT / "queries.jsonl", src / "queries.jsonl")
    shutil.copy(SCIFACT / "qrels" / "test.tsv", src / "qrels" / "test.tsv")
    stats = import_dataset("beir", src, tmp_path / "out", ImportOptions(eval_fraction=0.5))
    assert stats["n_queries"] == 300 and 0 < stats["queries_per_split"]["eval"] < 300
    again = import_dataset("beir", src, tmp_path / "out2", ImportOptions(eval_fraction=0.5))
    assert again["queries_per_split"] == stats["queries_per_split"]


def _tiny_beir(root: Path, corpus: bytes | None = None, qrels: str | None = None) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_bytes(corpus if corpus is not None else (
        b'{"_id": "d1", "title": "Alpha", "text": "first doc"}\n'
        b'{"_id": "d2", "title": "", "text": "second doc has no title"}\n'))
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "is alpha first?"}\n'
                                        '{"_id": "q2", "text": "second without title"}\n')
    (root / "qrels" / "test.tsv").write_text(qrels if qrels is not None else
                                             "query-id\tcorpus-id\tscore\r\nq1\td1\t2\r\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t1\n")
    return root


def test_beir_tiny_grades_titles_and_categories(tmp_path):
    stats = import_dataset("beir", _tiny_beir(tmp_path / "src"), tmp_path / "out")
    assert stats["queries_per_split"] == {"train": 1, "eval": 1}
    world = load_world(tmp_path / "out")
    assert world.graded() == {"q1": {"d1": 2}, "q2": {"d2": 1}}
    assert world.catalog.set_index("item_id").loc["d2", "title"] == "second doc has no title"
    assert dict(zip(world.queries["query_id"], world.queries["category"])) == {"q1": "qa", "q2": "negative"}
    plain = import_dataset("beir", tmp_path / "src", tmp_path / "plain", ImportOptions(categories="plain"))
    assert plain["queries_per_category"] == {"plain": 2}


# ----------------------------------------------------------------------------- faults of the source
def _faulty_beir(root: Path) -> Path:
    """A BEIR folder with each fault the raw gate rejects: leakage, U+FFFD, mojibake, C0/C1 controls."""
    (root / "qrels").mkdir(parents=True)
    docs = [
        {"_id": "d1", "title": "Nuclear Factor-\ufffdB in tumours", "text": "clean abstract"},
        {"_id": "d2", "title": "Cohort", "text": "the world\u00e2\u20ac\u2122s largest study"},  # 'â€™'
        {"_id": "d3", "title": "Caf\u00c3\u00a9 \u00c3\u00a9tude", "text": "ranges 1\x964 and\tcolumns\nkept"},
        {"_id": "d4", "title": "Bell\x07 title", "text": "form\x0cfeed and\x1b[31m escape \ufffd"},
        {"_id": "d5", "title": "Clean title", "text": "Clean text, caf\u00e9 \u2019quoted\u2019."},
        {"_id": "d6", "title": "\ufffd", "text": "title lost entirely"},
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    queries = [{"_id": "q1", "text": "Obesity decreases life quality."},       # eval
               {"_id": "q2", "text": "obesity  decreases life-quality"},        # train: same claim, other id
               {"_id": "q3", "text": "What is a caf\u00c3\u00a9?"},            # train: mojibake in a query
               {"_id": "q4", "text": "tumour\x96growth"}]                      # eval: C1 (a cp1252 dash)
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq4\td1\t1\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t1\nq3\td3\t1\nq3\td5\t1\n")
    return root


def test_faulty_source_is_repaired_reported_and_passes_the_gate(tmp_path):
    from components.validation import DataValidationError, validate_raw

    src = _faulty_beir(tmp_path / "src")
    raw = import_dataset("beir", src, tmp_path / "raw", ImportOptions(repair=False))
    assert raw["repairs"] is None and not (tmp_path / "raw" / REPORT_FILE).exists()
    with pytest.raises(DataValidationError) as info:  # as published, the gate names every fault
        validate_raw(tmp_path / "raw", tmp_path / "docs_raw")
    found = {(f["file"], f["column"]): f["rows"] for f in info.value.failures}
    assert found == {("catalog.jsonl", "issue_of_title"): [1, 3, 4, 6],
                     ("catalog.jsonl", "issue_of_text"): [2, 3, 4],
                     ("queries.jsonl", "splits_of_normalized_text"): [1, 2],
                     ("queries.jsonl", "issue_of_text"): [3, 4]}, str(info.value)

    stats = import_dataset("beir", src, tmp_path / "out")
    validate_raw(tmp_path / "out", tmp_path / "docs")  # passes
    assert stats["queries_per_split"] == {"train": 1, "eval": 2} and stats["n_judgments"] == 4
    assert stats["repairs"] == {"items_repaired": 5, "queries_repaired": 2, "train_queries_dropped_for_leakage": 1,
                                "queries_dropped_blank": 0, "judgments_dropped_with_queries": 1, "unrepaired": 0}
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text(encoding="utf-8"))
    assert report["summary"] == stats["summary"]
    assert report["dropped_train_queries"] == [{"query_id": "q2", "text": "obesity decreases life-quality",
                                                "same_text_as_eval": ["q1"]}]
    assert {r["item_id"]: r["fixes"] for r in report["repaired_items"]} == {
        "d1": {"title": ["U+FFFD removed (1x)"]},
        "d2": {"text": ["mojibake '\u00e2\u20ac\u2122' -> '\u2019'"]},
        "d3": {"title": ["mojibake '\u00c3\u00a9' -> '\u00e9'", "mojibake '\u00c3\u00a9' -> '\u00e9'"],
               "text": ["control character U+0096 -> space"]},
        "d4": {"title": ["control character U+0007 -> space"],
               "text": ["control character U+000C, U+001B -> space", "U+FFFD removed (1x)"]},
        "d6": {"title": ["U+FFFD removed (1x)", "blank once repaired: start of the text"]},
    }  # d5 is clean: not touched, not listed
    assert {r["query_id"]: r["fixes"]["text"] for r in report["repaired_queries"]} == {
        "q3": ["mojibake '\u00c3\u00a9' -> '\u00e9'"], "q4": ["control character U+0096 -> space"]}
    world = load_world(tmp_path / "out")
    catalog = world.catalog.set_index("item_id")
    assert catalog.loc["d1", "title"] == "Nuclear Factor-B in tumours"
    assert catalog.loc["d2", "text"] == "the world\u2019s largest study"
    assert catalog.loc["d3", "title"] == "Caf\u00e9 \u00e9tude" and catalog.loc["d3", "text"] == "ranges 1 4 and\tcolumns\nkept"
    assert catalog.loc["d5", "text"] == "Clean text, caf\u00e9 \u2019quoted\u2019."
    assert catalog.loc["d6", "title"] == "title lost entirely"
    assert dict(zip(world.queries["query_id"], world.queries["text"])) == {
        "q1": "Obesity decreases life quality.", "q3": "What is a caf\u00e9?", "q4": "tumour growth"}
    assert world.graded() == {"q1": {"d2": 1}, "q3": {"d3": 1, "d5": 1}, "q4": {"d1": 1}}


@pytest.mark.parametrize("value, layout, expected, fixes", [
    ("clean caf\u00e9 \u2014 text", False, "clean caf\u00e9 \u2014 text", []),
    ("tab\tand\nnewline kept", True, "tab\tand\nnewline kept", []),
    ("tab\tin a title", False, "tab in a title", ["control character U+0009 -> space"]),
    ("double \u00c3\u0192\u00c2\u00a9 encoded", False, "double \u00e9 encoded",
     ["mojibake '\u00c3\u0192' -> '\u00c3'", "mojibake '\u00c2\u00a9' -> '\u00a9'", "mojibake '\u00c3\u00a9' -> '\u00e9'"]),
    ("lost \u00ef\u00bf\u00bd there", False, "lost \u00ef\u00bf\u00bd there", []),  # would decode to U+FFFD: left
])
def test_repair_text(value, layout, expected, fixes):
    assert repair_text(value, layout) == (expected, fixes)


def test_unrepairable_text_is_reported_and_left_to_the_gate(tmp_path):
    src = _tiny_beir(tmp_path / "src", corpus=b'{"_id": "d1", "title": "Alpha \xc3\xaf\xc2\xbf\xc2\xbd", '
                                              b'"text": "x"}\n{"_id": "d2", "title": "B", "text": "y"}\n')
    stats = import_dataset("beir", src, tmp_path / "out")
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text(encoding="utf-8"))
    assert stats["repairs"]["unrepaired"] == 1 and "1 left unrepaired" in stats["summary"]
    assert report["unrepaired"] == [{"file": "catalog.jsonl", "id": "d1", "field": "title",
                                     "issue": "mojibake '\u00ef\u00bf\u00bd' (UTF-8 read as Latin-1/cp1252; meant '\ufffd')"}]


@pytest.mark.parametrize("corpus, qrels, expected", [
    (b'{"_id": "d1", "title": "Alpha", "text": "x"}\n{"_id": "d2", "title": "B", "text": \n', None,
     r"corpus\.jsonl: line 2: not valid JSON"),
    (b'{"_id": "d1", "title": "Alpha", "text": "x"}\n{"_id": "d2", "title": "\xff\xfe", "text": "y"}\n', None,
     r"corpus\.jsonl: line 2: not valid UTF-8"),
    (b'{"_id": "d1", "title": 7, "text": "x"}\n', None,
     r"corpus\.jsonl: line 1: field 'title' must be a string, got int"),
    (b'{"_id": "d1", "title": "A", "text": "x"}\n{"_id": "d1", "title": "B", "text": "y"}\n', None,
     r"corpus\.jsonl: line 2: duplicate _id 'd1' \(first at line 1\)"),
    (None, "query-id\tcorpus-id\tscore\nq1\td1\thigh\n", r"test\.tsv: line 2: score must be an integer, got 'high'"),
    (None, "query-id\tcorpus-id\tscore\nq1\td9\t1\n", r"test\.tsv: line 2: corpus-id 'd9' is not in corpus\.jsonl"),
    (None, "query-id\tcorpus-id\tscore\nq1 d1 1\n", r"test\.tsv: line 2: expected 3 tab-separated columns"),
])
def test_beir_malformed_input_names_file_and_line(tmp_path, corpus, qrels, expected):
    src = _tiny_beir(tmp_path / "src", corpus=corpus, qrels=qrels)
    with pytest.raises(ImportFormatError, match=expected):
        import_dataset("beir", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written from a malformed source


# ----------------------------------------------------------------------------- ESCI
def test_esci_sample(tmp_path):
    _need(ESCI)
    stats = import_dataset("esci", ESCI, tmp_path / "esci")
    _contract(tmp_path / "esci")
    world = load_world(tmp_path / "esci")
    assert stats["n_items"] == 16  # every judged product, the irrelevant ones too (they are in the catalog)
    assert stats["n_queries"] == 1 and stats["queries_per_split"] == {"train": 0, "eval": 1}
    # 16 examples of query 535: 3 Exact, 6 Substitute, 7 Irrelevant (not written)
    assert stats["relevance_grades"] == {"3": 3, "2": 6}
    assert stats["dropped"] == {"non_relevant_judgments": 7}
    assert world.queries.iloc[0]["category"] == "negative"  # "... radio oem not navigation system"
    item = world.catalog.set_index("item_id").loc["B08VSJGP1N"]
    assert item["brand"] == "Rimoody" and item["title"].startswith("Apple Carplay Double Din Car Stereo")
    assert item["attributes"] == {"color": "black", "locale": "us"}


def test_esci_bad_label_names_the_row(tmp_path):
    _need(ESCI)
    import pandas as pd

    src = tmp_path / "esci"
    src.mkdir()
    shutil.copy(ESCI / "sample-products.jsonl.zstd", src)
    frame = pd.read_parquet(ESCI / "test-sample.parquet")
    frame.loc[frame.index[4], "esci_label"] = "X"
    frame.to_parquet(src / "test-sample.parquet")
    with pytest.raises(ImportFormatError, match=r"test-sample\.parquet: line 5: esci_label must be one of"):
        import_dataset("esci", src, tmp_path / "out")


# ----------------------------------------------------------------------------- WANDS
def test_wands_real_queries_parse():
    _need(WANDS)
    rows = read_wands_queries(WANDS / "query.csv")
    assert len(rows) == 480
    line, first = rows[0]
    assert line == 2 and first == {"query_id": "0", "query": "salon chair", "query_class": "Massage Chairs"}
    assert len({r["query_class"] for _, r in rows}) == 189
    assert {query_category(r["query"]) for _, r in rows} <= {"plain", "qa", "negative", "alternative"}


def _wands_src(tmp_path: Path, label_rows: list[str]) -> Path:
    src = tmp_path / "wands"
    src.mkdir()
    shutil.copy(WANDS / "query.csv", src / "query.csv")
    header = "product_id\tproduct_name\tproduct_class\tcategory hierarchy\tproduct_description\tproduct_features\t" \
             "rating_count\taverage_rating\treview_count\n"
    (src / "product.csv").write_text(
        header + "10\tbeauty salon chair\tMassage Chairs\tFurniture / Office / Chairs\ta chair\tx\t1\t5\t1\n"
        "11\toak coffee table\tCoffee & Cocktail Tables\tFurniture / Living Room\t\tx\t\t\t\n", encoding="utf-8")
    (src / "label.csv").write_text("id\tquery_id\tproduct_id\tlabel\n" + "".join(r + "\n" for r in label_rows))
    return src


def test_wands_with_products_and_labels(tmp_path):
    _need(WANDS)
    src = _wands_src(tmp_path, ["0\t0\t10\tExact", "1\t1\t11\tPartial", "2\t1\t10\tIrrelevant"])
    stats = import_dataset("wands", src, tmp_path / "out")
    _contract(tmp_path / "out")
    assert stats["n_items"] == 2 and stats["n_queries"] == 2
    assert stats["dropped"] == {"non_relevant_judgments": 1, "queries_without_relevant_judgments": 478}
    world = load_world(tmp_path / "out")
    assert world.graded() == {"0": {"10": 2}, "1": {"11": 1}}
    assert world.catalog.set_index("item_id").loc["10", "department"] == "Furniture"
    assert world.queries.set_index("query_id").loc["0", "query_class"] == "Massage Chairs"
    assert {hash_split(q, 0.2) for q in map(str, range(480))} == {"train", "eval"}


def test_wands_errors(tmp_path):
    _need(WANDS)
    with pytest.raises(ImportFormatError, match=r"product\.csv: file not found"):
        import_dataset("wands", WANDS, tmp_path / "out")
    src = _wands_src(tmp_path, ["0\t0\t10\tExact", "1\t0\t99\tExact"])
    with pytest.raises(ImportFormatError, match=r"label\.csv: line 3: product_id '99' is not in product\.csv"):
        import_dataset("wands", src, tmp_path / "out")


# ----------------------------------------------------------------------------- rule and CLI
@pytest.mark.parametrize("text, category", [
    ("sofa without arms", "negative"), ("non slip rug", "negative"), ("cheaper alternative to dyson", "alternative"),
    ("lamp like a mushroom", "alternative"), ("what desk for a small room", "qa"), ("is oak durable?", "qa"),
    ("blue velvet sofa", "plain"), ("nothing", "plain"),
])
def test_query_category_rule(text, category):
    assert query_category(text) == category


def test_cli_import_and_clear_error(tmp_path, capsys):
    src = _tiny_beir(tmp_path / "src")
    assert lrem(["data", "import", "beir", str(src), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n_queries"] == 2
    assert captured.err.strip().splitlines() == [
        "lrem data import beir: 2 items, 2 queries (1 train, 1 eval), 2 judgments; repaired 0 items and 0 queries, "
        "dropped 0 train queries duplicating eval queries and 0 blank once repaired, 0 left unrepaired; "
        "see import_report.json"]
    assert len(read_jsonl(tmp_path / "out" / schema.JUDGMENTS_FILE)) == 2
    (src / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnope\t1\n")
    assert lrem(["data", "import", "beir", str(src), "--out", str(tmp_path / "bad")]) == 1
    assert "test.tsv: line 2: corpus-id 'nope' is not in corpus.jsonl" in capsys.readouterr().err
    assert lrem(["data", "import", "msmarco", str(src)]) == 2
