"""The offline evaluation report: PNG plots, an HTML page, and a plain metrics table.

``results`` maps a model label ("challenger v3", "champion v2") to the dict of
:func:`components.evaluation.metrics.retrieval_metrics`. The HTML report is
self-contained apart from its PNGs (relative paths), so the folder can be logged as an
MLflow artifact and opened from the UI.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

from components.evaluation.metrics import OVERALL

Results = Mapping[str, Mapping[str, Mapping[str, float]]]

PLOT_FILES = {
    "hit_rate_by_category": "hit_rate_by_category.png",
    "hit_rate_vs_k": "hit_rate_vs_k.png",
    "precision_by_category": "precision_by_category.png",
}


# ----------------------------------------------------------------------------- helpers
def _ks(results: Results, prefix: str) -> list[int]:
    ks: set[int] = set()
    for metrics in results.values():
        for values in metrics.values():
            for key in values:
                m = re.fullmatch(re.escape(prefix) + r"@(\d+)", key)
                if m:
                    ks.add(int(m.group(1)))
    return sorted(ks)


def _groups(results: Results) -> list[str]:
    seen: list[str] = []
    for metrics in results.values():
        for group in metrics:
            if group not in seen:
                seen.append(group)
    return [OVERALL] * (OVERALL in seen) + [g for g in seen if g != OVERALL]


def _metric_keys(results: Results) -> list[str]:
    keys = [f"hit_rate@{k}" for k in _ks(results, "hit_rate")] + [f"precision@{k}" for k in _ks(results, "precision")]
    others: list[str] = []
    for metrics in results.values():
        for values in metrics.values():
            others += [k for k in values if k not in keys and k not in others]
    return keys + others


def _pair(results: Results) -> tuple[str, str] | None:
    """(challenger label, champion label) when exactly two models are compared."""
    labels = list(results)
    chal = next((l for l in labels if l.lower().startswith("challenger")), None)
    champ = next((l for l in labels if l.lower().startswith("champion")), None)
    if chal and champ:
        return chal, champ
    if chal or len(labels) != 2:  # a challenger beside a reference row (no champion): nothing to subtract
        return None
    return labels[0], labels[1]


def _get(results: Results, label: str, group: str, key: str) -> float | None:
    value = results.get(label, {}).get(group, {}).get(key)
    return None if value is None else float(value)


def _fmt(value: float | None, key: str = "") -> str:
    if value is None:
        return "-"
    if key == "n_queries":
        return str(int(value))
    return f"{value:.4f}"


def _fmt_delta(delta: float | None, key: str = "") -> str:
    if delta is None:
        return "-"
    if key == "n_queries":
        return f"{int(delta):+d}"
    return f"{delta:+.4f}"


# ------------------------------------------------------------------------------ plots
def _grouped_bars(ax: Any, results: Results, groups: Sequence[str], key: str) -> None:
    labels = list(results)
    width = 0.8 / max(1, len(labels))
    peak = 0.0
    for i, label in enumerate(labels):
        xs = [g + (i - (len(labels) - 1) / 2) * width for g in range(len(groups))]
        ys = [_get(results, label, group, key) or 0.0 for group in groups]
        peak = max([peak, *ys])
        bars = ax.bar(xs, ys, width=width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups, rotation=20)
    ax.set_ylim(0, min(1.08, max(0.05, peak * 1.2)))  # small precisions stay readable
    ax.set_title(key)
    ax.grid(axis="y", alpha=0.3)


def _plot_by_category(path: Path, results: Results, keys: Sequence[str], title: str) -> None:
    groups = _groups(results)
    width = max(5.0, 0.5 * len(groups) * max(1, len(results)) + 1.5)
    fig = Figure(figsize=(width, 3.4 * len(keys)), layout="constrained")
    axes = fig.subplots(len(keys), 1, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys):
        _grouped_bars(ax, results, groups, key)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)


def _plot_hit_rate_vs_k(path: Path, results: Results) -> None:
    ks = _ks(results, "hit_rate")
    groups = _groups(results)
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, group in zip(axes, groups):
        for label in results:
            ys = [_get(results, label, group, f"hit_rate@{k}") for k in ks]
            if any(y is not None for y in ys):
                ax.plot(ks, [float("nan") if y is None else y for y in ys], marker="o", label=label)
        ax.set_title(group)
        ax.set_xlabel("K")
        ax.set_xticks(ks)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    axes[0].set_ylabel("HitRate@K")
    axes[0].legend(fontsize=8)
    fig.suptitle("HitRate@K vs K")
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------- text
def write_metrics_table(results: Results) -> str:
    """A markdown table (category | metric | one column per model | delta when two)."""
    labels = list(results)
    pair = _pair(results)
    header = ["category", "metric", *labels] + (["Δ (challenger − champion)"] if pair else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for group in _groups(results):
        for key in _metric_keys(results):
            values = [_get(results, label, group, key) for label in labels]
            if all(v is None for v in values):
                continue
            cells = [group, key, *(_fmt(v, key) for v in values)]
            if pair:
                a, b = (_get(results, label, group, key) for label in pair)
                cells.append(_fmt_delta(None if a is None or b is None else a - b, key))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- html
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td.l, th.l { text-align: left; }
.up { color: #137333; } .down { color: #b3261e; }
.hit { color: #137333; } .miss { color: #b3261e; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
ol { margin: 0; padding-left: 1.3em; text-align: left; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _metrics_html(results: Results, group: str) -> str:
    labels = list(results)
    pair = _pair(results)
    head = "".join(f"<th>{_e(l)}</th>" for l in labels) + ("<th>Δ challenger − champion</th>" if pair else "")
    rows = []
    for key in _metric_keys(results):
        values = [_get(results, label, group, key) for label in labels]
        if all(v is None for v in values):
            continue
        cells = "".join(f"<td>{_fmt(v, key)}</td>" for v in values)
        if pair:
            a, b = (_get(results, label, group, key) for label in pair)
            delta = None if a is None or b is None else a - b
            cls = "" if not delta or key == "n_queries" else (" class='up'" if delta > 0 else " class='down'")
            cells += f"<td{cls}>{_fmt_delta(delta, key)}</td>"
        rows.append(f"<tr><td class='l'>{_e(key)}</td>{cells}</tr>")
    return f"<table><tr><th class='l'>metric</th>{head}</tr>{''.join(rows)}</table>"


def _summary_html(results: Results) -> str:
    """Categories as rows, every model's metrics as columns: the whole picture at once."""
    keys = [k for k in _metric_keys(results) if k != "n_queries"]
    head = "".join(f"<th>{_e(label)}<br>{_e(k)}</th>" for label in results for k in keys)
    rows = []
    for group in _groups(results):
        n = next((_get(results, l, group, "n_queries") for l in results if _get(results, l, group, "n_queries") is not None), None)
        cells = "".join(f"<td>{_fmt(_get(results, label, group, k))}</td>" for label in results for k in keys)
        rows.append(f"<tr><td class='l'>{_e(group)}</td><td>{_fmt(n, 'n_queries')}</td>{cells}</tr>")
    return f"<table><tr><th class='l'>category</th><th>queries</th>{head}</tr>{''.join(rows)}</table>"


