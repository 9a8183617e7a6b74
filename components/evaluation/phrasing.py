"""Held-out phrasing, reported apart: HitRate@K per phrasing group, with paired CIs.

The varied-phrasing world (components/data/phrasing.py) records on every query its ``pattern``,
``intent_position``, ``wording``, ``typo`` and ``heldout_phrasing``. This module groups the eval
queries by those fields (in-pattern vs held-out phrasing, per category, by the intent's
position, by pattern, reworded intents) and compares two retrievers on each group with a paired
bootstrap over queries and, where a group has intents (the hard categories), over intents too
(every query of a drawn intent comes along: the CI of a benchmark whose eval intents are a
sample). Used by the nightly evaluation (challenger minus its direct embedder) and on the JSON
of ``lrem experiment`` (every row, LREM minus the best direct embedder):

    python -m components.evaluation.phrasing RESULTS.json [--data DIR] [--out STEM]
    python -m components.evaluation.phrasing --lexical --data DIR   # no model: BM25 +/- teacher keywords
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from components.config import CATEGORIES
from components.evaluation.bootstrap import paired_bootstrap

HARD = ("qa", "alternative", "knowledge")
WORDS_AFTER = ("first", "middle")  # the intent has other words after it
INTENT_LAST = ("last", "only")
MAX_GAP = 0.05  # targets: held-out vs in-pattern, words after vs intent last
PAPER_TARGET_RELATIVE = 0.0575
PHRASING_FIELDS = ("pattern", "intent_position", "wording", "heldout_phrasing")


def has_phrasing(queries: Sequence[Mapping]) -> bool:
    """Whether every query records its phrasing (a value, not a missing one: NaN from a DataFrame)."""
    def known(v) -> bool:
        return v is not None and not (isinstance(v, float) and math.isnan(v))

    return bool(queries) and all(all(known(q.get(f)) for f in PHRASING_FIELDS) for q in queries)


def phrasing_groups(queries: Sequence[Mapping]) -> dict[str, list[str]]:
    """Named sets of eval query ids, in report order."""
    qs = [q for q in queries if q.get("split", "eval") == "eval"]
    out: dict[str, list[str]] = {}

    def add(name: str, members) -> None:
        ids = [q["query_id"] for q in members]
        if ids:
            out[name] = ids

    scopes = [("all", CATEGORIES), ("hard", HARD)] + [(c, (c,)) for c in CATEGORIES]
    phrased = has_phrasing(qs)
    for scope, cats in scopes:
        members = [q for q in qs if q["category"] in cats]
        add(scope, members)
        if phrased:
            add(f"{scope} | in-pattern", [q for q in members if not q["heldout_phrasing"]])
            add(f"{scope} | held-out", [q for q in members if q["heldout_phrasing"]])
    if not phrased:  # a world without phrasing fields (fixed templates, imported data): categories only
        return out
    hard = [q for q in qs if q["category"] in HARD]
    for label, view in (("", hard), (" held-out", [q for q in hard if q["heldout_phrasing"]])):
        add(f"hard{label} | intent last", [q for q in view if q["intent_position"] in INTENT_LAST])
        add(f"hard{label} | words after intent", [q for q in view if q["intent_position"] in WORDS_AFTER])
    for pos in ("only", "last", "middle", "first"):
        add(f"hard | position {pos}", [q for q in hard if q["intent_position"] == pos])
    reworded = [q for q in hard if q["wording"] == "reworded"]
    add("hard | verbatim intent", [q for q in hard if q["wording"] == "verbatim"])
    add("hard | reworded intent", reworded)
    add("hard | reworded, held-out wording", [q for q in reworded if q["heldout_phrasing"]])
    add("hard | typo", [q for q in hard if q.get("typo")])
    for pattern in sorted({q["pattern"] for q in qs}):
        add(f"hard | pattern {pattern}", [q for q in hard if q["pattern"] == pattern])
    return out


def paired_cluster_bootstrap(a: Sequence[float], b: Sequence[float], clusters: Sequence[str],
                             n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Mean of a - b with a percentile CI, resampling whole clusters (intents) with replacement."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    names = sorted(set(clusters))
    index = {n: i for i, n in enumerate(names)}
    cid = np.array([index[c] for c in clusters])
    diff_sum = np.bincount(cid, weights=a - b, minlength=len(names))
    count = np.bincount(cid, minlength=len(names)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(n_resamples, len(names)))
    diffs = diff_sum[draws].sum(axis=1) / count[draws].sum(axis=1)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"n_intents": len(names), "ci_low": float(lo), "ci_high": float(hi)}


def compare_on_groups(hits: Mapping[str, Mapping[str, float]], groups: Mapping[str, Sequence[str]],
                      a: str, b: str, intents: Mapping[str, str] | None = None, n_resamples: int = 2000,
                      seed: int = 0) -> dict[str, dict]:
    """Per group: both models' HitRate and a minus b with a query CI (and an intent CI when the
    group's queries all carry an intent and there are at least two)."""
    out = {}
    for name, ids in groups.items():
        ids = [q for q in ids if q in hits[a] and q in hits[b]]
        if not ids:
            continue
        xa, xb = [hits[a][q] for q in ids], [hits[b][q] for q in ids]
        row = paired_bootstrap(xa, xb, n_resamples, seed)
        clusters = [intents.get(q) for q in ids] if intents else []
        if clusters and all(clusters) and len(set(clusters)) >= 2 and name.startswith(("hard", *HARD)):
            cl = paired_cluster_bootstrap(xa, xb, clusters, n_resamples, seed)
            row.update({"n_intents": cl["n_intents"], "ci_intents_low": cl["ci_low"], "ci_intents_high": cl["ci_high"]})
        out[name] = row
    return out


