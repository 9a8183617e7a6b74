"""Probe: an LREM model's qa eval queries split by whether a training query has their use.

LREM_HOME=<state dir> python experiments/probes/qa_split.py <model dir>
Prints HitRate@100 for qa eval queries whose use (from knowledge.json) some training query
names and for the rest, the worst queries with their greedy CoT, and what the model's LM says
when asked about each unseen use in the knowledge sentences' own forms ("to <use>, use",
"<use>:"): whether the model knows the fact its CoT would need.
"""
import sys, json, numpy as np, torch
torch.set_num_threads(2)
from components.experiment.baselines import ExperimentConfig, prepare_data, score, type_phrases, first_named_type
from components.paths import state_path
from components.data.io import load_knowledge, load_world
from components.model.lrem import LREMModel
m = LREMModel.load(sys.argv[1])
ec = ExperimentConfig(); data = prepare_data(ec, state_path("probe", "work"))
kn = load_knowledge(data.data_dir); world = load_world(data.data_dir)
train_q = world.split("train")["text"].tolist()
uses = {u["use"]: [t.lower() for t in u["product_types"]] for u in kn["uses"]}
seen = {u for u in uses if any(u in q for q in train_q)}
idx = [i for i, c in enumerate(data.eval_categories) if c == "qa"]
qs = [data.eval_texts[i] for i in idx]
cots = m.generate_cots(qs)
items = m.embed_items(data.item_titles); qe = m.embed_queries_with_cot(qs, cots)
from components.evaluation.search import exact_top_k
top = exact_top_k(qe, items, 100)
rows = []
for j, i in enumerate(idx):
    rel = data.relevant[data.eval_ids[i]]; got = set(data.item_ids[top[j]].tolist())
    hr = len(rel & got) / min(len(rel), 100)
    u = max([u for u in uses if u in qs[j]], key=len, default=None)
    rows.append((hr, u in seen, qs[j], cots[j], uses.get(u)))
hrs = np.array([r[0] for r in rows]); sn = np.array([r[1] for r in rows])
print("qa n", len(rows), "mean", hrs.mean(), "seen", sn.sum(), hrs[sn].mean(), "unseen", (~sn).sum(), hrs[~sn].mean())
for r in sorted(rows)[:20]: print(f"{r[0]:.2f} seen={r[1]} | {r[2]} -> {r[3]} | want {r[4]}")
# can the LM state the fact in its own forms?
unseen = [u for u in uses if u not in seen]
tok = m.tokenizer
def comp(prompt, n=8):
    ids = torch.tensor([tok(prompt)["input_ids"]])
    out = m.lm.generate(ids, max_new_tokens=n, do_sample=False)
    return tok.decode(out[0, ids.shape[1]:])
for u in unseen[:15]:
    print("UNSEEN", u, uses[u], "| to u, use ->", comp(f"to {u}, use"), "| u: ->", comp(f"{u}:"))
