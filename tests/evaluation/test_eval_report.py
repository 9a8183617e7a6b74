"""The evaluation report: plots, HTML, console table."""

from __future__ import annotations

from components.evaluation.metrics import retrieval_metrics
from components.evaluation.report import write_metrics_table, write_report

RANKED = {"q1": ["a", "b", "c"], "q2": ["x", "y"], "q3": ["p"], "q4": ["k", "l"]}
RELEVANT = {"q1": {"a", "c"}, "q2": {"y"}, "q3": {"r"}, "q4": {"l"}}
CATEGORIES = {"q1": "qa", "q2": "alternative", "q3": "plain", "q4": "negative"}


def _results() -> dict:
    chal = retrieval_metrics(RANKED, RELEVANT, CATEGORIES, hit_ks=(1, 2, 3), precision_k=2)
    worse = {q: list(reversed(r)) for q, r in RANKED.items()}
    champ = retrieval_metrics(worse, RELEVANT, CATEGORIES, hit_ks=(1, 2, 3), precision_k=2)
    return {"challenger v3": chal, "champion v2": champ}


def test_report_files_and_html(tmp_path):
    results = _results()
    samples = [{"query": "cheap <b>shoes</b>", "category": "qa", "cot": "runner budget",
                "top_items": ["Trail shoe", "Sock", "Lace"], "hits": [True, False, False]},
               {"query": "tv", "category": "plain", "cot": "screen", "top_items": ["Radio"], "hits": [False]}]
    meta = {"model": "lrem-retriever v3", "dvc_rev": "abc123"}
    paths = write_report(tmp_path / "eval", results, "Offline evaluation", samples=samples, meta=meta)

    assert set(paths) == {"html", "hit_rate_by_category", "hit_rate_vs_k", "precision_by_category"}
    for key, path in paths.items():
        assert path.exists() and path.parent == tmp_path / "eval"
        if key != "html":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    for label in results:
        assert label in page
    for category in ["overall", "qa", "alternative", "plain", "negative"]:
        assert category in page
    assert "src='hit_rate_by_category.png'" in page  # relative, so the folder can move
    assert "abc123" in page and "lrem-retriever v3" in page
    assert "&lt;b&gt;shoes&lt;/b&gt;" in page and "<b>shoes</b>" not in page
    assert "Trail shoe" in page and "runner budget" in page
    assert "Δ challenger − champion" in page


def test_single_model_report(tmp_path):
    results = {"challenger v1": _results()["challenger v3"]}
    paths = write_report(tmp_path, results, "First run")
    assert paths["html"].exists()
    assert "Δ" not in paths["html"].read_text()


def test_metrics_table():
    results = _results()
    table = write_metrics_table(results)
    lines = table.splitlines()
    assert lines[0] == "| category | metric | challenger v3 | champion v2 | Δ (challenger − champion) |"
    chal = results["challenger v3"]["overall"]["hit_rate@1"]
    champ = results["champion v2"]["overall"]["hit_rate@1"]
    row = next(l for l in lines if l.startswith("| overall | hit_rate@1 |"))
    assert f"{chal:.4f}" in row and f"{chal - champ:+.4f}" in row
    assert any(l.startswith("| qa | precision@2 |") for l in lines)
    assert "| overall | n_queries | 4 | 4 | +0 |" in lines
    single = write_metrics_table({"m": results["champion v2"]})
    assert "Δ" not in single
