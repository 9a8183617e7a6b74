"""Online A/B analysis of the event store: per arm and per category, tests, plots, report.

Metrics (split mode; a search is one ``search_events`` row):

- ``ctr``: share of searches with at least one click
- ``hit_rate_judged``: share of searches with at least one click on an item the data
  judges relevant to the query ("HitRate on judged clicks")
- ``purchase_rate``: share of searches with at least one purchase
- ``latency_p50_ms`` / ``latency_p95_ms``: server-side latency

Tests (all from scipy.stats):

- sample-ratio mismatch: Pearson chi-square goodness of fit (``scipy.stats.chisquare``)
  of the users seen per arm against the configured challenger share; flagged when
  p < ``online.srm_alpha`` (0.001), and a flagged experiment is not trusted.
- arm difference of ``hit_rate_judged`` and ``ctr``: Fisher's exact test on the 2x2 table
  (``scipy.stats.fisher_exact``), two-sided for "differs" and one-sided
  (challenger < champion) for "regresses", each at ``online.alpha``. Fisher's test is
  exact, so under no effect it rejects at most ``alpha`` of the time.
- interleaving: the challenger's share of decided (non-tied) queries against 0.5 with an
  exact binomial test (``scipy.stats.binomtest``), two-sided.

The tests treat searches as independent; searches of one user are correlated, so with
few users and many searches each the p-values are optimistic (a user-level or
cluster-robust test would be the next step).

The online verdict is a regression when the challenger's ``hit_rate_judged`` is
significantly lower (one-sided), or it significantly loses the interleaving, or the
split shows a sample-ratio mismatch (the comparison cannot be trusted).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from components.service.split import CHALLENGER, CHAMPION

OVERALL = "overall"


def _percentile(values, q: float) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.percentile(values, q)) if values else None


def per_search_outcomes(searches: pd.DataFrame, feedback: pd.DataFrame,
                        relevant: Mapping[str, set[str]]) -> pd.DataFrame:
    """One row per search with ``clicked``, ``judged_hit``, ``purchased`` (0/1).

    ``relevant`` maps a query text to its judged-relevant item ids.
    """
    out = searches.copy()
    clicks = feedback[feedback["event"] == "click"]
    buys = feedback[feedback["event"] == "purchase"]
    clicked_by = clicks.groupby("request_id")["item_id"].apply(set).to_dict()
    bought = set(buys["request_id"])
    out["clicked"] = [int(rid in clicked_by) for rid in out["request_id"]]
    out["judged_hit"] = [int(bool(clicked_by.get(rid, set()) & set(relevant.get(q, set()))))
                         for rid, q in zip(out["request_id"], out["query"])]
    out["purchased"] = [int(rid in bought) for rid in out["request_id"]]
    return out


def arm_table(outcomes: pd.DataFrame, categories: Mapping[str, str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{group (overall or category): {arm: metrics}} for split-mode searches."""
    df = outcomes.copy()
    df["category"] = [categories.get(q, "unknown") for q in df["query"]]
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for group, part in [(OVERALL, df), *sorted(df.groupby("category"), key=lambda g: g[0])]:
        table[group] = {}
        for arm, rows in part.groupby("arm"):
            table[group][arm] = {
                "searches": int(len(rows)),
                "users": int(rows["user_id"].nunique()),
                "ctr": float(rows["clicked"].mean()),
                "hit_rate_judged": float(rows["judged_hit"].mean()),
                "purchase_rate": float(rows["purchased"].mean()),
                "latency_p50_ms": _percentile(rows["latency_ms"], 50),
                "latency_p95_ms": _percentile(rows["latency_ms"], 95),
            }
    return table


def srm_check(n_champion: int, n_challenger: int, challenger_share: float, alpha: float = 0.001) -> dict[str, Any]:
    """Sample-ratio mismatch: chi-square goodness of fit of the counts per arm to the share."""
    from scipy.stats import chisquare

    total = n_champion + n_challenger
    if total == 0 or challenger_share in (0.0, 1.0):
        return {"p_value": None, "mismatch": False, "observed": [n_champion, n_challenger], "expected_share": challenger_share}
    expected = [total * (1 - challenger_share), total * challenger_share]
    p = float(chisquare([n_champion, n_challenger], f_exp=expected).pvalue)
    return {"p_value": p, "mismatch": p < alpha, "observed": [n_champion, n_challenger],
            "expected_share": challenger_share, "test": "scipy.stats.chisquare (Pearson goodness of fit)"}


