"""The experiment's markdown report (``<output_name>.md``), rendered from its JSON payload."""

from __future__ import annotations

from typing import Any

from components.config import CATEGORIES
from components.experiment.data import INTENT_NEW, INTENT_SEEN


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _secs(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _categories_present(payload: dict) -> list[str]:
    seen: list[str] = []
    for rec in payload["models"].values():
        for group in rec["metrics"]:
            if group != "overall" and group not in seen:
                seen.append(group)
    return [c for c in CATEGORIES if c in seen] + [c for c in seen if c not in CATEGORIES]


def markdown_tables(payload: dict) -> str:
    """The two result tables: HitRate@100 per category, and all metrics overall."""
    cfg = payload["config"]
    top_k = max(cfg["hit_ks"])
    hr = f"hit_rate@{top_k}"
    models = payload["models"]
    cats = _categories_present(payload)
    first = next(iter(models.values()))["metrics"]
    n_of = {g: int(first.get(g, {}).get("n_queries", 0)) for g in ["overall", *cats]}
    lines = [f"HitRate@{top_k}, overall and per query category (eval queries per column in brackets):", "",
             "| model | " + " | ".join(f"{g} ({n_of[g]})" for g in ["overall", *cats]) + " |",
             "|---|" + "---:|" * (1 + len(cats))]
    for rec in models.values():
        m = rec["metrics"]
        lines.append(f"| {rec['label']} | " + " | ".join(_fmt(m.get(g, {}).get(hr)) for g in ["overall", *cats]) + " |")
    keys = [f"hit_rate@{k}" for k in sorted(cfg["hit_ks"])] + [f"precision@{cfg['precision_k']}"]
    names = [f"HitRate@{k}" for k in sorted(cfg["hit_ks"])] + [f"Precision@{cfg['precision_k']}"]
    lines += ["", "Overall:", "", "| model | " + " | ".join(names) + " |", "|---|" + "---:|" * len(keys)]
    for rec in models.values():
        m = rec["metrics"].get("overall", {})
        lines.append(f"| {rec['label']} | " + " | ".join(_fmt(m.get(k)) for k in keys) + " |")
    return "\n".join(lines)


def _diff_table(title: str, rows: dict) -> list[str]:
    """One paired-difference table (hard, overall, then the other groups), with a blank line after."""
    lines = [f"{title}:", "", "| group | queries | LREM | baseline | diff | 95% CI | relative |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for group in ["hard", "overall", *[g for g in rows if g not in ("hard", "overall")]]:
        r = rows.get(group)
        if r:
            lines.append(f"| {group} | {r['n']} | {r['a']:.4f} | {r['b']:.4f} | {r['diff']:+.4f} | "
                         f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['relative']:+.2%} |")
    return lines + [""]


def comparison_markdown(payload: dict) -> list[str]:
    """The CI table: LREM (CS + RL) minus the best same-backbone direct embedder, per category."""
    comp = payload.get("comparison") or {}
    best = comp.get("best_direct")
    if not best:
        if not comp.get("lrem_rl_vs_lrem_cs"):
            return []
        # only the LREM rows were run: what RL adds over the cold start, no verdict on the target
        return ["", "## What GRPO adds to the LREM cold start", "",
                f"Difference in HitRate@{comp['k']} with a paired-bootstrap 95% CI over eval queries; hard = "
                f"{', '.join(comp['hard_categories'])} together. No direct embedder in this run, so no verdict "
                "on the paper's target.", "", *_diff_table("LREM (CS + RL) minus cold start",
                                                            comp["lrem_rl_vs_lrem_cs"])]
    k = comp["k"]
    lines = ["", f"## LREM against the best direct embedder on the same backbone ({comp['best_direct_label']})", "",
             f"Difference in HitRate@{k} with a paired-bootstrap 95% CI over eval queries; hard = "
             f"{', '.join(comp['hard_categories'])} together. The paper's target: CS + RL at least "
             f"+{comp['target_relative']:.2%} relative over the best direct embedder."
             + (f" '{INTENT_SEEN}' / '{INTENT_NEW}': the hard queries whose use (qa), fact (knowledge) or premium "
                "brand (alternative) some training query names / no training query names, so only what the "
                "backbone learned in pre-training can answer them." if any(
                    INTENT_NEW in (comp.get(key) or {}) for key in comp if key.endswith(best)) else ""), ""]
    for key, title in ((f"lrem_rl_vs_{best}", "LREM (CS + RL) minus direct"),
                       (f"lrem_cs_vs_{best}", "LREM cold start minus direct"),
                       ("lrem_rl_vs_lrem_cs", "LREM (CS + RL) minus cold start")):
        rows = comp.get(key)
        if rows:
            lines += _diff_table(title, rows)
    verdict = "met" if comp.get("target_met") else "NOT met"
    if not comp.get("target_met") and comp.get("target_reachable") is False:
        verdict += (f" (and unreachable here: the type oracle below is only {comp['ceiling_relative']:+.2%} "
                    "over the best direct embedder)")
    rl_row = (comp.get("lrem_rl_vs_lrem_cs") or {}).get("hard")
    if rl_row is None:
        rl = "is not measured against the cold start"
    elif rl_row["ci_low"] > 0:
        rl = "improves on the cold start (95% CI above 0)"
    elif rl_row["diff"] > 0:
        rl = (f"is above the cold start by {rl_row['diff']:+.4f}, but the 95% CI includes 0: "
              "no measurable improvement in this run (one world's eval queries are too few for a gain "
              "this small; pool the runs of several worlds with experiments/probes/pool_runs.py, "
              "docs/experiments.md \"Across worlds\")")
    else:
        rl = "does NOT improve on the cold start"
    lines.append(f"Target (+{comp['target_relative']:.2%} relative on the hard categories): **{verdict}**. "
                 f"On the hard categories GRPO {rl}.")
    oracle = comp.get("type_oracle")
    if oracle:
        ceiling = comp.get("ceiling_relative")
        lines += ["", f"Ceiling: ranking every item of a query's relevant product type(s) first, in random order "
                  f"(the demo world picks a query's relevant items at random within those types, so no model ranks "
                  f"them better on average), gives HitRate@{k} " + ", ".join(
                      f"{g} {oracle[g]:.4f}" for g in ["hard", "overall", *[c for c in oracle if c not in ("hard", "overall")]])
                  + (f": {ceiling:+.2%} relative over the best direct embedder on the hard categories, the most any "
                     "model can gain over it here." if ceiling is not None else ".")]
    return lines


def write_markdown(payload: dict) -> str:
    cfg = payload["config"]
    data = payload["data"]
    lines = [
        "# LREM vs direct-embedding baselines",
        "",
        f"Generated by `{payload['command']}` on {payload['created']} (git {payload['git_commit'][:12]}). "
        f"Total wall time {payload['wall_seconds'] / 60:.1f} min on {payload['host']['cpus']} CPU cores "
        f"(torch threads {payload['host']['torch_threads']} per process, "
        f"{payload['host'].get('workers', 1)} training process(es) at once, no GPU).",
        "",
        f"Data: {data['source']}; {data['n_items']} catalog items, {data['n_train_queries']} train queries -> "
        f"{data['n_triplets']} Query-CoT-Item triplets (the training pairs of every trained model), "
        f"{data['n_eval_queries']} of {data['n_eval_queries_total']} eval queries scored against the FULL catalog "
        "by exact cosine top-k (numpy, as a FLAT index). HitRate@K: share of a query's relevant items in its top K; "
        "Precision@K: share of the top K that is relevant; both averaged over queries.",
        "",
        markdown_tables(payload),
        "",
        "## Budget",
        "",
        f"Every trained model: {cfg['steps']} optimizer steps x batch {cfg['batch_size']} "
        f"({cfg['steps'] * cfg['batch_size']} pairs, {cfg['steps'] * cfg['batch_size'] / max(1, data['n_triplets']):.2f} "
        f"epochs of the triplets"
        + (f"; the teacher keeps a query's items in turns over their product types, retriever top "
           f"{cfg['teacher'].get('retriever_top_k')}" if (cfg.get("teacher") or {}).get("item_select") == "spread" else "")
        + f"), InfoNCE with in-batch negatives at temperature {cfg['temperature']}"
        + (" (items judged relevant to the query masked as its negatives"
           + (", in GRPO's InfoNCE term too" if cfg.get("grpo_mask_judged_negatives") else "") + ")"
           if cfg.get("mask_judged_negatives") else "")
        + (f" plus {cfg['hard_negatives']} hard negative(s) per pair whose query names a field of its item (an item "
           "of the same product type differing in that brand or attribute value, never a judged-relevant one)"
           if cfg.get("hard_negatives") else "")
        + ", "
        f"AdamW, cosine schedule with {cfg['warmup_ratio']:.0%} warmup, grad clip {cfg['max_grad_norm']}, seed {cfg['seed']}. "
        f"Learning rate {cfg['lr_minilm']:g} for MiniLM (pretrained"
        + (", fine-tuned under bf16 autocast where the CPU has native bf16" if cfg.get("minilm_bf16") else "")
        + f"), {cfg['lr_llm']:g} for the tiny LLM backbone (fp32). "
        f"LREM cold start: SFT alone for the first {cfg['sft_warmup_ratio']:.0%} of the steps, "
        f"then {cfg['lambda_sft']} x SFT (teacher CoT) + {cfg['lambda_infonce']} x InfoNCE, {cfg['self_cot_ratio']:.0%} "
        f"of those steps with InfoNCE after the model's own greedy CoT"
        + (f", {cfg.get('wrong_cot_ratio', 0):.0%} of the InfoNCE examples after another query's CoT"
           if cfg.get("wrong_cot_ratio") else "")
        + (f"; {cfg.get('rl_query_share', 0):.0%} of the training queries set aside for GRPO (the cold start does "
           "not see them)" if cfg.get("rl_query_share") else "")
        + f"; then {cfg['grpo_steps']} GRPO steps ("
        + (f"prompts: the {cfg['grpo_hard_prompt_share']:.0%} of the training queries whose greedy CoT the cold start "
           "ranks worst; " if cfg.get("grpo_hard_prompt_share", 1.0) < 1.0 else "")
        + f"lr "
        f"{cfg['grpo_lr']:g}, sampling temperature {cfg.get('grpo_temperature', 1.0):g}, rank reward against "
        + ("the whole catalog" if not cfg.get("grpo_reward_pool", 256) else f"{cfg.get('grpo_reward_pool', 256)} "
           "catalog items")
        + f"). The CoT is generated greedily at evaluation, at most {cfg['max_cot_tokens']} tokens. "
        "The ablation rows are the final (CS + RL) model evaluated with another CoT. Every tiny-LLM row starts from "
        "the same pre-trained backbone"
        + (f" and, in every fine-tuning step (direct embedders and LREM cold start alike), adds "
           f"{cfg.get('lm_replay_weight')} x the causal-LM loss on {cfg.get('lm_replay_batch', 16)} packed sequences "
           "of the backbone's pre-training text (rehearsal, so fine-tuning keeps what the backbone knows)"
           if cfg.get("lm_replay_weight") else "")
        + (f"; GRPO rehearses the same text with weight {cfg.get('grpo_lm_replay_weight')}"
           if cfg.get("grpo_lm_replay_weight") else "")
        + (f"; the GRPO InfoNCE term's positive is a {cfg.get('grpo_infonce_positive', 'first')} teacher-kept item "
           "of the query" if cfg.get("grpo_infonce_positive") else "")
        + (f"; GRPO advantages scaled by reward std: {cfg['grpo_scale_rewards']}" if cfg.get("grpo_scale_rewards") else "")
        + ".",
        "",
        "| model | params | steps | batch | lr | train s | eval s | final train InfoNCE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rec in payload["models"].values():
        shared = " (shared)" if rec.get("trained_with") else ""
        lr = "-" if rec["learning_rate"] is None else f"{rec['learning_rate']:g}"
        lines.append(f"| {rec['label']} | {rec['params'] / 1e6:.2f}M | {rec['steps']} | "
                     f"{rec['batch_size'] if rec['steps'] else '-'} | {lr} | {_secs(rec['train_seconds'])}{shared} | "
                     f"{_secs(rec['eval_seconds'])} | {_fmt(rec.get('final_train_infonce'))} |")
    lines += comparison_markdown(payload)
    if payload.get("phrasing"):  # held-out phrasing apart (components/evaluation/phrasing.py)
        from components.evaluation.phrasing import render_markdown

        lines += ["", render_markdown(payload["phrasing"], f"HitRate@{payload['phrasing'].get('k')} by phrasing, "
                                      "every row; LREM minus the best direct embedder")]
    for model_id in ("lrem_cs", "lrem_rl"):
        rec = payload["models"].get(model_id)
        if not rec or not rec.get("cot"):
            continue
        cot = rec["cot"]
        fit = rec.get("train_cot_fit")
        fit_text = "" if not fit else (
            f"On {fit['n_queries']} training queries: teacher-forced token accuracy on the CoT "
            f"{fit['token_accuracy']:.1%}, greedy CoT keyword F1 against the teacher {fit['greedy_keyword_f1']:.3f}, "
            f"exact match {fit['greedy_exact']:.1%}. ")
        per_cat = ", ".join(f"{c} {v:.2f}" for c, v in cot.get("teacher_keyword_f1_by_category", {}).items())
        types_text = "" if "type_accuracy" not in cot else (
            f" The first product type the CoT names is a relevant one for {cot['type_accuracy']:.1%} of the eval "
            "queries (" + ", ".join(f"{c} {v:.0%}" for c, v in cot["type_accuracy_by_category"].items()) + ").")
        lines += ["", f"## {rec['label']}: generated CoT", "",
                  f"{fit_text}On the eval queries: mean {cot['mean_tokens']:.1f} tokens ({cot['mean_words']:.1f} "
                  f"words); {cot['empty_share']:.1%} empty; {cot['distinct_share']:.1%} distinct; keyword F1 against "
                  f"the teacher's CoT {cot.get('teacher_keyword_f1', 0):.3f} ({per_cat}).{types_text} Examples (first eval "
                  "query of each category):", "",
                  "| category | query | generated CoT | teacher CoT |", "|---|---|---|---|"]
        for ex in cot["examples"]:
            lines.append(f"| {ex['category']} | {_cell(ex['query'])} | {_cell(ex['cot']) or '(empty)'} | "
                         f"{_cell(ex.get('teacher', '')) or '(empty)'} |")
        if model_id == "lrem_rl" and rec.get("grpo_last"):
            first = ", ".join(f"{k.replace('grpo/', '')} {v:.3f}" for k, v in rec.get("grpo_first", {}).items()
                              if v is not None)
            last = ", ".join(f"{k.replace('grpo/', '')} {v:.3f}" for k, v in rec["grpo_last"].items() if v is not None)
            lines += ["", f"GRPO: {rec.get('grpo_steps')} steps in {rec.get('grpo_seconds', 0):.0f} s. "
                      f"First step: {first}. Last step: {last}."]
    lines += ["", "## Notes", "",
              "- Scale is tiny and CPU-only: the LLM here is a small Qwen2 pre-trained here on text rendered from the demo world "
              "(catalog, training queries, the world's knowledge as sentences), not a pretrained multi-billion-parameter model, so these numbers say nothing about the paper's scale. "
              f"The MiniLM baseline has {payload['models'].get('minilm_zeroshot', {}).get('params', 0) / 1e6:.1f}M "
              "pretrained parameters."
              if "minilm_zeroshot" in payload["models"] else
              "- Scale is tiny and CPU-only: the LLM here is a small Qwen2 pre-trained on text rendered from the demo world.",
              "- Zero-shot MiniLM is not trained (0 steps). Ablation rows reuse the LREM model's training.",
              "- final train InfoNCE: mean over the last logging window of training (for LREM a mix of teacher-forced "
              "and own-CoT batches), not comparable across rows.",
              "- eval s: embedding the full catalog and the eval queries (with CoT generation where used) plus the "
              "exact search and scoring.",
              "- Plots and an HTML report are in the MLflow parent run's `report/` artifacts "
              f"(experiment `{cfg['mlflow_experiment']}`).",
              "", "Reproduce:", "", "```bash", payload["command"], "```", ""]
    return "\n".join(lines)
