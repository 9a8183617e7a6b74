"""Calibration of the promotion gate: many simulated nights on the demo world.

Each model is scored ONCE on the eval queries (its top-100 ranking, the offline gate metric
per query, the expected judged-click HitRate@k per query under the click model, and the
exact team-draft interleaving outcome distribution per query against the champion). A
night then only draws numbers: a resampled eval set for the offline tests, and a fresh
replay seed for the online traffic (users, queries, the split by the service's user hash,
clicks), and runs the gate's own family of tests, Holm and decision
(:func:`components.evaluation.gate.family_decision`). Nothing is retrained or re-embedded
per night. The protocol (models, nights, regressions, targets) is in docs/gate.md.

Reported, with Wilson 95% intervals: the false-veto rate of A/A (the same model) and A/A'
(a second model trained by the same recipe with other seeds), the veto rate (power) of
regressions built from the champion (query-embedding noise or the empty CoT for a share
of the queries, overall or in one category) with their true offline and online effects,
the power at the committed margin and the minimum detectable effect, at the demo's
traffic and a larger stated one. The rule the gate had before the family of tests
(every test at 0.05, Fisher's exact test per search, the interleaving binomial test as a
veto) runs on the same nights as the baseline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from components.config import PipelineConfig
from components.evaluation.gate import OVERALL, TESTED, family_decision, offline_tests_arrays
from components.service.analysis import online_rows, preference_test, srm_check, user_level_test
from components.service.clicks import ClickModel
from components.service.interleave import team_draft
from components.service.replay import replay_seed
from components.service.split import CHALLENGER, assign_arm

log = logging.getLogger(__name__)

DEPTH = 100  # ranking depth kept per query (the gate metric's K and the interleaving's supply)


# ------------------------------------------------------------------ per-model results
@dataclass
class Scored:
    """One model (or a degraded variant) on the eval queries, computed once."""

    name: str
    ranked: np.ndarray  # (queries, DEPTH) item indices, best first
    hit: np.ndarray  # the offline gate metric per query (HitRate@K)
    p_hit: np.ndarray  # expected judged-click HitRate@k per query under the click model
    note: str = ""


@dataclass
class World:
    """What the calibration needs of the eval queries."""

    qids: list[str]
    categories: np.ndarray  # object array, one per query
    relevant: list[set[int]]  # relevant item indices per query
    n_items: int


def gate_k(metric: str) -> int:
    return int(metric.split("@")[1]) if "@" in metric else DEPTH


def score_ranking(name: str, ranked: np.ndarray, world: World, k_gate: int, k_online: int, clicks: ClickModel,
                  note: str = "") -> Scored:
    hit = np.empty(len(world.qids))
    p_hit = np.empty(len(world.qids))
    for i, rel in enumerate(world.relevant):
        top = ranked[i]
        hit[i] = len(set(top[:k_gate].tolist()) & rel) / len(rel) if rel else 0.0
        miss = 1.0
        for rank, item in enumerate(top[:k_online].tolist(), start=1):
            if item in rel:
                miss *= 1.0 - clicks.click_prob(rank, True)
        p_hit[i] = 1.0 - miss
    return Scored(name, ranked, hit, p_hit, note)


class _Coin:
    """A scripted coin for :func:`team_draft`: the i-th flip is heads (champion first) or tails."""

    def __init__(self, flips: Sequence[bool]):
        self.flips = list(flips)
        self.i = 0

    def random(self) -> float:
        heads = self.flips[self.i] if self.i < len(self.flips) else True
        self.i += 1
        return 0.0 if heads else 0.99


def interleaving_probabilities(champion: Sequence[int], challenger: Sequence[int], relevant: set[int], k: int,
                               clicks: ClickModel) -> tuple[float, float]:
    """P(challenger wins), P(champion wins) of one team-draft interleaved search, exactly: every
    coin-flip sequence of the draft (at most one flip per pair of picks), then the click counts
    of each team by dynamic programming over the shown items."""
    n_flips = (k + 1) // 2
    p_chal = p_champ = 0.0
    for code in range(2 ** n_flips):
        flips = [(code >> j) & 1 == 0 for j in range(n_flips)]
        items, owner = team_draft(list(champion), list(challenger), k, _Coin(flips))
        dist = {0: 1.0}  # challenger clicks minus champion clicks
        for rank, (item, team) in enumerate(zip(items, owner), start=1):
            p = clicks.click_prob(rank, item in relevant)
            step = 1 if team == CHALLENGER else -1
            nxt: dict[int, float] = {}
            for diff, prob in dist.items():
                nxt[diff] = nxt.get(diff, 0.0) + prob * (1 - p)
                nxt[diff + step] = nxt.get(diff + step, 0.0) + prob * p
            dist = nxt
        weight = 0.5 ** n_flips
        p_chal += weight * sum(v for d, v in dist.items() if d > 0)
        p_champ += weight * sum(v for d, v in dist.items() if d < 0)
    return p_chal, p_champ


def interleaving_table(champion: Scored, challenger: Scored, world: World, k: int,
                       clicks: ClickModel) -> np.ndarray:
    """(queries, 2): P(challenger wins), P(champion wins) per query."""
    return np.array([interleaving_probabilities(champion.ranked[i, :2 * k].tolist(),
                                                challenger.ranked[i, :2 * k].tolist(), world.relevant[i], k, clicks)
                     for i in range(len(world.qids))])


# ------------------------------------------------------------------------- a night
@dataclass
class Traffic:
    name: str
    n_users: int
    n_requests: int  # half split A/B, half interleaving (as evaluate_online)


def user_arms(cfg: PipelineConfig, n_users: int) -> np.ndarray:
    """1 where the service's user hash sends ``u<NNNN>`` to the challenger (the replayer's user names)."""
    salt = cfg.online.salt or cfg.online.experiment
    return np.array([assign_arm(f"u{i:04d}", salt, cfg.online.challenger_share) == CHALLENGER
                     for i in range(n_users)], dtype=bool)


def simulate_night(rng: np.random.Generator, champion: Scored, challenger: Scored, inter: np.ndarray, world: World,
                   cfg: PipelineConfig, traffic: Traffic, arms: np.ndarray, resample: bool = True) -> dict[str, Any]:
    """One night of the gate on simulated data; returns the veto, the deciding test and the online SE."""
    n = len(world.qids)
    idx = rng.integers(0, n, n) if resample else np.arange(n)
    offline = offline_tests_arrays(challenger.hit[idx], champion.hit[idx], world.categories[idx], cfg.gate)
    # split A/B: user and query uniform (the replayer), the arm by the user hash, one judged-hit draw
    n_split = traffic.n_requests // 2
    users = rng.integers(0, traffic.n_users, n_split)
    queries = rng.integers(0, n, n_split)
    arm = arms[users]
    p = np.where(arm, challenger.p_hit[queries], champion.p_hit[queries])
    hit = (rng.random(n_split) < p).astype(float)
    sums = {}
    for side in (False, True):
        u = users[arm == side]
        num = np.bincount(u, weights=hit[arm == side], minlength=traffic.n_users)
        den = np.bincount(u, minlength=traffic.n_users).astype(float)
        seen = den > 0
        sums[side] = (num[seen], den[seen])
    split_test = user_level_test(*sums[False], *sums[True], 0.0, cfg.online.alpha)
    srm = srm_check(int(sums[False][1].size), int(sums[True][1].size), cfg.online.challenger_share,
                    cfg.online.srm_alpha)
    # interleaving: the winner of each search from its exact distribution
    n_inter = traffic.n_requests - n_split
    iu = rng.integers(0, traffic.n_users, n_inter)
    iq = rng.integers(0, n, n_inter)
    r = rng.random(n_inter)
    chal_won = r < inter[iq, 0]
    decided = chal_won | (r >= 1.0 - inter[iq, 1])
    wins = np.bincount(iu[decided], weights=chal_won[decided].astype(float), minlength=traffic.n_users)
    dec = np.bincount(iu[decided], minlength=traffic.n_users).astype(float)
    pref = preference_test(wins, dec)
    result = {"user_level": {"hit_rate_judged": split_test},
              "interleaving": {"queries": n_inter, "decided": int(decided.sum()), "user_level": pref}}
    tested = sum(r["status"] == TESTED for r in offline.values())
    family = {f"offline/{g}": r for g, r in offline.items()}
    family.update(online_rows(result, cfg.gate, cfg.online.k, tested))
    fam = family_decision(family, cfg.gate, srm)
    return {"veto": fam["veto"], "rejected": fam["rejected"], "untrusted": fam["untrusted"],
            "online_se": split_test.get("se"), "interleaving_tested": family["online/interleaving"]["status"] == TESTED,
            "decided": int(decided.sum()), "old_rule": _old_rule(offline, split_test, hit, arm, pref, decided,
                                                                   chal_won, srm)}


def _old_rule(offline, split_test, hit, arm, pref, decided, chal_won, srm) -> bool:
    """The gate before issue 27 on the same night: every test at 0.05, no family control; offline
    a group vetoes when its 95% CI lies below 0 (t interval here, the bootstrap's stand-in), online
    Fisher's exact test per search (one-sided), interleaving's binomial test (two-sided, loss)."""
    from scipy.stats import binomtest, fisher_exact

    if any(r["status"] == TESTED and r["ci_high"] < 0 for r in offline.values()):
        return True
    s1, n1 = int(hit[arm].sum()), int(arm.sum())
    s0, n0 = int(hit[~arm].sum()), int((~arm).sum())
    if n0 and n1 and fisher_exact([[s1, n1 - s1], [s0, n0 - s0]], alternative="less").pvalue < 0.05:
        return True
    n_dec, w = int(decided.sum()), int(chal_won[decided].sum())
    if n_dec and w / n_dec < 0.5 and binomtest(w, n_dec, 0.5).pvalue < 0.05:
        return True
    return bool(srm["mismatch"])


def wilson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def run_nights(champion: Scored, challenger: Scored, inter: np.ndarray, world: World, cfg: PipelineConfig,
               traffic: Traffic, nights: int, scenario: str, old_rule: bool = False) -> dict[str, Any]:
    arms = user_arms(cfg, traffic.n_users)
    vetoes = old = interleaving_tested = 0
    by_source: dict[str, int] = {}
    ses = []
    for night in range(nights):
        rng = np.random.default_rng(replay_seed(f"calibration-night-{night}", scenario))
        out = simulate_night(rng, champion, challenger, inter, world, cfg, traffic, arms)
        vetoes += out["veto"]
        old += out["old_rule"]
        interleaving_tested += out["interleaving_tested"]
        if out["veto"]:
            key = out["rejected"][0] if out["rejected"] else "sample-ratio mismatch"
            by_source[key] = by_source.get(key, 0) + 1
        if out["online_se"]:
            ses.append(out["online_se"])
    lo, hi = wilson(vetoes, nights)
    row = {"traffic": traffic.name, "nights": nights, "vetoes": vetoes, "veto_rate": vetoes / nights,
           "ci_low": lo, "ci_high": hi, "first_rejected_by": by_source,
           "interleaving_tested_share": interleaving_tested / nights, "online_se": float(np.mean(ses)) if ses else None}
    if old_rule:
        olo, ohi = wilson(old, nights)
        row.update(old_rule_vetoes=old, old_rule_rate=old / nights, old_rule_ci=[olo, ohi])
    return row


# ---------------------------------------------------------------------- scenarios
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def noisy(queries: np.ndarray, chosen: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """normalise(q + scale * e), e ~ N(0, I / d), for the chosen rows; the others unchanged."""
    rng = np.random.default_rng(seed)
    out = np.array(queries, dtype=np.float32, copy=True)
    noise = rng.normal(0.0, 1.0 / np.sqrt(out.shape[1]), size=(len(chosen), out.shape[1])).astype(np.float32)
    out[chosen] = _unit(_unit(out[chosen]) + scale * noise)
    return out


def chosen_share(candidates: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    order = rng.permutation(candidates)
    return np.sort(order[:int(round(share * len(candidates)))])


@dataclass
class Embedded:
    """A model's embeddings of the eval queries (with and without its CoT) and of the catalog."""

    queries: np.ndarray
    queries_direct: np.ndarray
    items: np.ndarray


def embed_model(model_uri: str, world_data, cfg: PipelineConfig, cache_dir: Path | None = None) -> Embedded:
    """Embed once (cached by model URI, data and the model's files under ``cache_dir``)."""
    from components.registry import models

    eval_q = world_data.split("eval")
    key = hashlib.sha256(f"{model_uri}|{len(world_data.catalog)}|{'|'.join(eval_q['query_id'])}".encode()).hexdigest()
    path = (cache_dir / f"{key[:16]}.npz") if cache_dir else None
    if path is not None and path.exists():
        data = np.load(path)
        return Embedded(data["queries"], data["queries_direct"], data["items"])
    model = models.load_lrem(model_uri)
    texts = eval_q["text"].tolist()
    queries, _ = model.embed_queries(texts, batch_size=cfg.eval.batch_size)
    direct, _ = model.embed_queries(texts, reasoning=False, batch_size=cfg.eval.batch_size)
    items = model.embed_items(world_data.catalog["title"].tolist(), batch_size=cfg.eval.batch_size * 2)
    out = Embedded(np.asarray(queries, np.float32), np.asarray(direct, np.float32), np.asarray(items, np.float32))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, queries=out.queries, queries_direct=out.queries_direct, items=out.items)
    return out


