"""Online A/B analysis of the event store: per arm and per category, tests, plots, report.

Metrics (split mode; a search is one ``search_events`` row):

- ``ctr``: share of searches with at least one click
- ``hit_rate_judged``: share of searches with at least one click on an item the data
  judges relevant to the query ("judged-click HitRate@k", k = the results shown,
  ``online.k``). This is the online primary metric. Its offline counterpart is the same
  quantity expected under the click model from a model's ranking
  (:func:`expected_judged_hit`): the gate reports both, so online and offline can be
  checked against each other (docs/gate.md, "The online metric").
- ``purchase_rate``: share of searches with at least one purchase
- ``latency_p50_ms`` / ``latency_p95_ms``: server-side latency

Tests, all at the user level (a user's searches are correlated: the unit of
randomisation is the user, so the unit of analysis is the user too):

- arm difference of ``hit_rate_judged`` and ``ctr``: the difference of two ratio metrics
  (sum over a user's searches / number of searches) with the delta-method variance over
  users (Deng, Knoblich and Lu, KDD 2018), one-sided for "regresses" (H0: challenger -
  champion >= -tolerance) and two-sided for "differs" (:func:`user_level_test`).
- interleaving: the challenger's share of decided (non-tied) queries, a ratio over users
  with the delta-method variance, one-sided against 0.5; the exact binomial test
  (``scipy.stats.binomtest``, searches as independent) is reported beside it. It enters
  the gate only when the decided queries reach the power the config asks for
  (:func:`interleaving_queries_needed`); below that it is reported, not a veto.
- sample-ratio mismatch: Pearson chi-square goodness of fit (1 df, :func:`srm_check`)
  of the users seen per arm against the configured challenger share; flagged when
  p < ``online.srm_alpha`` (0.001), and a flagged experiment is not trusted.

The online verdict of :func:`analyze` (``regression``) is the online family alone under
Holm at ``alpha`` (:func:`components.evaluation.gate.family_decision`); the gate puts the
same online rows in one family with the offline tests.
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
    """Sample-ratio mismatch: Pearson chi-square goodness of fit (1 degree of freedom) of the counts
    per arm to the share (what ``scipy.stats.chisquare`` computes, as a ufunc: the calibration runs it
    per simulated night)."""
    from scipy.special import chdtrc

    total = n_champion + n_challenger
    if total == 0 or challenger_share in (0.0, 1.0):
        return {"p_value": None, "mismatch": False, "observed": [n_champion, n_challenger], "expected_share": challenger_share}
    expected = [total * (1 - challenger_share), total * challenger_share]
    stat = sum((o - e) ** 2 / e for o, e in zip((n_champion, n_challenger), expected))
    p = float(chdtrc(1, stat))
    return {"p_value": p, "mismatch": p < alpha, "observed": [n_champion, n_challenger],
            "expected_share": challenger_share, "test": "Pearson chi-square goodness of fit (1 df)"}


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


# ------------------------------------------------------------------ user-level tests
def ratio_and_variance(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """sum(num) / sum(den) over users and its delta-method variance (users i.i.d., Deng et al. 2018)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    n = num.size
    mean_den = den.mean()
    ratio = float(num.sum() / den.sum())
    if n < 2:
        return ratio, float("nan")
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio ** 2 * cov[1, 1]) / (n * mean_den ** 2)
    return ratio, float(max(var, 0.0))