def proportion_test(success_champ: int, n_champ: int, success_chal: int, n_chal: int,
                    alpha: float = 0.05) -> dict[str, Any]:
    """Fisher's exact test of challenger vs champion rates: two-sided and one-sided (regression)."""
    from scipy.stats import fisher_exact

    if n_champ == 0 or n_chal == 0:
        return {"champion": None, "challenger": None, "p_two_sided": None, "p_regression": None,
                "significant": False, "regression": False, "test": "scipy.stats.fisher_exact"}
    table = [[success_chal, n_chal - success_chal], [success_champ, n_champ - success_champ]]
    p_two = float(fisher_exact(table, alternative="two-sided").pvalue)
    p_less = float(fisher_exact(table, alternative="less").pvalue)  # challenger odds lower
    return {"champion": success_champ / n_champ, "challenger": success_chal / n_chal,
            "diff": success_chal / n_chal - success_champ / n_champ,
            "p_two_sided": p_two, "p_regression": p_less, "significant": p_two < alpha,
            "regression": p_less < alpha, "alpha": alpha, "test": "scipy.stats.fisher_exact"}


def interleaving_outcomes(searches: pd.DataFrame, feedback: pd.DataFrame) -> dict[str, Any]:
    """Team-draft credit per interleaved search; challenger preference and binomial test."""
    from scipy.stats import binomtest

    from components.service.interleave import credit

    inter = searches[searches["mode"] == "interleave"]
    clicks = feedback[feedback["event"] == "click"].groupby("request_id")["item_id"].apply(list).to_dict()
    wins = {CHAMPION: 0, CHALLENGER: 0, "tie": 0}
    for rid, items, teams in zip(inter["request_id"], inter["item_ids"], inter["teams"]):
        if rid in clicks and teams:
            wins[credit(clicks[rid], items, teams)] += 1
    decided = wins[CHAMPION] + wins[CHALLENGER]
    result: dict[str, Any] = {"queries": int(len(inter)), "with_clicks": int(sum(wins.values())), "wins": wins,
                              "preference": None, "p_value": None, "test": "scipy.stats.binomtest (two-sided, p=0.5)"}
    if decided:
        result["preference"] = wins[CHALLENGER] / decided
        result["p_value"] = float(binomtest(wins[CHALLENGER], decided, 0.5).pvalue)
    return result


