"""The reasoning router: decide per query, before reasoning, whether the CoT is worth its cost.

A logistic regression on features known before reasoning. From the direct (empty-CoT) forward:
the query's length in tokens and the model's own first-token distribution at ``<think>`` (its
top probability, its entropy, the probability it closes ``</think>`` at once: the model saying
it has nothing to think about); optionally the direct embedding itself. From the direct
embedding's retrieval (:data:`REFERENCE_FEATURES`, docs/serving-cost.md 3.6): its top-1, top-10
and top-100 cosines against the catalog's item embeddings and their gaps (does the direct
embedding already find its items?), and its highest cosine to a training query's direct
embedding (is this a query like those the model learned?). The reference embeddings (items:
the catalog or a seeded sample of it; training queries) are stored with the router
(``router_refs.npz`` beside ``router.json``), so the router lives in the model and needs no
index: the offline evaluation, the pyfunc, the online A/B and the gate all run the same routing.

It is learned in the nightly run (:mod:`components.routing.step`): per fitting query (the
data's dev queries by default; else training or held-out ones), the gain of its own CoT over the empty CoT in HitRate@k; label "reasoning helps"; the threshold is
the smallest reasoning share whose out-of-fold routed HitRate@k stays within
``routing.tolerance`` of always reasoning.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROUTER_FILE = "router.json"
REFS_FILE = "router_refs.npz"
SCALAR_FEATURES = ("log_query_tokens", "first_token_max_prob", "first_token_entropy", "close_prob")
DIRECT_FEATURE = "direct_embedding"
REFERENCE_FEATURES = ("top1_item_cos", "top10_item_cos", "top100_item_cos", "gap_top1_top10", "gap_top1_top100",
                      "nearest_train_query_cos")


def reference_features(direct: np.ndarray, items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """:data:`REFERENCE_FEATURES` of L2-normalised direct embeddings: the 1st, 10th and 100th highest
    cosine against the reference ``items`` (ranks past the item count clip to the last), the gaps
    of the 1st to the 10th and 100th, and the highest cosine to a reference training query."""
    direct = np.asarray(direct, np.float32)
    n = len(direct)
    if n == 0:
        return np.zeros((0, len(REFERENCE_FEATURES)))
    if len(items) == 0 or len(queries) == 0:
        raise ValueError("router reference features need at least one reference item and one training query")
    sims = direct @ np.asarray(items, np.float32).T
    ranks = [min(k, sims.shape[1]) - 1 for k in (1, 10, 100)]
    kth = np.sort(np.partition(-sims, ranks[-1], axis=1)[:, : ranks[-1] + 1], axis=1)  # the top, descending
    top = -kth[:, ranks]
    nearest = (direct @ np.asarray(queries, np.float32).T).max(1)
    return np.column_stack([top[:, 0], top[:, 1], top[:, 2], top[:, 0] - top[:, 1], top[:, 0] - top[:, 2],
                            nearest]).astype(np.float64)


def _design(direct: np.ndarray, scalars: np.ndarray, features, refs: dict | None) -> np.ndarray:
    """The router's input rows for ``features`` (names, in order of the blocks: direct embedding,
    scalars, reference features)."""
    parts = []
    if DIRECT_FEATURE in features:
        parts.append(np.asarray(direct, np.float64))
    parts.append(np.asarray(scalars, np.float64))
    if any(f in REFERENCE_FEATURES for f in features):
        if refs is None:
            raise ValueError(f"this router's features need its reference embeddings ({REFS_FILE}), which are missing")
        parts.append(reference_features(direct, refs["items"], refs["queries"]))
    return np.concatenate(parts, axis=1)


def feature_names(direct_embedding: bool, reference: bool) -> list[str]:
    return ([DIRECT_FEATURE] if direct_embedding else []) + list(SCALAR_FEATURES) + \
        (list(REFERENCE_FEATURES) if reference else [])


@dataclass
class Router:
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    threshold: float  # reason when P(reasoning helps) >= threshold
    features: list[str] = field(default_factory=lambda: [DIRECT_FEATURE, *SCALAR_FEATURES])
    stats: dict = field(default_factory=dict)  # how it was trained (shares, HitRates, folds)
    # reference embeddings of the reference features: {"items": [n, d], "queries": [m, d]} (router_refs.npz)
    refs: dict | None = field(default=None, repr=False, compare=False)

    def design(self, direct: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        return _design(direct, scalars, self.features, self.refs)

    def scores(self, direct: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        z = (self.design(direct, scalars) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def decide(self, direct: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        """True where the query should reason."""
        if len(direct) == 0:
            return np.zeros(0, dtype=bool)
        return self.scores(direct, scalars) >= self.threshold

    def apply_traffic_budget(self, direct: np.ndarray, scalars: np.ndarray, budget: float) -> dict:
        """Rule C (docs/serving-cost.md 3.7): set the threshold so that the router reasons on the
        ``budget`` highest-scored of these traffic queries (their direct forward; no labels read).
        Returns what it did (the cut, the rule's cut before it, both shares on the traffic);
        also kept in ``stats["traffic"]``."""
        score = self.scores(direct, scalars)
        rule_cut = self.threshold
        cut = budget_cut(score, budget)
        self.threshold = cut
        info = {"applied": True, "budget": float(budget), "n_queries": int(len(score)), "threshold": cut,
                "reason_share": float((score >= cut).mean()), "rule_threshold": rule_cut,
                "rule_reason_share": float((score >= rule_cut).mean())}
        self.stats["traffic"] = info
        return info

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / ROUTER_FILE
        fields = {k: v for k, v in asdict(self).items() if k != "refs"}
        path.write_text(json.dumps(fields, indent=1))
        if self.refs is not None:
            np.savez(Path(model_dir) / REFS_FILE, **{k: np.asarray(v, np.float16) for k, v in self.refs.items()})
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> "Router | None":
        path = Path(model_dir) / ROUTER_FILE
        if not path.is_file():
            return None
        router = cls(**json.loads(path.read_text()))
        refs = Path(model_dir) / REFS_FILE
        if refs.is_file():
            with np.load(refs) as z:
                router.refs = {k: z[k].astype(np.float32) for k in z.files}
        elif any(f in REFERENCE_FEATURES for f in router.features):
            raise FileNotFoundError(f"{path} names reference features but {refs} is missing")
        return router


def as_stored(refs: dict) -> dict:
    """Reference embeddings as :meth:`Router.save` stores them (float16) and loads them back, so that a
    router is fitted on exactly the features it will compute when served."""
    return {k: np.asarray(v, np.float16).astype(np.float32) for k, v in refs.items()}


def routed_metric(score: np.ndarray, hit_direct: np.ndarray, hit_reason: np.ndarray, threshold: float) -> tuple:
    """(routed mean HitRate, share that reasons) at ``threshold``."""
    reason = score >= threshold
    return float(np.where(reason, hit_reason, hit_direct).mean()), float(reason.mean())


def choose_threshold(score: np.ndarray, hit_direct: np.ndarray, hit_reason: np.ndarray,
                     tolerance: float) -> tuple[float, dict]:
    """The highest threshold (fewest queries reasoning) whose routed HitRate stays within
    ``tolerance`` of always reasoning, on scores the fit did not see (out-of-fold)."""
    target = float(hit_reason.mean()) - tolerance
    candidates = np.unique(np.concatenate([score, [np.inf]]))[::-1]  # from "nobody reasons" downwards
    for t in candidates:
        value, share = routed_metric(score, hit_direct, hit_reason, t)
        if value >= target - 1e-12:
            below = score[score < t]
            # halfway to the next lower score, so that a query scored at the cut still reasons
            cut = float(t) if not np.isfinite(t) else float((t + below.max()) / 2 if below.size else t)
            if not np.isfinite(cut):
                cut = 1.0 + 1e-9  # no query reasons: a probability never reaches it
            return cut, {"calibration_hit_rate": value, "calibration_reason_share": share, "target": target}
    return 0.0, {"calibration_hit_rate": float(hit_reason.mean()), "calibration_reason_share": 1.0,
                 "target": target}


def bagged_threshold(score: np.ndarray, hit_direct: np.ndarray, hit_reason: np.ndarray, tolerance: float,
                     bags: int, seed: int = 0, quantile: float = 0.5) -> tuple[float, dict]:
    """:func:`choose_threshold` on ``bags`` bootstrap resamples of the (score, hits) rows, and
    the ``quantile`` of their thresholds (0.5: the median): the first-crossing rule looks for
    where a flat, noisy curve first touches its top, so its cut jumps with the sample; the
    median of the resamples' cuts does not follow one sample's noise (docs/serving-cost.md,
    section 3.3); a lower quantile is a lower cut: more queries reason where the resamples
    disagree (3.6)."""
    rng = np.random.default_rng(seed)
    n = len(score)
    cuts = []
    for _ in range(bags):
        idx = rng.integers(0, n, n)
        cuts.append(choose_threshold(score[idx], hit_direct[idx], hit_reason[idx], tolerance)[0])
    cut = float(np.quantile(cuts, quantile))
    value, share = routed_metric(score, hit_direct, hit_reason, cut)
    return cut, {"calibration_hit_rate": value, "calibration_reason_share": share,
                 "target": float(hit_reason.mean()) - tolerance, "threshold_bags": bags,
                 "threshold_quantile": quantile,
                 "bag_threshold_iqr": [float(np.percentile(cuts, 25)), float(np.percentile(cuts, 75))]}


def budget_cut(score: np.ndarray, share: float) -> float:
    """The threshold that reasons on the ``share`` highest of ``score`` (rounded to whole queries):
    halfway between the last one kept and the next; above every score when none is kept, 0 when
    all are. Tied scores at the cut all reason (a threshold cannot split them)."""
    ordered = np.sort(np.asarray(score, float))[::-1]
    n = int(round(share * len(ordered)))
    if n <= 0:
        return 1.0 + 1e-9
    if n >= len(ordered):
        return 0.0
    mid = float((ordered[n - 1] + ordered[n]) / 2)
    return mid if mid > ordered[n] else float(ordered[n - 1])  # adjacent floats: the midpoint rounds onto the next


def share_threshold(score: np.ndarray, hit_direct: np.ndarray, hit_reason: np.ndarray,
                    reason_share: float) -> tuple[float, dict]:
    """The cut under which all but the ``reason_share`` highest ``score`` s fall (halfway between
    the last one kept and the next), i.e. a reasoning budget spent on the queries most likely to
    gain."""
    cut = budget_cut(score, reason_share)
    value, share = routed_metric(score, hit_direct, hit_reason, cut)
    return cut, {"calibration_hit_rate": value, "calibration_reason_share": share, "reason_share": reason_share}


def fit_router(direct: np.ndarray, scalars: np.ndarray, hit_direct: np.ndarray, hit_reason: np.ndarray,
               tolerance: float = 0.0, folds: int = 5, c: float = 1.0, seed: int = 0, bags: int = 0,
               reason_share: float | None = None, direct_embedding: bool = True,
               refs: dict | None = None, threshold_quantile: float = 0.5) -> Router:
    """Learn "does this query's own CoT raise its HitRate over the empty CoT" and the threshold.

    scikit-learn's LogisticRegression (class-balanced); the threshold is chosen on out-of-fold
    scores so that it is not fitted to the very queries it is judged on: with ``reason_share``
    the cut that reasons on that share of them, the highest scored (:func:`share_threshold`: a
    budget; the rule below is still computed and reported as ``rule_reason_share``); else the
    first crossing (:func:`choose_threshold`) when ``bags`` is 0, or the median over ``bags``
    bootstrap resamples of the out-of-fold rows (:func:`bagged_threshold`; their
    ``threshold_quantile`` in place of the median when given).

    Features: the direct embedding when ``direct_embedding``, the scalars, and the reference
    features when ``refs`` (reference item and training-query embeddings, kept by the router) is given.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    names = feature_names(direct_embedding, refs is not None)
    refs = as_stored(refs) if refs is not None else None
    x = _design(direct, scalars, names, refs)
    hit_direct, hit_reason = np.asarray(hit_direct, float), np.asarray(hit_reason, float)
    y = (hit_reason - hit_direct > 0).astype(int)
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-8] = 1.0
    z = (x - mean) / scale
    stats = {"n_queries": int(len(y)), "share_reasoning_helps": float(y.mean()),
             "share_reasoning_hurts": float((hit_reason < hit_direct).mean()),
             "hit_rate_direct": float(hit_direct.mean()), "hit_rate_always_reason": float(hit_reason.mean()),
             "tolerance": tolerance}
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if min(n_pos, n_neg) < 2:
        # nothing to learn from: reason always when reasoning helps on average, else never
        always = hit_reason.mean() >= hit_direct.mean() - tolerance and n_pos > 0
        threshold = 0.0 if always else 1.0 + 1e-9
        stats.update({"degenerate": True, "calibration_reason_share": 1.0 if always else 0.0})
        return Router(mean.tolist(), scale.tolist(), [0.0] * x.shape[1], 0.0, threshold, names, stats, refs)
    k = max(2, min(folds, n_pos, n_neg))
    oof = np.zeros(len(y))
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(z, y):
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        clf.fit(z[train], y[train])
        oof[test] = clf.predict_proba(z[test])[:, 1]
    if bags > 0:
        threshold, calib = bagged_threshold(oof, hit_direct, hit_reason, tolerance, bags, seed, threshold_quantile)
    else:
        threshold, calib = choose_threshold(oof, hit_direct, hit_reason, tolerance)
    if reason_share is not None:
        rule = calib
        threshold, calib = share_threshold(oof, hit_direct, hit_reason, reason_share)
        calib.update(rule_reason_share=rule["calibration_reason_share"], rule_hit_rate=rule["calibration_hit_rate"])
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(z, y)
    try:
        from sklearn.metrics import roc_auc_score

        stats["oof_auc"] = float(roc_auc_score(y, oof))
    except ValueError:
        pass
    stats.update(calib, folds=k)
    return Router(mean.tolist(), scale.tolist(), clf.coef_[0].tolist(), float(clf.intercept_[0]), threshold,
                  names, stats, refs)
