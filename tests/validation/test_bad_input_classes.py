"""The raw-data gate, bad input round two (issue 28): one test per class of bad input.

Each test names the class it covers; the property-based tests of classes 1 and 6 are in
test_bad_input_properties.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components.config import load_config
from components.data import schema
from components.data.io import load_knowledge, load_world, read_jsonl, write_jsonl
from components.pipeline import run_conf_overrides
from components.validation import DataFileError, DataValidationError, validate_raw
from components.validation.drift import load_baseline, save_baseline
from components.validation.suites import RawBounds
from conftest import good_catalog, good_judgments, good_knowledge, good_queries, write_knowledge


def _reject(data_dir: Path, docs: Path, bounds: RawBounds | None = None, baseline: Path | None = None):
    with pytest.raises(DataValidationError) as info:  # and never any other exception
        validate_raw(data_dir, docs, bounds, baseline)
    return info.value


def _by_column(error: DataValidationError) -> dict:
    return {(f["file"], f["column"] or f["expectation"]): f for f in error.failures}


def _docs_text(docs: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in docs.rglob("*.html"))


def test_class1_every_crash_kind_is_a_named_failure_with_its_line(make_data, tmp_path):
    """NaN, Infinity, huge numbers, BOM, surrogates, duplicate keys, deep nesting, non-objects,
    a CR inside a row, invalid UTF-8, an empty file: each named with file, lines and rule."""
    data_dir = make_data()
    good = (data_dir / schema.CATALOG_FILE).read_bytes().split(b"\n")[:5]
    bad = [
        b"\xef\xbb\xbf" + good[0],                                     # 1 BOM
        good[1].replace(b'"price": 12.0', b'"price": NaN'),           # 2 not standard JSON
        good[2].replace(b'"price": 13.0', b'"price": 1e999'),         # 3 overflows to infinity
        good[3].replace(b'"price": 14.0', b'"price": ' + b"7" * 5000),  # 4 beyond Python's digit limit
        b'{"item_id": "I9", "item_id": "I10"}',                        # 5 duplicate key
        b'{"attributes": ' + b"[" * 5000 + b"]" * 5000 + b"}",         # 6 recursion
        b'{"title": "\\ud800"}',                                       # 7 lone surrogate
        b'["not", "an", "object"]',                                    # 8
        good[4].replace(b'"title":', b'"title":\r'),                   # 9 CR is JSON whitespace: fine
        b'{"title": "caf\xe9"}',                                       # 10 Latin-1 byte
    ]
    (data_dir / schema.CATALOG_FILE).write_bytes(b"\n".join(bad) + b"\n")
    (data_dir / schema.JUDGMENTS_FILE).write_bytes(b"")
    error = _reject(data_dir, tmp_path / "docs")
    found = {f["expectation"]: f for f in error.failures}
    assert found["no_byte_order_mark"]["rows"] == [1]
    assert found["standard_json"]["rows"] == [2, 3, 4]
    assert found["unique_keys"]["rows"] == [5]
    assert found["nesting_depth"]["rows"] == [6]
    assert found["valid_unicode"]["rows"] == [7]
    assert found["valid_json_lines"]["rows"] == [8]
    assert found["valid_utf8"]["rows"] == [10]
    assert found["not_empty"]["file"] == "judgments.jsonl"
    message = str(error)
    assert "catalog.jsonl: not standard JSON at rows [2, 3, 4]" in message
    assert "judgments.jsonl: the file has no rows" in message
    assert error.docs_index is not None and "catalog_lines" in _docs_text(tmp_path / "docs")
    # the loaders apply the same rules: the first bad line, named
    with pytest.raises(DataFileError, match=r"^catalog.jsonl: line 1: .*byte order mark"):
        read_jsonl(data_dir / schema.CATALOG_FILE)


def test_class2_knowledge_json_is_required_and_checked_against_its_schema(make_data, tmp_path):
    knowledge = good_knowledge()
    knowledge["uses"].append({"use": "hiking", "product_types": ["boot"]})   # unknown product type
    knowledge["product_types"]["shoe"]["synonyms"] = ["sneaker", 7]           # not a string
    data_dir = make_data(knowledge=knowledge)
    text = (data_dir / schema.KNOWLEDGE_FILE).read_text()
    error = _reject(data_dir, tmp_path / "docs")
    failure = _by_column(error)[("knowledge.json", "problem")]
    seven = next(i for i, line in enumerate(text.splitlines(), start=1) if line.strip() == "7")
    assert seven in failure["rows"]
    assert "$.product_types.shoe.synonyms[1]: 7 is not of type 'string'" in failure["message"]
    assert "knowledge.json is required" in failure["message"]
    # the loader (the teacher's, the backbone corpus's) says the same, never a KeyError
    with pytest.raises(DataFileError, match=rf"^knowledge.json: line {seven}: \$.product_types.shoe.synonyms\[1\]"):
        load_knowledge(data_dir)
    knowledge["product_types"]["shoe"]["synonyms"] = ["sneaker"]
    write_knowledge(data_dir, knowledge)
    with pytest.raises(DataFileError, match=r"\$.uses\[1\].product_types\[0\]: 'boot' is not a key of product_types"):
        load_knowledge(data_dir)
    (data_dir / schema.KNOWLEDGE_FILE).write_text('{"product_types": {}\n"x": 1}')
    with pytest.raises(DataFileError, match=r"^knowledge.json: line 2: "):
        load_knowledge(data_dir)
    (data_dir / schema.KNOWLEDGE_FILE).unlink()  # required: missing fails the gate, the loaders and the teacher
    error = _reject(data_dir, tmp_path / "docs2")
    assert _by_column(error)[("knowledge.json", "file_exists")]["message"].startswith("knowledge.json: file not found")
    from components.config import TeacherConfig
    from components.teacher.triplets import generate_triplets

    with pytest.raises(DataFileError, match=r"^knowledge.json: .*required"):
        generate_triplets(data_dir, TeacherConfig(), tmp_path / "triplets.jsonl")


def _pipeline_cfg(tmp_path: Path, run_conf: dict):
    """The config a DAG task builds from its run conf, with this test's MLflow store and baseline."""
    overrides = run_conf_overrides(run_conf) or {}
    overrides.setdefault("validation", {})["drift_baseline"] = str(tmp_path / "state" / "last_good.json")
    overrides["tracking"] = {"mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "drift-test"}
    return load_config("configs/demo.yaml", overrides)


def _night(cfg, data_dir: Path, key: str):
    """A pipeline run up to validate_raw: its MLflow run with the config as params (as pull_data logs them)."""
    import mlflow

    from components import tracking
    from components.artifacts import DataSnapshot

    run_id = tracking.start_pipeline_run(cfg, key)
    with tracking.resume(cfg, run_id):
        mlflow.log_params(cfg.flat())
    return DataSnapshot(run_key=key, mlflow_run_id=run_id, data_uri=str(data_dir), full_data_uri=str(data_dir),
                        dvc_rev="test", data_md5=f"{key}-md5", git_commit="c")


def test_class3_drift_against_the_last_good_snapshot_fails_reports_and_can_be_allowed(make_data, tmp_path,
                                                                                      monkeypatch):
    import mlflow

    from components.validation.step import run_validate_raw

    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    plain = _pipeline_cfg(tmp_path, {})
    baseline = Path(plain.validation.drift_baseline)
    catalog = good_catalog() + [{**good_catalog()[0], "item_id": f"X{i}", "title": f"blue hat {i}"}
                                for i in range(15)]
    queries = good_queries() + [{"query_id": f"T{i}", "text": f"blue hat {i}", "category": "plain",
                                 "split": "train"} for i in range(6)]
    first = make_data(catalog=catalog, queries=queries, name="night1")
    night1 = _night(plain, first, "night-1")
    run_validate_raw(plain, night1)  # the first snapshot: nothing to compare with; it becomes the baseline
    assert load_baseline(baseline)["snapshot"]["run_key"] == "night-1"
    assert mlflow.MlflowClient().get_run(night1.mlflow_run_id).data.tags["drift_baseline"].startswith("none")

    # the next night lost 75% of the catalog, its 'negative' queries and half the train queries
    changed = [{**c, "title": c["title"] + " renamed"} for c in catalog[:5]]
    second = make_data(catalog=changed, queries=[q for q in queries if q["category"] != "negative"][:6],
                       judgments=[j for j in good_judgments() if j["query_id"] != "Q3"], name="night2")
    docs = tmp_path / "docs2"
    error = _reject(second, docs, plain.validation, baseline)
    bounds = {f["expectation"] for f in error.failures}
    assert {"drift_rows", "drift_category_vanished", "drift_split_mix", "drift_changed_titles"} <= bounds
    rows = next(f for f in error.failures if f["expectation"] == "drift_rows")
    assert rows["message"].startswith("catalog.jsonl: drift beyond the 'rows' bound: catalog.jsonl rows: "
                                      "last good 20, now 5, change -0.7500")
    assert "last good snapshot night-1-md5 (run night-1)" in rows["message"]
    assert '{"allow_drift": ["rows"]}' in rows["message"]
    text = _docs_text(docs)
    assert "catalog.jsonl rows: last good 20, now 5" in text and "beyond_rows" in text  # both figures
    assert error.summary["drift"]["exceeded"] == ["category_vanished", "changed_titles", "rows", "split_mix"]
    # per bound: allowing only rows still fails on the others
    only_rows = _pipeline_cfg(tmp_path, {"allow_drift": ["rows"]})
    error = _reject(second, tmp_path / "docs3", only_rows.validation, baseline)
    assert "drift_rows" not in {f["expectation"] for f in error.failures} and error.failures
    assert load_baseline(baseline)["snapshot"]["run_key"] == "night-1"  # a failing run never writes it

    # the run conf's override, as the DAG and `lrem --allow-drift` pass it, lets the intended change
    # pass, recorded in the run's lineage; the snapshot becomes the new baseline
    allowed = _pipeline_cfg(tmp_path, {"allow_drift": True})
    night2 = _night(allowed, second, "night-2")
    run_validate_raw(allowed, night2)
    run = mlflow.MlflowClient().get_run(night2.mlflow_run_id).data
    assert run.params["validation.allow_drift"] == "['all']"
    assert run.tags["drift_allowed"] == "all" and run.tags["validate_raw"] == "passed"
    assert run.tags["drift_exceeded"] == "category_vanished,changed_titles,rows,split_mix"
    assert run.tags["drift_baseline"] == "night-1-md5 (run night-1)"
    assert load_baseline(baseline)["snapshot"]["run_key"] == "night-2"
    from components.paths import run_dir

    assert "exceeded but allowed by the run conf" in _docs_text(run_dir("night-2") / "data_docs_raw")


def test_class4_same_query_text_under_two_ids_across_splits_is_leakage(make_data, rows, tmp_path):
    queries = rows["queries"] + [
        {"query_id": "Q5", "text": "  RED shoes!!", "category": "plain", "split": "eval"},   # line 5 = Q1
        {"query_id": "Q6", "text": "ｗｈａｔ shoe, for running?", "category": "qa", "split": "eval"},  # 6 = Q2 (NFKC)
        {"query_id": "Q7", "text": "shoes not blue", "category": "negative", "split": "train"},  # same split: fine
    ]
    judgments = rows["judgments"] + [{"query_id": q, "item_id": "I1"} for q in ("Q5", "Q6", "Q7")]
    error = _reject(make_data(queries=queries, judgments=judgments), tmp_path / "docs")
    failure = _by_column(error)[("queries.jsonl", "splits_of_normalized_text")]
    assert failure["rows"] == [1, 2, 5, 6]
    assert "no query text is in both train and eval under two ids" in failure["message"]
    assert len(error.failures) == 1, str(error)


def test_class5_ids_and_text_that_look_valid_but_are_not(make_data, rows, tmp_path):
    catalog, queries, judgments = rows["catalog"], rows["queries"], rows["judgments"]
    catalog += [
        {**catalog[0], "item_id": "I1 "},                                 # 6: collides with I1 once trimmed
        {**catalog[0], "item_id": "I7\u200b"},                            # 7: zero-width space
        {**catalog[0], "item_id": "I8", "title": "\u200b\u00ad \u2060"},  # 8: blank once invisibles go
        {**catalog[0], "item_id": "I9", "title": "red \x1b[31mshoe"},     # 9: escape sequence
        {**catalog[0], "item_id": "I10", "title": "cafÃ© shoe"},          # 10: mojibake
        {**catalog[0], "item_id": "I11", "title": "shoe \ufffd"},         # 11: lost in decoding
    ]
    queries[2]["text"] = "shoes\x07 not blue"                             # queries line 3
    judgments += [{"query_id": "Q1", "item_id": "I1", "relevance": 3},    # 6: Q1/I1 judged again
                  {"query_id": "Q2", "item_id": "I4", "relevance": 5}]    # 7: beyond the scale 1..3
    error = _reject(make_data(catalog=catalog, queries=queries, judgments=judgments), tmp_path / "docs")
    found = _by_column(error)
    assert found[("catalog.jsonl", "issue_of_item_id")]["rows"] == [6, 7]
    assert found[("catalog.jsonl", "item_id_collision")]["rows"] == [1, 6]
    title = found[("catalog.jsonl", "issue_of_title")]
    assert title["rows"] == [8, 9, 10, 11]
    assert set(title["sample_values"]) == {
        "blank after removing invisible and control characters", "control character U+001B",
        "mojibake 'Ã©' (UTF-8 read as Latin-1/cp1252; meant 'é')",
        "replacement character U+FFFD (text lost in a failed decoding)"}
    assert "\x1b" not in str(error)  # the escape never reaches a terminal through the report
    assert found[("queries.jsonl", "issue_of_text")]["rows"] == [3]
    pair = found[("judgments.jsonl", "pair_issue")]
    assert pair["rows"] == [1, 6] and pair["sample_values"] == ["judged 2 times with grades [1, 3]"]
    scale = found[("judgments.jsonl", "relevance")]
    assert scale["rows"] == [7] and "declared scale 1..3" in scale["message"]
    bounds = RawBounds(max_relevance=5)  # the scale is the config's
    error = _reject(make_data(catalog=catalog, queries=queries, judgments=judgments), tmp_path / "docs2", bounds)
    assert ("judgments.jsonl", "relevance") not in _by_column(error)


def test_class6_what_the_gate_accepts_every_loader_and_the_teacher_load(make_data, rows, tmp_path):
    """Accepted fixtures (the good world; one with every optional column, nulls and odd but
    valid text) go through every later loader and the teacher without error."""
    from components.config import TeacherConfig
    from components.teacher.triplets import generate_triplets
    from components.training.pretrain import render_world_corpus

    catalog = rows["catalog"]
    catalog[0].update(text="body\twith\nlayout", brand=None, price=None)   # optional column, nulls
    catalog[1].update(title="Ñandú café \U0001d518 shoe", attributes={"size": 42, "ok": True})
    for row in catalog[2:]:
        row.pop("attributes")
    judgments = [{**j, "relevance": 1 + i % 3} for i, j in enumerate(rows["judgments"])]
    accepted = [make_data(), make_data(catalog=catalog, judgments=judgments, name="odd")]
    for data_dir in accepted:
        validate_raw(data_dir, tmp_path / f"docs-{data_dir.name}")
        world = load_world(data_dir)
        assert world.relevant() and world.graded() and len(world.split("eval")) == 1
        small = load_world(data_dir, max_items=2, max_queries=2)  # pull_data's subset, written back
        sub = tmp_path / f"subset-{data_dir.name}"
        sub.mkdir()
        for frame, name in ((small.catalog, schema.CATALOG_FILE), (small.queries, schema.QUERIES_FILE),
                            (small.judgments, schema.JUDGMENTS_FILE)):
            write_jsonl(sub / name, frame.to_dict(orient="records"))
        read_jsonl(sub / schema.CATALOG_FILE)  # NaN of a partly present column is written as null
        knowledge = load_knowledge(data_dir)
        render_world_corpus(world.catalog.to_dict(orient="records"), world.split("train")["text"].tolist(),
                            knowledge)  # a null brand among others: pandas made it NaN, which crashed here
        stats = generate_triplets(data_dir, TeacherConfig(), tmp_path / f"triplets-{data_dir.name}.jsonl")
        assert stats["n_train_queries"] == 3


def test_class7_a_link_outside_the_data_folder_is_named_not_read(make_data, tmp_path):
    secret = tmp_path / "elsewhere" / "secret.jsonl"
    secret.parent.mkdir()
    secret.write_text('{"item_id": "TOP-SECRET-VALUE", "title": "\\u0000"}\n')
    data_dir = make_data()
    (data_dir / schema.CATALOG_FILE).unlink()
    os.symlink(secret, data_dir / schema.CATALOG_FILE)
    docs = tmp_path / "docs"
    error = _reject(data_dir, docs)
    failure = _by_column(error)[("catalog.jsonl", "inside_data_folder")]
    assert failure["message"].startswith("catalog.jsonl: resolves outside the data folder")
    assert "TOP-SECRET" not in str(error) and "TOP-SECRET" not in _docs_text(docs)
    assert str(secret) not in str(error)
    # DVC's own cache is where `dvc checkout` links point: accepted
    repo = tmp_path / "repo"
    cache = repo / ".dvc" / "cache" / "files" / "md5" / "ab"
    cache.mkdir(parents=True)
    linked = make_data(name="repo/data")
    target = cache / "cdef"
    target.write_bytes((linked / schema.CATALOG_FILE).read_bytes())
    (linked / schema.CATALOG_FILE).unlink()
    os.symlink(target, linked / schema.CATALOG_FILE)
    assert validate_raw(linked, tmp_path / "docs-dvc")["success"]