def analyze(searches: pd.DataFrame, feedback: pd.DataFrame, relevant: Mapping[str, set[str]],
            categories: Mapping[str, str], challenger_share: float, alpha: float = 0.05,
            srm_alpha: float = 0.001) -> dict[str, Any]:
    """The whole online analysis of one experiment's events."""
    split = searches[searches["mode"] == "split"]
    outcomes = per_search_outcomes(split, feedback, relevant)
    table = arm_table(outcomes, categories) if len(outcomes) else {}
    users = split.groupby("arm")["user_id"].nunique().to_dict() if len(split) else {}
    srm = srm_check(int(users.get(CHAMPION, 0)), int(users.get(CHALLENGER, 0)), challenger_share, srm_alpha)

    def counts(metric: str, arm: str, rows: pd.DataFrame) -> tuple[int, int]:
        part = rows[rows["arm"] == arm]
        return int(part[metric].sum()), int(len(part))

    tests: dict[str, dict[str, Any]] = {}
    cats = [categories.get(q, "unknown") for q in outcomes["query"]] if len(outcomes) else []
    outcomes = outcomes.assign(category=cats)
    for group, rows in [(OVERALL, outcomes), *sorted(outcomes.groupby("category"), key=lambda g: g[0])]:
        for metric in ("hit_rate_judged", "ctr"):
            col = "judged_hit" if metric == "hit_rate_judged" else "clicked"
            sc, nc = counts(col, CHAMPION, rows)
            sx, nx = counts(col, CHALLENGER, rows)
            tests[f"{group}/{metric}"] = proportion_test(sc, nc, sx, nx, alpha)
    inter = interleaving_outcomes(searches, feedback)
    inter_by_category = {}
    if len(searches):
        cat_of = searches["query"].map(lambda q: categories.get(q, "unknown"))
        for cat in sorted(set(cat_of[searches["mode"] == "interleave"])):
            inter_by_category[cat] = interleaving_outcomes(searches[cat_of == cat], feedback)
    inter_loss = bool(inter["p_value"] is not None and inter["p_value"] < alpha and inter["preference"] < 0.5)
    primary = tests.get(f"{OVERALL}/hit_rate_judged", {})
    reasons = []
    if primary.get("regression"):
        reasons.append(f"hit_rate_judged {primary['challenger']:.4f} vs champion {primary['champion']:.4f} "
                       f"(Fisher one-sided p={primary['p_regression']:.4g} < {alpha})")
    if inter_loss:
        reasons.append(f"interleaving preference {inter['preference']:.3f} (binomial p={inter['p_value']:.4g})")
    if srm["mismatch"]:
        reasons.append(f"sample-ratio mismatch (users {srm['observed']}, p={srm['p_value']:.3g})")
    regression = bool(reasons)
    if not reasons:
        bits = []
        if primary.get("challenger") is not None:
            bits.append(f"hit_rate_judged {primary['challenger']:.4f} vs champion {primary['champion']:.4f} "
                        f"(Fisher one-sided p={primary['p_regression']:.4g})")
        if inter["preference"] is not None:
            bits.append(f"interleaving preference {inter['preference']:.3f} (p={inter['p_value']:.4g})")
        reason = "no significant online regression: " + ("; ".join(bits) if bits else "no online data")
    else:
        reason = "online regression: " + "; ".join(reasons)
    return {"table": table, "tests": tests, "srm": srm, "interleaving": inter,
            "interleaving_by_category": inter_by_category, "regression": regression,
            "reason": reason, "alpha": alpha, "searches": int(len(searches)), "feedback": int(len(feedback))}


def flat_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metric dict: online.<group>.<arm>.<metric>, tests' p-values, interleaving."""
    out: dict[str, float] = {}
    for group, arms in result["table"].items():
        for arm, metrics in arms.items():
            for key, value in metrics.items():
                if value is not None:
                    out[f"online.{group}.{arm}.{key}"] = float(value)
    for key, test in result["tests"].items():
        if test.get("p_two_sided") is not None:
            out[f"online.test.{key.replace('/', '.')}.p_two_sided"] = test["p_two_sided"]
            out[f"online.test.{key.replace('/', '.')}.p_regression"] = test["p_regression"]
    if result["srm"].get("p_value") is not None:
        out["online.srm.p_value"] = result["srm"]["p_value"]
    inter = result["interleaving"]
    if inter.get("preference") is not None:
        out["online.interleaving.preference"] = inter["preference"]
        out["online.interleaving.p_value"] = inter["p_value"]
    for cat, part in result.get("interleaving_by_category", {}).items():
        if part.get("preference") is not None:
            out[f"online.interleaving.{cat}.preference"] = part["preference"]
    return out