def _samples_html(samples: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for s in samples:
        items = list(s.get("top_items") or s.get("top_titles") or [])[:5]
        hits = list(s.get("hits") or [])
        lis = []
        for i, title in enumerate(items):
            hit = bool(hits[i]) if i < len(hits) else None
            mark = "" if hit is None else (" <span class='hit'>✓</span>" if hit else " <span class='miss'>✗</span>")
            lis.append(f"<li>{_e(title)}{mark}</li>")
        any_hit = s.get("hit", any(hits) if hits else None)
        verdict = "-" if any_hit is None else ("<span class='hit'>hit</span>" if any_hit else "<span class='miss'>miss</span>")
        rows.append(
            f"<tr><td class='l'>{_e(s.get('query', ''))}</td><td class='l'>{_e(s.get('category', ''))}</td>"
            f"<td class='l'>{_e(s.get('cot', ''))}</td><td class='l'><ol>{''.join(lis)}</ol></td><td>{verdict}</td></tr>"
        )
    return ("<table><tr><th class='l'>query</th><th class='l'>category</th><th class='l'>generated CoT</th>"
            f"<th class='l'>top-5 items</th><th>top-5</th></tr>{''.join(rows)}</table>")


def sample_rows(qids: Sequence[str], texts: Sequence[str], categories: Sequence[str], cots: Sequence[str],
                ranked: Mapping[str, Sequence[str]], relevant: Mapping[str, Any], titles: Mapping[str, str],
                per_category: int = 2, top: int = 5) -> list[dict]:
    """The report's sample table: up to ``per_category`` queries of each category, their CoT and
    top items, each marked hit or miss."""
    out: list[dict] = []
    counts: dict[str, int] = {}
    for qid, text, cat, cot in zip(qids, texts, categories, cots):
        if counts.get(cat, 0) >= per_category:
            continue
        counts[cat] = counts.get(cat, 0) + 1
        items = list(ranked[qid])[:top]
        judged = relevant.get(qid) or ()
        out.append({"query": text, "category": cat, "cot": cot, "top_items": [titles.get(i, i) for i in items],
                    "hits": [i in judged for i in items]})
    return out


def write_report(
    out_dir: Path,
    results: Results,
    title: str,
    samples: list[dict] | None = None,
    meta: dict | None = None,
) -> dict[str, Path]:
    """Write the plots and ``index.html`` into ``out_dir``; return their paths.

    Keys of the returned dict: ``html``, ``hit_rate_by_category``, ``hit_rate_vs_k``,
    ``precision_by_category`` (the last three only when such metrics exist).
    """
    if not results:
        raise ValueError("no results to report")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    hit_keys = [f"hit_rate@{k}" for k in _ks(results, "hit_rate")]
    precision_keys = [f"precision@{k}" for k in _ks(results, "precision")]
    if hit_keys:
        paths["hit_rate_by_category"] = out_dir / PLOT_FILES["hit_rate_by_category"]
        _plot_by_category(paths["hit_rate_by_category"], results, hit_keys, "HitRate@K per category")
        paths["hit_rate_vs_k"] = out_dir / PLOT_FILES["hit_rate_vs_k"]
        _plot_hit_rate_vs_k(paths["hit_rate_vs_k"], results)
    if precision_keys:
        paths["precision_by_category"] = out_dir / PLOT_FILES["precision_by_category"]
        _plot_by_category(paths["precision_by_category"], results, precision_keys, "Precision@K per category")

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"]
    parts.append("<p>Models: " + ", ".join(f"<b>{_e(l)}</b>" for l in results) + ". "
                 "HitRate@K: share of a query's relevant items found in its top K, averaged over queries. "
                 "Precision@K: share of the top K that is relevant, averaged over queries.</p>")
    if meta:
        rows = "".join(f"<tr><th class='l'>{_e(k)}</th><td class='l'>{_e(v)}</td></tr>" for k, v in meta.items())
        parts.append(f"<h2>Run</h2><table>{rows}</table>")
    parts.append("<h2>Summary</h2>" + _summary_html(results))
    for group in _groups(results):
        heading = "Overall" if group == OVERALL else f"Category: {group}"
        parts.append(f"<h2>{_e(heading)}</h2>" + _metrics_html(results, group))
    if paths:
        parts.append("<h2>Plots</h2>")
        for key in PLOT_FILES:
            if key in paths:
                parts.append(f"<div><img src='{_e(paths[key].name)}' alt='{_e(key)}'></div>")
    if samples:
        parts.append("<h2>Sample queries</h2>" + _samples_html(samples))
    parts.append("</body></html>")
    paths["html"] = out_dir / "index.html"
    paths["html"].write_text("\n".join(parts), encoding="utf-8")
    return paths


# ------------------------------------------------------------------------- gate report
GATE_REPORT = "gate_report.html"


def _num(value: Any, signed: bool = False, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return _e(value)


def gate_rows_html(family: Mapping[str, Mapping[str, Any]], deciding: str | None) -> str:
    """One row per test of the family: effect, CI, margin, power at the margin, p, Holm p, status."""
    head = ("<tr><th>test</th><th>metric</th><th>group</th><th>n</th><th>challenger</th><th>champion</th>"
            "<th>effect</th><th>95% CI</th><th>margin</th><th>power at margin</th><th>MDE</th><th>test used</th>"
            "<th>p</th><th>Holm p</th><th>status</th><th>decided</th></tr>")
    rows = []
    for name, r in family.items():
        ci = (f"[{_num(r.get('ci_low'), True)}, {_num(r.get('ci_high'), True)}]"
              if r.get("ci_low") is not None else "-")
        status = r.get("status", "")
        if r.get("rejected"):
            status += ": REJECTED (regression)"
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in (
            _e(name), _e(r.get("metric", "")), _e(r.get("group", "")), _num(r.get("n"), digits=0),
            _num(r.get("challenger")), _num(r.get("champion")), _num(r.get("effect"), True), ci,
            _num(r.get("margin")), _num(r.get("power"), digits=2), _num(r.get("mde")), _e(r.get("test", "")),
            _num(r.get("p_value"), digits=4), _num(r.get("p_holm"), digits=4), _e(status),
            "&#9664; decided" if name == deciding else "")) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def write_gate_report(out_dir: Path, decision: Any, title: str = "Promotion gate") -> Path:
    """``gate_report.html``: the decision, its reason, and per test of the family the effect, its
    CI, the margin, the power at that margin and which test decided (docs/gate.md)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ev = dict(getattr(decision, "evidence", {}) or {})
    family = ev.get("family") or {}
    verdict = "PROMOTE" if decision.promote else "KEEP CHAMPION"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>",
             f"<h1>{_e(title)}</h1><p><b>{verdict}</b>: {_e(decision.reason)}</p>",
             f"<p>Gate metric {_e(decision.metric)}: challenger {_num(decision.challenger_value)}, champion "
             f"{_num(decision.champion_value)}. Family-wise alpha {_num(ev.get('alpha'), digits=3)} (Holm over "
             f"{_e(ev.get('family_size', 0))} tests); each test: H0 effect &ge; -tolerance, a veto needs Holm to reject "
             f"it. Power is stated at the margin (the smallest regression that matters) at the worst-case Holm "
             f"level; replay seed {_e(ev.get('replay_seed'))}.</p>"]
    expected = ev.get("expected_online_from_offline")
    if expected:
        parts.append("<p>Offline expectation of the online primary metric (judged-click HitRate under the click "
                     "model, from each model's ranking): " + ", ".join(f"{_e(k)} {_num(v)}" for k, v in expected.items())
                     + "</p>")
    parts.append("<h2>Tests</h2>" + (gate_rows_html(family, ev.get("deciding")) if family else
                                     "<p>No tests: nothing to compare (no champion).</p>"))
    parts.append("</body></html>")
    path = out_dir / GATE_REPORT
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