def phrasing_report(hits: Mapping[str, Mapping[str, float]], queries: Sequence[Mapping], lrem: str, direct: str,
                    minilm: str | None = None, labels: Mapping[str, str] | None = None,
                    n_resamples: int = 2000, seed: int = 0) -> dict:
    """Every model's HitRate per phrasing group; ``lrem`` minus ``direct`` (and minus ``minilm``)
    with paired CIs; the issue's targets, each with what was measured."""
    groups = phrasing_groups(queries)
    intents = {q["query_id"]: q.get("intent") for q in queries}
    table = {name: {m: float(np.mean([h[q] for q in ids if q in h])) if any(q in h for q in ids) else None
                    for m, h in hits.items()} for name, ids in groups.items()}
    vs_direct = compare_on_groups(hits, groups, lrem, direct, intents, n_resamples, seed)
    vs_minilm = compare_on_groups(hits, groups, lrem, minilm, intents, n_resamples, seed) if minilm in hits else {}
    report = {"lrem": lrem, "direct": direct, "minilm": minilm if minilm in hits else None,
              "labels": dict(labels or {}), "n_queries": {g: len(ids) for g, ids in groups.items()},
              "hit_rate": table, "lrem_minus_direct": vs_direct, "lrem_minus_minilm": vs_minilm}
    report["targets"] = targets(report)
    return report


def _gap(table: Mapping, model: str, a: str, b: str) -> dict | None:
    if a not in table or b not in table or table[a].get(model) is None or table[b].get(model) is None:
        return None
    gap = table[a][model] - table[b][model]
    return {"a": a, "b": b, "value_a": table[a][model], "value_b": table[b][model], "gap": gap,
            "met": gap >= -MAX_GAP}