def world_of(world_data) -> World:
    eval_q = world_data.split("eval")
    index = {item: i for i, item in enumerate(world_data.catalog["item_id"])}
    relevant = world_data.relevant()
    rel = [{index[x] for x in relevant.get(q, set()) if x in index} for q in eval_q["query_id"]]
    return World(eval_q["query_id"].tolist(), np.array(eval_q["category"].tolist(), dtype=object), rel,
                 len(world_data.catalog))


@dataclass
class Plan:
    """The pre-registered scenarios (docs/gate.md)."""

    nights: int = 1000
    noise_scale: float = 1.0
    overall_shares: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
    # the ladder's extension (docs/gate.md, registered before it ran): (share, noise scale) steps
    # past noise on half the queries, so that two steps bracket a true effect of -gate.margin
    extra_overall: tuple[tuple[float, float], ...] = ((0.7, 1.0), (1.0, 1.0), (0.3, 2.0), (0.5, 2.0), (0.7, 2.0),
                                                      (1.0, 2.0), (1.0, 4.0))
    empty_cot_shares: tuple[float, ...] = (0.5, 1.0)
    category: str = "qa"
    category_shares: tuple[float, ...] = (0.3, 0.6, 1.0)
    traffics: tuple[Traffic, ...] = field(default_factory=lambda: (Traffic("demo", 200, 400),
                                                                   Traffic("large", 20000, 40000)))
    kinds: tuple[str, ...] = ("null", "overall", "category")  # which scenarios run (null: A/A and A/A')
    base: str = "cot"  # the champion's query embedding: "cot" (the model as served) or "direct" (empty CoT)


