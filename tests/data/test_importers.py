"""`lrem data import`: the public formats into the data contract, on the real samples in ../shared/data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from components.cli import main as lrem
from components.data import schema
from components.data.importers import (
    ImportFormatError, ImportOptions, hash_split, import_dataset, query_category, read_wands_queries,
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
    # README of the sample: 5,183 docs; test qrels 300 queries / 339 judgments; train qrels 809 queries
    assert stats["n_items"] == 5183
    assert stats["queries_per_split"] == {"train": 809, "eval": 300}
    world = load_world(tmp_path / "scifact")
    eval_ids = set(world.split("eval")["query_id"])
    assert int(world.judgments["query_id"].isin(eval_ids).sum()) == 339
    doc = world.catalog.set_index("item_id").loc["4983"]
    assert doc["title"].startswith("Microstructural development of human newborn cerebral white matter")
    assert doc["text"].startswith("Alterations of the architecture of cerebral white matter")
    assert doc["price"] is None or doc["price"] != doc["price"]  # no price in BEIR: null


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
    assert json.loads(capsys.readouterr().out)["n_queries"] == 2
    assert len(read_jsonl(tmp_path / "out" / schema.JUDGMENTS_FILE)) == 2
    (src / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnope\t1\n")
    assert lrem(["data", "import", "beir", str(src), "--out", str(tmp_path / "bad")]) == 1
    assert "test.tsv: line 2: corpus-id 'nope' is not in corpus.jsonl" in capsys.readouterr().err
    assert lrem(["data", "import", "msmarco", str(src)]) == 2