def targets(report: Mapping) -> list[dict]:
    """The issue's targets on held-out phrasing, each with its figure and whether it is met."""
    table, lrem, vs_direct, vs_minilm = report["hit_rate"], report["lrem"], report["lrem_minus_direct"], \
        report["lrem_minus_minilm"]
    out = []
    g = _gap(table, lrem, "hard | held-out", "hard | in-pattern")
    if g:
        out.append({"target": "LREM hard held-out phrasing within 0.05 of in-pattern", **g})
    g = _gap(table, lrem, "hard | words after intent", "hard | intent last")
    if g:
        out.append({"target": "LREM hard, words after the intent within 0.05 of intent last", **g})
    g = _gap(table, lrem, "hard held-out | words after intent", "hard held-out | intent last")
    if g:
        out.append({"target": "(held-out phrasing only) words after the intent within 0.05 of intent last", **g})
    for name in ("hard | reworded intent", "hard | reworded, held-out wording"):
        if name in vs_minilm:
            row = vs_minilm[name]
            out.append({"target": f"LREM at or above MiniLM zero-shot on {name}", "group": name, **_ci(row),
                        "met": row["diff"] >= 0})
    for name in ("plain | held-out", "negative | held-out", "plain", "negative"):
        if name in vs_direct:
            row = vs_direct[name]
            out.append({"target": f"LREM not below its direct embedder on {name} (CI includes or is above 0)",
                        "group": name, **_ci(row), "met": row["ci_high"] >= 0})
    for name in ("hard | held-out", "hard"):
        if name in vs_direct:
            row = vs_direct[name]
            met = row["relative"] >= PAPER_TARGET_RELATIVE and row["ci_low"] > 0 and row.get("ci_intents_low", 1) > 0
            out.append({"target": f"lead over the best direct embedder on {name} >= +5.75% with CI above 0",
                        "group": name, **_ci(row), "met": bool(met)})
    return out