def build_scenarios(base: Embedded, twin: Embedded | None, world: World, cfg: PipelineConfig,
                    plan: Plan) -> list[tuple[str, str, Scored]]:
    """(kind, name, challenger) for every scenario; the champion is the base model."""
    from components.evaluation.search import exact_top_k

    k_gate, k_on = gate_k(cfg.gate.metric), cfg.online.k
    clicks = ClickModel.from_config(cfg.online)

    def scored(name, queries, items, note=""):
        return score_ranking(name, exact_top_k(queries, items, DEPTH), world, k_gate, k_on, clicks, note)

    direct = plan.base == "direct"
    q0 = base.queries_direct if direct else base.queries
    out = [("null", "A/A (same model)", scored("A", q0, base.items))]
    if twin is not None:
        out.append(("null", "A/A' (same recipe, other seeds)",
                    scored("A'", twin.queries_direct if direct else twin.queries, twin.items)))
    everyone = np.arange(len(world.qids))
    for s, scale in [(s, plan.noise_scale) for s in plan.overall_shares] + list(plan.extra_overall):
        rows = chosen_share(everyone, s)
        times = "" if scale == plan.noise_scale else f" x{scale:g}"
        out.append(("overall", f"noise{times} on {s:.0%} of queries", scored(
            f"noise{times} {s}", noisy(q0, rows, scale), base.items,
            f"query embedding + noise (scale {scale:g}) on {len(rows)} queries")))
    for s in plan.empty_cot_shares if not direct else ():
        rows = chosen_share(everyone, s)
        q = np.array(base.queries, copy=True)
        q[rows] = base.queries_direct[rows]
        out.append(("overall", f"empty CoT on {s:.0%} of queries", scored(
            f"empty CoT {s}", q, base.items, f"direct embedding (no CoT) on {len(rows)} queries")))
    in_cat = np.flatnonzero(world.categories == plan.category)
    for s in plan.category_shares:
        rows = chosen_share(in_cat, s)
        out.append(("category", f"noise on {s:.0%} of {plan.category}", scored(
            f"{plan.category} noise {s}", noisy(q0, rows, plan.noise_scale), base.items,
            f"noise on {len(rows)} {plan.category} queries only")))
    return [s for s in out if s[0] in plan.kinds or s[1] == "A/A (same model)"]  # A/A: the champion


