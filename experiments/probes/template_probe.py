"""Probe: which short query template gets the pre-trained backbone's knowledge out, before any cold start.

LREM_HOME=<state dir with the backbone> python experiments/probes/template_probe.py <backbone dir> "q: {query}" "q: {query}:"

For each template, the backbone (no fine-tuning) greedily continues ``template.format(query=...)``
for every eval query; a query counts when the first product type (name or synonym from
knowledge.json) in the continuation is the type of one of its relevant items. Prints the share
per category and a few continuations. The backbone was pre-trained on the world's knowledge
written as sentences ("<use>: a <type> does that.", "to <use>, use a <type>.", ...), so a
template that ends the way those sentences continue lets the cold start build on what the
backbone already knows instead of learning the query -> type map anew.
"""
import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from components.data.io import load_knowledge, load_world
from components.experiment.baselines import ExperimentConfig, prepare_data, type_phrases
from components.paths import state_path

CATEGORIES = ("qa", "alternative", "knowledge", "plain", "negative")


def first_type_in(text: str, phrases: dict[str, str]) -> str | None:
    """The product type of the earliest (then longest) type phrase in free text."""
    low = text.lower()
    found = [(low.find(p), -len(p), kind) for p, kind in phrases.items() if low.find(p) >= 0]
    return min(found)[2] if found else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("backbone")
    ap.add_argument("templates", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(a.backbone)
    lm = AutoModelForCausalLM.from_pretrained(a.backbone).eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    data = prepare_data(ExperimentConfig(), state_path("probe", "work"))
    knowledge = load_knowledge(data.data_dir)
    world = load_world(data.data_dir)
    phrases = type_phrases(knowledge)
    item_type = dict(zip(world.catalog["item_id"], world.catalog["product_type"]))
    print("| template | " + " | ".join(CATEGORIES) + " |")
    print("|---|" + "---:|" * len(CATEGORIES))
    examples = {}
    for template in a.templates:
        shares = []
        for cat in CATEGORIES:
            idx = [i for i, c in enumerate(data.eval_categories) if c == cat]
            prompts = [template.format(query=data.eval_texts[i]) for i in idx]
            enc = tok(prompts, return_tensors="pt", padding=True)
            with torch.no_grad():
                out = lm.generate(**enc, max_new_tokens=a.new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            hits = 0
            for i, text in zip(idx, texts):
                kind = first_type_in(text, phrases)
                hits += kind is not None and kind in {item_type[x] for x in data.relevant[data.eval_ids[i]]}
            shares.append(hits / max(1, len(idx)))
            if cat == "qa":
                examples[template] = list(zip(prompts[:3], texts[:3]))
        print(f"| `{template}` | " + " | ".join(f"{s:.2f}" for s in shares) + " |", flush=True)
    for template, rows in examples.items():
        for prompt, text in rows:
            print(f"{template!r}: {prompt!r} -> {text!r}")


if __name__ == "__main__":
    main()