def user_level_test(num_champion, den_champion, num_challenger, den_challenger, tolerance: float = 0.0,
                    alpha: float = 0.05) -> dict[str, Any]:
    """Challenger minus champion of a per-search rate, users as the unit: one row per user of
    (searches with the outcome, searches). One-sided p of H0: effect >= -tolerance; two-sided p
    and (1 - alpha) CI. Arms with fewer than 2 users give no test (``p_value`` None)."""
    from scipy.special import ndtr, ndtri

    out: dict[str, Any] = {"users": [int(np.size(den_champion)), int(np.size(den_challenger))],
                           "searches": [int(np.sum(den_champion)), int(np.sum(den_challenger))],
                           "champion": None, "challenger": None, "effect": None, "se": None, "ci_low": None,
                           "ci_high": None, "p_value": None, "p_two_sided": None, "regression": False,
                           "significant": False, "tolerance": tolerance, "alpha": alpha,
                           "test": "user-level delta method (ratio of sums over users), one-sided z"}
    if min(np.size(den_champion), np.size(den_challenger)) < 2:
        return out
    r0, v0 = ratio_and_variance(num_champion, den_champion)
    r1, v1 = ratio_and_variance(num_challenger, den_challenger)
    effect, se = r1 - r0, float(np.sqrt(v0 + v1))
    out.update(champion=r0, challenger=r1, effect=effect, diff=effect, se=se)
    if se > 0:
        z = ndtri(1 - alpha / 2)
        p = float(ndtr((effect + tolerance) / se))
        p_two = float(2 * ndtr(-abs(effect) / se))
        out.update(ci_low=effect - z * se, ci_high=effect + z * se, p_value=p, p_two_sided=p_two)
    else:  # every user had the same rate in both arms
        p = 0.0 if effect < -tolerance else 1.0
        out.update(ci_low=effect, ci_high=effect, p_value=p, p_two_sided=1.0 if effect == 0 else 0.0)
    out["p_regression"] = out["p_value"]
    out["regression"] = bool(out["p_value"] < alpha)
    out["significant"] = bool(out["p_two_sided"] < alpha)
    return out


def preference_test(wins_challenger, decided) -> dict[str, Any]:
    """The challenger's share of decided interleaved queries, users as the unit: one row per user of
    (queries the challenger won, queries decided). One-sided p of H0: preference >= 0.5."""
    from scipy.special import ndtr

    w, d = np.asarray(wins_challenger, float), np.asarray(decided, float)
    keep = d > 0
    w, d = w[keep], d[keep]
    out: dict[str, Any] = {"users": int(d.size), "decided": int(d.sum()), "preference": None, "effect": None,
                           "se": None, "ci_low": None, "ci_high": None, "p_value": None,
                           "test": "user-level delta method on the preference, one-sided z against 0.5"}
    if d.size < 2:
        return out
    pref, var = ratio_and_variance(w, d)
    se = float(np.sqrt(var))
    out.update(preference=pref, effect=pref - 0.5, se=se, challenger=pref, champion=0.5)
    if se > 0:
        out.update(p_value=float(ndtr((pref - 0.5) / se)), ci_low=pref - 0.5 - 1.96 * se,
                   ci_high=pref - 0.5 + 1.96 * se)
    else:
        out.update(p_value=0.0 if pref < 0.5 else 1.0, ci_low=pref - 0.5, ci_high=pref - 0.5)
    return out


def interleaving_queries_needed(margin: float, level: float, power: float) -> int:
    """Decided queries a one-sided test of preference >= 0.5 at ``level`` needs to detect a
    preference of 0.5 - margin with probability ``power`` (normal approximation to the binomial)."""
    from scipy.special import ndtri

    p1 = 0.5 - margin
    if not 0 < p1 < 0.5:
        raise ValueError(f"interleaving margin must be in (0, 0.5), got {margin}")
    n = ((ndtri(1 - level) * 0.5 + ndtri(power) * np.sqrt(p1 * (1 - p1))) / margin) ** 2
    return int(np.ceil(n))


def expected_judged_hit(ranked: Mapping[str, list[str]], relevant: Mapping[str, set[str]], k: int,
                        click_model=None) -> dict[str, float]:
    """Offline counterpart of the online primary metric: per query, P(at least one click on a judged
    item among the top k) under the click model, from a model's ranking."""
    from components.service.clicks import ClickModel

    model = click_model or ClickModel()
    out = {}
    for q, items in ranked.items():
        rel = relevant.get(q) or set()
        miss = 1.0
        for rank, item in enumerate(items[:k], start=1):
            if item in rel:
                miss *= 1.0 - model.click_prob(rank, True)
        out[q] = 1.0 - miss
    return out