def _ci(row: Mapping) -> dict:
    keep = ("n", "a", "b", "diff", "relative", "ci_low", "ci_high", "n_intents", "ci_intents_low", "ci_intents_high")
    return {k: row[k] for k in keep if k in row}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # group names hold "|": escaped in a table cell


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def render_markdown(report: Mapping, title: str = "HitRate by phrasing") -> str:
    """Groups x models, then LREM minus direct with CIs, then the targets."""
    labels = report.get("labels") or {}
    models = list(next(iter(report["hit_rate"].values())).keys()) if report["hit_rate"] else []
    lines = [f"### {title}", "",
             "Eval queries grouped by phrasing (held-out: a pattern or an intent wording no training query "
             "uses). HitRate@K; n = queries.", "",
             "| group | n | " + " | ".join(labels.get(m, m) for m in models) + " |",
             "|---|---:|" + "---:|" * len(models)]
    for name, row in report["hit_rate"].items():
        lines.append(f"| {_cell(name)} | {report['n_queries'][name]} | " + " | ".join(_fmt(row[m]) for m in models) + " |")
    lead, direct = labels.get(report["lrem"], report["lrem"]), labels.get(report["direct"], report["direct"])
    lines += ["", f"**{lead} minus {direct}** (paired bootstrap, 95% CI over queries; over intents for hard groups)", "",
              "| group | n | diff | relative | CI (queries) | CI (intents) |", "|---|---:|---:|---:|---|---|"]
    for name, row in report["lrem_minus_direct"].items():
        intents = (f"[{_fmt(row['ci_intents_low'], True)}, {_fmt(row['ci_intents_high'], True)}] ({row['n_intents']})"
                   if "ci_intents_low" in row else "-")
        rel = f"{100 * row['relative']:+.2f}%" if not math.isnan(row["relative"]) else "-"
        lines.append(f"| {_cell(name)} | {row['n']} | {_fmt(row['diff'], True)} | {rel} | "
                     f"[{_fmt(row['ci_low'], True)}, {_fmt(row['ci_high'], True)}] | {intents} |")
    if report.get("targets"):
        lines += ["", "**Targets**", "", "| target | measured | met |", "|---|---|---|"]
        for t in report["targets"]:
            if "gap" in t:
                measured = f"{_fmt(t['value_a'])} vs {_fmt(t['value_b'])} (gap {_fmt(t['gap'], True)})"
            else:
                measured = (f"{_fmt(t['a'])} vs {_fmt(t['b'])}: {_fmt(t['diff'], True)}"
                            + (f" ({100 * t['relative']:+.2f}%)" if not math.isnan(t.get("relative", float("nan"))) else "")
                            + f", CI [{_fmt(t['ci_low'], True)}, {_fmt(t['ci_high'], True)}]"
                            + (f", intents [{_fmt(t['ci_intents_low'], True)}, {_fmt(t['ci_intents_high'], True)}]"
                               if "ci_intents_low" in t else ""))
            lines.append(f"| {_cell(t['target'])} | {measured} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# In the nightly evaluation: the challenger against its same-backbone direct embedder

EVAL_FILE = "phrasing"  # <run>/evaluation/phrasing.json and .md


def write_eval_phrasing(out_dir: Path, ranked_by: Mapping[str, Mapping[str, Sequence[str]]], world, k: int) -> dict:
    """``phrasing.json`` / ``phrasing.md`` in the run's evaluation folder: HitRate@k of the
    challenger and the direct embedder per phrasing group (per category only, on data without
    phrasing fields), challenger minus direct with paired CIs, and the targets."""
    from components.evaluation.bootstrap import per_query_hit_rate

    relevant = world.relevant()
    hits = {m: per_query_hit_rate(ranked, relevant, k) for m, ranked in ranked_by.items()}
    eval_q = world.split("eval")
    queries = eval_q.astype(object).where(eval_q.notna(), None).to_dict("records")
    report = phrasing_report(hits, queries, "challenger", "direct",
                             labels={"challenger": "challenger (LREM)", "direct": "direct embedder (same backbone)"})
    report["k"] = k
    out_dir = Path(out_dir)
    (out_dir / f"{EVAL_FILE}.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out_dir / f"{EVAL_FILE}.md").write_text(render_markdown(report, f"HitRate@{k} by phrasing (eval queries)"),
                                             encoding="utf-8")
    return report


def lead_line(report: Mapping, group: str = "hard") -> str | None:
    """One line: the challenger's lead over its direct embedder on ``group``, with its CIs."""
    row = (report.get("lrem_minus_direct") or {}).get(group)
    if not row:
        return None
    rel = f"{100 * row['relative']:+.2f}%" if not math.isnan(row["relative"]) else "-"
    intents = (f"; intents resampled [{row['ci_intents_low']:+.4f}, {row['ci_intents_high']:+.4f}]"
               if "ci_intents_low" in row else "")
    return (f"{group}: {row['a']:.4f} vs {row['b']:.4f}, {row['diff']:+.4f} ({rel}), 95% CI "
            f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] over {row['n']} queries{intents}")


# ---------------------------------------------------------------------------------------
# On the JSON of `lrem experiment` (per-query HitRate of every row)


def _best_direct(hits: Mapping[str, Mapping[str, float]], queries: Sequence[Mapping], direct_ids: Sequence[str]) -> str:
    hard = [q["query_id"] for q in queries if q["category"] in HARD and q.get("split", "eval") == "eval"]
    present = [m for m in direct_ids if m in hits]
    return max(present, key=lambda m: np.mean([hits[m][q] for q in hard if q in hits[m]]))


def experiment_report(results: Mapping, queries: Sequence[Mapping], n_resamples: int = 2000, seed: int = 0) -> dict:
    """The phrasing report of an experiment's results (``per_query`` block): every row, LREM
    (CS+RL, else CS) minus the best same-backbone direct embedder (chosen on hard HitRate)."""
    from components.experiment.config import DIRECT_GROUP, LABELS

    block = results["per_query"]
    hits = block["hit_rate"]
    lrem = "lrem_rl" if "lrem_rl" in hits else "lrem_cs"
    direct = _best_direct(hits, queries, DIRECT_GROUP)
    report = phrasing_report(hits, queries, lrem, direct, "minilm_zeroshot", LABELS, n_resamples, seed)
    report["k"] = block.get("k")
    return report


def lexical_report(data_dir: Path, n_resamples: int = 1000) -> dict:
    """No model: BM25 over titles on the eval query, and on the query followed by the teacher's
    keywords for it (the paper's "query (keywords)"): what reading the intent right gives, per
    phrasing group (a ceiling that shows whether held-out phrasing is still answerable)."""
    from components.config import TeacherConfig
    from components.data.io import load_knowledge, load_world, read_jsonl
    from components.evaluation.bootstrap import per_query_hit_rate
    from components.teacher.triplets import LexicalRetriever, Teacher

    world = load_world(data_dir)
    retriever = LexicalRetriever(world.catalog["item_id"].tolist(), world.catalog["title"].tolist())
    teacher = Teacher(load_knowledge(data_dir), TeacherConfig())
    queries = [q for q in read_jsonl(Path(data_dir) / "queries.jsonl") if q["split"] == "eval"]
    ranked: dict[str, dict] = {"bm25": {}, "bm25_teacher_keywords": {}}
    for q in queries:
        ranked["bm25"][q["query_id"]] = retriever.search(q["text"], 100)
        cot, _ = teacher.cot(q["text"], q["category"])
        ranked["bm25_teacher_keywords"][q["query_id"]] = retriever.search(f"{q['text']} ({cot})", 100)
    hits = {m: per_query_hit_rate(r, world.relevant(), 100) for m, r in ranked.items()}
    report = phrasing_report(hits, queries, "bm25_teacher_keywords", "bm25", n_resamples=n_resamples,
                             labels={"bm25": "BM25 (query)", "bm25_teacher_keywords": "BM25 (query + teacher keywords)"})
    report["k"] = 100
    report["targets"] = []  # the targets are about models
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m components.evaluation.phrasing", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="?", help="the JSON an `lrem experiment` run wrote (with its per_query block)")
    p.add_argument("--data", help="the data folder the run scored (default: the demo world, generated into a temp dir)")
    p.add_argument("--lexical", action="store_true",
                   help="no model: BM25 vs BM25 with the teacher's keywords on --data, per phrasing group")
    p.add_argument("--out", help="output stem: writes STEM.json and STEM.md (default: next to RESULTS, *_phrasing)")
    args = p.parse_args(argv)
    from components.data.io import read_jsonl

    if args.lexical:
        if not args.data:
            p.error("--lexical needs --data")
        report = lexical_report(Path(args.data))
        text = render_markdown(report, "HitRate@100 by phrasing: BM25 with the teacher's keywords vs BM25 (no model)")
        if args.out:
            Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
            Path(args.out).with_suffix(".md").write_text(text)
        print(text)
        return 0
    if not args.results:
        p.error("give RESULTS (an experiment's JSON) or --lexical --data DIR")

    results = json.loads(Path(args.results).read_text(encoding="utf-8"))
    if args.data:
        data_dir = Path(args.data)
    else:
        import tempfile

        from components.config import WorldConfig
        from components.data.generate import generate_world

        data_dir = Path(tempfile.mkdtemp(prefix="lrem-phrasing-"))
        world = dict((results.get("config") or {}).get("world") or {})
        world.setdefault("phrasing", "fixed")  # results written before world.phrasing existed
        generate_world(WorldConfig(**world), data_dir)
    queries = [q for q in read_jsonl(data_dir / "queries.jsonl") if q["split"] == "eval"]
    if not has_phrasing(queries):
        raise SystemExit(f"{data_dir}: the eval queries carry no phrasing fields (world.phrasing 'fixed'?)")
    report = experiment_report(results, queries)
    stem = Path(args.out) if args.out else Path(args.results).with_name(Path(args.results).stem + "_phrasing")
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    k = report.get("k")
    stem.with_suffix(".md").write_text(render_markdown(report, f"HitRate@{k} by phrasing: {Path(args.results).name}"),
                                       encoding="utf-8")
    print(render_markdown(report, f"HitRate@{k} by phrasing"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