def paired_ci(diff: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The paired t interval of the mean per-query difference (challenger - champion) on the full eval set."""
    from scipy.stats import t

    diff = np.asarray(diff, float)
    n = len(diff)
    if n < 2:
        return float("nan"), float("nan")
    half = t.ppf(0.5 + level / 2, n - 1) * diff.std(ddof=1) / np.sqrt(n)
    return float(diff.mean() - half), float(diff.mean() + half)


def _interp_cross(xs: Sequence[float], ys: Sequence[float], target: float) -> float | None:
    """x where y first reaches ``target`` going along increasing x (linear interpolation)."""
    pts = sorted(zip(xs, ys))
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if y0 < target <= y1:
            return x0 + (target - y0) * (x1 - x0) / (y1 - y0)
    if pts and pts[0][1] >= target:
        return pts[0][0]
    return None


def _bracket(xs: Sequence[float], ys: Sequence[float], x: float) -> tuple[tuple[float, float], ...] | None:
    """The two points, adjacent in increasing x, whose x bracket ``x`` (the first such pair), or None."""
    pts = sorted(zip(xs, ys))
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return (x0, y0), (x1, y1)
    return None


def _interp_at(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """Linear interpolation at ``x`` between the two points of :func:`_bracket`."""
    pair = _bracket(xs, ys, x)
    if pair is None:
        return None
    (x0, y0), (x1, y1) = pair
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0) if x1 > x0 else y0


def calibrate(base: Embedded, twin: Embedded | None, world: World, cfg: PipelineConfig, plan: Plan | None = None,
              progress=None) -> dict[str, Any]:
    """Every scenario, every traffic, ``plan.nights`` nights each; the figures of docs/gate.md."""
    from scipy.stats import norm

    plan = plan or Plan()
    started = time.perf_counter()
    scenarios = build_scenarios(base, twin, world, cfg, plan)
    champion = scenarios[0][2]
    clicks = ClickModel.from_config(cfg.online)
    cat_mask = world.categories == plan.category
    rows = []
    for kind, name, chal in scenarios:
        inter = interleaving_table(champion, chal, world, cfg.online.k, clicks)
        row = {"kind": kind, "scenario": name, "note": chal.note,
               "champion_offline": float(champion.hit.mean()), "challenger_offline": float(chal.hit.mean()),
               "true_offline_effect": float((chal.hit - champion.hit).mean()),
               "true_offline_effect_ci95": list(paired_ci(chal.hit - champion.hit)),
               f"true_offline_effect_{plan.category}": float((chal.hit - champion.hit)[cat_mask].mean()),
               "true_online_effect": float((chal.p_hit - champion.p_hit).mean()),
               "champion_online_expected": float(champion.p_hit.mean()),
               "true_interleaving_preference": float(inter[:, 0].sum() / max(1e-12, inter.sum())),
               "by_traffic": {}}
        for traffic in plan.traffics:
            row["by_traffic"][traffic.name] = run_nights(champion, chal, inter, world, cfg, traffic, plan.nights,
                                                         f"{name}|{traffic.name}", old_rule=traffic.name == "demo")
        rows.append(row)
        if progress:
            progress(row)
    summary: dict[str, Any] = {"traffics": {t.name: dataclasses.asdict(t) for t in plan.traffics}}
    overall = [r for r in rows if r["kind"] == "overall" and r["scenario"].startswith("noise")]
    margin = cfg.gate.margin
    for t in plan.traffics:
        effects = [-r["true_offline_effect"] for r in overall]
        powers = [r["by_traffic"][t.name]["veto_rate"] for r in overall]
        se = next((r["by_traffic"][t.name]["online_se"] for r in rows if r["scenario"].startswith("A/A ")), None)
        fam = 1 + sum(int((world.categories == c).sum()) >= cfg.gate.min_queries for c in set(world.categories)) + 1
        level = cfg.gate.alpha / fam
        summary[t.name] = {
            "power_at_margin": _interp_at(effects, powers, margin),
            "margin_bracket": _bracket(effects, powers, margin),  # ((-effect, power), (-effect, power))
            "mde_offline_overall": _interp_cross(effects, powers, cfg.gate.power),
            "online_se_under_AA": se,
            "online_mde_analytic": (norm.ppf(1 - level) + norm.ppf(cfg.gate.power)) * se if se else None,
            "family_size": fam}
    return {"plan": {**dataclasses.asdict(plan), "margin": margin, "alpha": cfg.gate.alpha,
                     "min_queries": cfg.gate.min_queries, "online_margin": cfg.gate.online_margin,
                     "interleaving_margin": cfg.gate.interleaving_margin, "tolerance": cfg.gate.tolerance,
                     "category_tolerance": cfg.gate.category_tolerance},
            "eval_queries": len(world.qids), "items": world.n_items, "scenarios": rows, "summary": summary,
            "seconds": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------------- the report
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_report(result: Mapping[str, Any]) -> str:
    """Markdown tables of the calibration (what `lrem gate calibrate` and the benchmark print)."""
    plan = result["plan"]
    traffics = list(result["summary"]["traffics"])
    lines = [f"Gate calibration: {plan['nights']} nights per scenario and traffic, {result['eval_queries']} eval "
             f"queries, {result['items']} items; alpha {plan['alpha']}, margin {plan['margin']} (HitRate), "
             f"online margin {plan['online_margin']}, min_queries {plan['min_queries']}"
             + (f", categories' null effect >= -{plan['category_tolerance']:g}"
                if plan.get("category_tolerance") is not None else "") + f"; {result['seconds']} s",
             "", "| scenario | offline HitRate (chal vs champ) | true offline effect (A/A': paired 95% CI) | true effect in "
             f"{plan['category']} | true online effect | " + " | ".join(
                 f"veto rate, {t} traffic [95% CI]" for t in traffics) + " | old rule, demo |",
             "|---|---|---|---|---|" + "---|" * len(traffics) + "---|"]
    effect_key = f"true_offline_effect_{plan['category']}"
    for r in result["scenarios"]:
        cells = []
        for t in traffics:
            b = r["by_traffic"][t]
            cells.append(f"{_pct(b['veto_rate'])} [{_pct(b['ci_low'])}, {_pct(b['ci_high'])}]")
        demo = r["by_traffic"].get("demo", {})
        old = f"{_pct(demo.get('old_rule_rate'))}" if "old_rule_rate" in demo else "-"
        ci = r.get("true_offline_effect_ci95")
        ci_txt = f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci and r["kind"] == "null" and r["challenger_offline"] != \
            r["champion_offline"] else ""
        lines.append(f"| {r['scenario']} | {r['challenger_offline']:.4f} vs {r['champion_offline']:.4f} | "
                     f"{r['true_offline_effect']:+.4f}{ci_txt} | {r[effect_key]:+.4f} | "
                     f"{r['true_online_effect']:+.4f} | " + " | ".join(cells) + f" | {old} |")
    lines += ["", "| traffic | users | requests | power at margin (overall noise ladder) | offline MDE (80%) | "
              "online SE under A/A | online-only MDE (80%, analytic) |", "|---|---|---|---|---|---|---|"]
    for t in traffics:
        s, tr = result["summary"][t], result["summary"]["traffics"][t]
        mde, se, online_mde = s["mde_offline_overall"], s["online_se_under_AA"], s["online_mde_analytic"]
        lines.append(f"| {t} | {tr['n_users']} | {tr['n_requests']} | {_pct(s['power_at_margin'])} | "
                     f"{'-' if mde is None else f'{mde:.4f}'} | "
                     f"{'-' if se is None else f'{se:.4f}'} | "
                     f"{'-' if online_mde is None else f'{online_mde:.4f}'} |")
    return "\n".join(lines)


def run_calibration(cfg: PipelineConfig, data_dir: str, model_uri: str, twin_uri: str | None,
                    plan: Plan | None = None, cache_dir: Path | None = None, out: Path | None = None,
                    progress=None) -> dict[str, Any]:
    """Load the world, embed the models once (cached), run :func:`calibrate`, write ``out`` (JSON)."""
    from components.data.io import load_world

    data = load_world(data_dir)
    world = world_of(data)
    t0 = time.perf_counter()
    base = embed_model(model_uri, data, cfg, cache_dir)
    twin = embed_model(twin_uri, data, cfg, cache_dir) if twin_uri else None
    embed_s = time.perf_counter() - t0
    result = calibrate(base, twin, world, cfg, plan, progress)
    result.update(model=model_uri, twin=twin_uri, data=str(data_dir), embed_seconds=round(embed_s, 1))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


# ------------------------------------------------------------------------ the CLI
def add_commands(sub) -> None:
    """`lrem gate calibrate`, `lrem gate train-pair`."""
    p = sub.add_parser("gate", help="the promotion gate: calibrate its error rates on simulated nights; train the "
                                    "calibration's model pair")
    p.add_argument("action", choices=["calibrate", "train-pair"])
    p.add_argument("--model", help="the champion of the simulation (default: models:/<model_name>@champion)")
    p.add_argument("--twin", help="A/A': a model trained by the same recipe with other seeds (a models:/ URI)")
    p.add_argument("--data", default="data", help="the world whose eval queries are replayed; train-pair: the snapshot "
                                                  "the pair is trained on (default: data)")
    p.add_argument("--seeds", default="0,1", help="train-pair: one model per seed, comma-separated (default: 0,1)")
    p.add_argument("--vary", default="cold_start,grpo",
                   help="train-pair: the config sections whose seed is set to each seed (default: the fine-tuning's, "
                        "cold_start,grpo; add model,backbone to re-train the backbone too, routing to redraw the "
                        "router's held-out training queries)")
    p.add_argument("--model-name", default=None,
                   help="train-pair: the registered model of the pair (default: lrem-gate-pair; never the serving one)")
    p.add_argument("--reuse", default=None,
                   help="train-pair: earlier pairs' JSONs (comma-separated) whose members' training (triplets, backbone, "
                        "cold start, GRPO) each seed takes over, redoing only the router and the registration; their "
                        "recipe may differ from this one only in how the router is fitted")
    p.add_argument("--nights", type=int, default=Plan.nights, help=f"nights per scenario and traffic ({Plan.nights})")
    p.add_argument("--large-users", type=int, default=20000, help="users of the larger stated traffic")
    p.add_argument("--large-requests", type=int, default=40000, help="requests of the larger stated traffic")
    p.add_argument("--out", help="JSON of every figure (default: $LREM_HOME/calibration/gate_calibration.json; "
                                 "train-pair: $LREM_HOME/calibration/gate_pair.json)")
    p.add_argument("--scenarios", default="null,overall,category",
                   help="which scenarios: null (A/A, A/A'), overall, category; comma-separated (default: all)")
    p.add_argument("--category-tolerance", type=float, default=None,
                   help="calibrate: the gate with gate.category_tolerance set to this (each category's null: effect >= "
                        "-this), whatever the config says")
    p.add_argument("--base", choices=["cot", "direct"], default="cot",
                   help="the champion's query embedding: after its CoT (as served) or the direct one (empty CoT)")
    p.set_defaults(fn=cmd_gate)


def cmd_gate(args) -> int:
    from components import tracking
    from components.config import load_config
    from components.paths import state_path

    if args.action == "train-pair":
        return cmd_train_pair(args)
    cfg = load_config(args.config, {"gate": {"category_tolerance": args.category_tolerance}}
                      if args.category_tolerance is not None else None)
    tracking.configure(cfg)
    model = args.model or f"models:/{cfg.tracking.model_name}@champion"
    plan = Plan(nights=args.nights, traffics=(Traffic("demo", cfg.online.n_users, cfg.online.max_requests),
                                              Traffic("large", args.large_users, args.large_requests)),
                kinds=tuple(k.strip() for k in args.scenarios.split(",") if k.strip()), base=args.base)
    out = Path(args.out) if args.out else state_path("calibration") / "gate_calibration.json"
    result = run_calibration(cfg, args.data, model, args.twin, plan, state_path("calibration", "cache"), out,
                             progress=lambda r: log.info("%s: %s", r["scenario"], {
                                 t: f"{b['veto_rate']:.3f}" for t, b in r["by_traffic"].items()}))
    print(format_report(result))
    print(f"\nall figures: {out}")
    return 0


def cmd_train_pair(args) -> int:
    from components.evaluation.gate_pair import DEFAULT_MODEL_NAME, train_pair
    from components.paths import state_path

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out = Path(args.out) if args.out else state_path("calibration") / "gate_pair.json"
    vary = tuple(v.strip() for v in args.vary.split(",") if v.strip())
    reuse = [json.loads(Path(f.strip()).read_text()) for f in args.reuse.split(",") if f.strip()] \
        if args.reuse else None
    result = train_pair(args.config, args.data, seeds, out, args.model_name or DEFAULT_MODEL_NAME, vary, reuse)
    for m in result["models"]:
        print(f"seed {m['seed']}: {m['model_uri']}  ({sum(m['seconds'].values()):.0f} s: "
              + ", ".join(f"{k} {v:.0f}" for k, v in m["seconds"].items()) + ")")
    print(f"\nall artefacts: {out}")
    return 0
