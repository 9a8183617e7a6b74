"""Probe: what the CoT does to the top 10 of plain (attribute) queries.

LREM_HOME=<state dir> python experiments/probes/plain_cot_probe.py <LREM model dir>
Embeds the eval queries of each category after: the model's own greedy CoT, the teacher's CoT,
the teacher's CoT without brand names, and an empty CoT; prints HitRate@10, Precision@10 and
HitRate@100 per category, and for plain queries how many of the top 10 share the CoT's brands.
"""
import json
import re
import sys

import numpy as np
import torch

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
from components.data.io import load_knowledge
from components.experiment.baselines import ExperimentConfig, prepare_data, score
from components.model.lrem import LREMModel
from components.paths import state_path

m = LREMModel.load(sys.argv[1])
ec = ExperimentConfig()
data = prepare_data(ec, state_path("probe", "work"))
kn = load_knowledge(data.data_dir)
brand_words = {w for b in kn["brands"] for w in re.findall(r"[a-z0-9]+", b.lower())}


def drop_brands(cot: str) -> str:
    kept = [k.strip() for k in cot.split(",") if k.strip() and not set(k.split()) & brand_words]
    return ", ".join(kept)


items = m.embed_items(data.item_titles, batch_size=128)
own = m.generate_cots(data.eval_texts)
variants = {"own CoT": own, "teacher CoT": data.teacher_eval_cots,
            "teacher CoT, no brands": [drop_brands(c) for c in data.teacher_eval_cots],
            "own CoT, no brands": [drop_brands(c) for c in own],
            "empty CoT": [""] * len(own)}
cats = ["overall", "plain", "qa", "alternative", "negative", "knowledge"]
print("| CoT | " + " | ".join(f"{c} H@10 / P@10 / H@100" for c in cats) + " |")
for name, cots in variants.items():
    metrics, ranked = score(data, m.embed_queries_with_cot(data.eval_texts, cots), items, ec)
    print(f"| {name} | " + " | ".join(f"{metrics[c]['hit_rate@10']:.3f} / {metrics[c]['precision@10']:.3f} / "
                                      f"{metrics[c]['hit_rate@100']:.3f}" for c in cats) + " |", flush=True)
share = np.mean([any(w in brand_words for w in c.split()) for c, cat in zip(data.teacher_eval_cots, data.eval_categories)
                 if cat == "plain"])
print("plain eval queries whose teacher CoT names a brand:", round(float(share), 3))
print(json.dumps([(q, c) for q, c, cat in zip(data.eval_texts, own, data.eval_categories) if cat == "plain"][:10]))