def write_report(out_dir: Path, result: Mapping[str, Any], title: str = "Online A/B test") -> dict[str, Path]:
    """PNG plots (rates and latency per arm and category) and an HTML report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = result["table"]
    groups = list(table)
    paths: dict[str, Path] = {}
    for metric, fname in (("hit_rate_judged", "online_hit_rate_judged.png"), ("ctr", "online_ctr.png"),
                          ("latency_p95_ms", "online_latency_p95.png")):
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups)), 3.6))
        x = np.arange(len(groups))
        for i, arm in enumerate((CHAMPION, CHALLENGER)):
            vals = [(table[g].get(arm, {}) or {}).get(metric) or 0.0 for g in groups]
            ax.bar(x + (i - 0.5) * 0.38, vals, 0.38, label=arm)
        ax.set_xticks(x, groups, rotation=20)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per arm")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=110)
        plt.close(fig)
        paths[metric] = out_dir / fname
    inter = result["interleaving"]
    if inter.get("with_clicks"):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        wins = inter["wins"]
        ax.bar(list(wins), [wins[k] for k in wins], color=["C0", "C1", "C7"])
        ax.set_title(f"team-draft interleaving wins (preference {inter['preference'] or 0:.3f})")
        fig.tight_layout()
        fig.savefig(out_dir / "online_interleaving.png", dpi=110)
        plt.close(fig)
        paths["interleaving"] = out_dir / "online_interleaving.png"

    def fmt(v):
        return "" if v is None else (f"{v:.4f}" if isinstance(v, float) else html.escape(str(v)))

    rows = []
    for group, arms in table.items():
        for arm, m in arms.items():
            rows.append("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in (group, arm, m["searches"], m["users"], m["ctr"],
                        m["hit_rate_judged"], m["purchase_rate"], m["latency_p50_ms"], m["latency_p95_ms"])) + "</tr>")
    test_rows = ["<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in (k, t.get("champion"), t.get("challenger"),
                 t.get("p_two_sided"), t.get("p_regression"), t.get("regression"))) + "</tr>"
                 for k, t in result["tests"].items()]
    imgs = "".join(f'<img src="{p.name}" style="max-width:48%">' for p in paths.values())
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p><b>{'REGRESSION' if result['regression'] else 'OK'}</b>: {html.escape(result['reason'])}</p>
<p>{result['searches']} searches, {result['feedback']} feedback events. Sample-ratio check:
{html.escape(json.dumps(result['srm']))}</p>
<h2>Per arm and category</h2><table><tr><th>group</th><th>arm</th><th>searches</th><th>users</th><th>CTR</th>
<th>HitRate (judged clicks)</th><th>purchase rate</th><th>p50 ms</th><th>p95 ms</th></tr>{''.join(rows)}</table>
<h2>Tests</h2><p>Fisher's exact test (scipy.stats.fisher_exact), alpha {result['alpha']}; interleaving: exact binomial test
(scipy.stats.binomtest).</p><table><tr><th>group/metric</th><th>champion</th><th>challenger</th><th>p two-sided</th>
<th>p regression</th><th>regression</th></tr>{''.join(test_rows)}</table>
<h2>Interleaving</h2><p>{html.escape(json.dumps(inter))}</p>
<table><tr><th>category</th><th>interleaved queries</th><th>with clicks</th><th>wins champion / challenger / tie</th>
<th>challenger preference</th><th>p (binomial)</th></tr>{''.join(
    f"<tr><td>{html.escape(c)}</td><td>{v['queries']}</td><td>{v['with_clicks']}</td>"
    f"<td>{v['wins']['champion']} / {v['wins']['challenger']} / {v['wins']['tie']}</td><td>{fmt(v['preference'])}</td>"
    f"<td>{fmt(v['p_value'])}</td></tr>" for c, v in result.get('interleaving_by_category', {}).items())}</table>
<h2>Plots</h2>{imgs}</body></html>"""
    (out_dir / "online_report.html").write_text(doc, encoding="utf-8")
    (out_dir / "online_result.json").write_text(json.dumps(result, indent=2, default=str))
    paths["html"] = out_dir / "online_report.html"
    return paths


def log_to_mlflow(cfg, result: Mapping[str, Any], out_dir: Path, run_id: str | None = None) -> str:
    """Metrics, tags and the report folder into ``run_id`` (or a new run ``online-ab``); returns the run id."""
    import time

    import mlflow

    from components import tracking

    exp_id = tracking.configure(cfg)
    ctx = (mlflow.start_run(run_id=run_id) if run_id else
           mlflow.start_run(experiment_id=exp_id, run_name=f"online-ab-{time.strftime('%Y%m%dT%H%M%S')}"))
    with ctx as run:
        mlflow.log_metrics(flat_metrics(result))
        mlflow.set_tags({"online.regression": str(result["regression"]), "online.reason": result["reason"][:5000]})
        mlflow.log_artifacts(str(out_dir), "online")
        return run.info.run_id