def user_sums(outcomes: pd.DataFrame, column: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """arm -> (per-user sum of ``column``, per-user searches)."""
    out = {}
    for arm in (CHAMPION, CHALLENGER):
        part = outcomes[outcomes["arm"] == arm]
        g = part.groupby("user_id")[column].agg(["sum", "count"]) if len(part) else pd.DataFrame(
            {"sum": [], "count": []})
        out[arm] = (g["sum"].to_numpy(float), g["count"].to_numpy(float))
    return out


def interleaving_outcomes(searches: pd.DataFrame, feedback: pd.DataFrame) -> dict[str, Any]:
    """Team-draft credit per interleaved search; challenger preference, user-level and binomial tests."""
    from scipy.stats import binomtest

    from components.service.interleave import credit

    inter = searches[searches["mode"] == "interleave"]
    clicks = feedback[feedback["event"] == "click"].groupby("request_id")["item_id"].apply(list).to_dict()
    wins = {CHAMPION: 0, CHALLENGER: 0, "tie": 0}
    per_user: dict[str, list[int]] = {}
    for rid, user, items, teams in zip(inter["request_id"], inter["user_id"], inter["item_ids"], inter["teams"]):
        if rid in clicks and teams:
            winner = credit(clicks[rid], items, teams)
            wins[winner] += 1
            if winner != "tie":
                won_decided = per_user.setdefault(user, [0, 0])
                won_decided[0] += winner == CHALLENGER
                won_decided[1] += 1
    decided = wins[CHAMPION] + wins[CHALLENGER]
    result: dict[str, Any] = {"queries": int(len(inter)), "with_clicks": int(sum(wins.values())), "wins": wins,
                              "decided": int(decided), "preference": None, "p_value": None,
                              "test": "scipy.stats.binomtest (two-sided, p=0.5; searches as independent)"}
    if decided:
        result["preference"] = wins[CHALLENGER] / decided
        result["p_value"] = float(binomtest(wins[CHALLENGER], decided, 0.5).pvalue)
    counts = np.array(list(per_user.values()), dtype=float).reshape(-1, 2)
    result["user_level"] = preference_test(counts[:, 0], counts[:, 1])
    return result


def online_rows(result: Mapping[str, Any], gate_cfg, k: int, offline_tested: int = 0) -> dict[str, dict[str, Any]]:
    """The online members of the gate's family, from :func:`analyze`'s result.

    ``online/hit_rate_judged@k``: the user-level test of the primary metric (tested when both arms
    have at least 2 users). ``online/interleaving``: tested only when its decided queries reach
    :func:`interleaving_queries_needed` at the worst-case Holm level of the whole family
    (``offline_tested`` offline tests + these two); else reported as underpowered.
    """
    from components.evaluation.gate import TESTED, UNDERPOWERED, normal_mde, normal_power

    family = offline_tested + 2
    level = gate_cfg.alpha / family
    rows: dict[str, dict[str, Any]] = {}
    primary = dict(result.get("user_level", {}).get("hit_rate_judged", {}))
    if primary:
        primary.update(source="online", metric=f"hit_rate_judged@{k}", group=OVERALL,
                       margin=gate_cfg.online_margin, tolerance=primary.get("tolerance", 0.0),
                       n=int(sum(primary.get("users", [0, 0]))))
        primary["status"] = TESTED if primary.get("p_value") is not None else "too few users"
        primary["power"] = normal_power(gate_cfg.online_margin, primary["tolerance"], primary["se"], level) \
            if primary.get("se") else None
        primary["mde"] = normal_mde(primary["tolerance"], primary["se"], level, gate_cfg.power) \
            if primary.get("se") else None
        rows[f"online/hit_rate_judged@{k}"] = primary
    inter = result.get("interleaving") or {}
    user = dict(inter.get("user_level") or {})
    if inter.get("queries"):
        needed = interleaving_queries_needed(gate_cfg.interleaving_margin, level, gate_cfg.power)
        user.update(source="online", metric="interleaving preference", group=OVERALL, n=int(inter.get("decided", 0)),
                    margin=gate_cfg.interleaving_margin, tolerance=0.0, needed=needed,
                    binomial_p_two_sided=inter.get("p_value"))
        user["status"] = TESTED if (inter.get("decided", 0) >= needed and user.get("p_value") is not None) \
            else UNDERPOWERED
        user["power"] = normal_power(gate_cfg.interleaving_margin, 0.0, 0.5 / np.sqrt(max(1, user["n"])), level)
        user["mde"] = None
        rows["online/interleaving"] = user
    return rows


def analyze(searches: pd.DataFrame, feedback: pd.DataFrame, relevant: Mapping[str, set[str]],
            categories: Mapping[str, str], challenger_share: float, alpha: float = 0.05,
            srm_alpha: float = 0.001, gate=None, k: int = 10) -> dict[str, Any]:
    """The whole online analysis of one experiment's events.

    ``gate``: the GateConfig whose margins and power the online rows of the family use
    (default: ``GateConfig(alpha=alpha)``); ``k``: the results shown per search.
    """
    from components.config import GateConfig
    from components.evaluation.gate import family_decision

    gate = gate or GateConfig(alpha=alpha)
    split = searches[searches["mode"] == "split"]
    outcomes = per_search_outcomes(split, feedback, relevant)
    table = arm_table(outcomes, categories) if len(outcomes) else {}
    users = split.groupby("arm")["user_id"].nunique().to_dict() if len(split) else {}
    srm = srm_check(int(users.get(CHAMPION, 0)), int(users.get(CHALLENGER, 0)), challenger_share, srm_alpha)
    srm["alpha"] = srm_alpha

    tests: dict[str, dict[str, Any]] = {}
    cats = [categories.get(q, "unknown") for q in outcomes["query"]] if len(outcomes) else []
    outcomes = outcomes.assign(category=cats)
    for group, rows in [(OVERALL, outcomes), *sorted(outcomes.groupby("category"), key=lambda g: g[0])]:
        for metric in ("hit_rate_judged", "ctr"):
            col = "judged_hit" if metric == "hit_rate_judged" else "clicked"
            sums = user_sums(rows, col)
            tests[f"{group}/{metric}"] = user_level_test(*sums[CHAMPION], *sums[CHALLENGER], 0.0, alpha)
    inter = interleaving_outcomes(searches, feedback)
    inter_by_category = {}
    if len(searches):
        cat_of = searches["query"].map(lambda q: categories.get(q, "unknown"))
        for cat in sorted(set(cat_of[searches["mode"] == "interleave"])):
            inter_by_category[cat] = interleaving_outcomes(searches[cat_of == cat], feedback)
    result: dict[str, Any] = {"table": table, "tests": tests, "srm": srm, "interleaving": inter,
                              "interleaving_by_category": inter_by_category, "alpha": alpha, "k": k,
                              "user_level": {"hit_rate_judged": tests.get(f"{OVERALL}/hit_rate_judged", {})},
                              "searches": int(len(searches)), "feedback": int(len(feedback))}
    rows = online_rows(result, gate, k)
    fam = family_decision(rows, gate, srm)
    result["gate_rows"] = fam["rows"]
    primary = fam["rows"].get(f"online/hit_rate_judged@{k}", {})
    reasons = []
    for name in fam["rejected"]:
        r = fam["rows"][name]
        reasons.append(f"{r['metric']} {r['challenger']:.4f} vs champion {r['champion']:.4f} "
                       f"({r['test']}, p={r['p_value']:.4g}, Holm p={r['p_holm']:.4g} < {alpha})")
    if srm["mismatch"]:
        reasons.append(f"sample-ratio mismatch (users {srm['observed']}, p={srm['p_value']:.3g})")
    result["regression"] = bool(reasons)
    if not reasons:
        bits = []
        if primary.get("challenger") is not None:
            bits.append(f"{primary['metric']} {primary['challenger']:.4f} vs champion {primary['champion']:.4f} "
                        f"(user-level, one-sided p={primary['p_value']:.4g})")
        il = fam["rows"].get("online/interleaving")
        if il and inter["preference"] is not None:
            state = "tested" if il["status"] == "tested" else \
                f"{il['n']} decided < {il['needed']} needed for power {gate.power:g}: reported, not a veto"
            bits.append(f"interleaving preference {inter['preference']:.3f} (user-level p={il.get('p_value') or 1:.4g}; "
                        f"{state})")
        result["reason"] = "no significant online regression: " + ("; ".join(bits) if bits else "no online data")
    else:
        result["reason"] = "online regression: " + "; ".join(reasons)
    return result


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
<h2>Tests</h2><p>User-level tests (delta-method variance of each arm's ratio over users), one-sided p of a
regression and two-sided p, alpha {result['alpha']}; interleaving: user-level preference test, the exact binomial test
(searches as independent) beside it. The gate's family and Holm: the gate report.</p><table><tr><th>group/metric</th><th>champion</th><th>challenger</th><th>p two-sided</th>
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
        mlflow.set_tags({"online.regression": str(result["regression"]), "online.reason": result["reason"][:5000],
                         "online.replay_seed": str(result.get("replay_seed"))})
        mlflow.log_artifacts(str(out_dir), "online")
        return run.info.run_id
