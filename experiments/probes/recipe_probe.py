"""Probe: backbone size/pre-training and cold-start recipe, measured on the demo world.

python experiments/probes/recipe_probe.py --hidden 256 --layers 4 --bb-steps 1500 --cs-steps 300
Prints held-out LM loss, SFT token accuracy on train queries, eval HitRate@100 per category
for the direct embedder and LREM cold start (generated / teacher / empty CoT).
"""
import argparse, json, time, logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from components.config import BackboneConfig, ColdStartConfig, ModelConfig
from components.data.io import load_knowledge, load_world
from components.experiment.baselines import ExperimentConfig, prepare_data, score
from components.paths import state_path
from components.training.cold_start import train_cold_start
from components.training.pretrain import prepare_backbone, render_world_corpus
from components.model.lrem import LREMModel

p = argparse.ArgumentParser()
p.add_argument("--hidden", type=int, default=256); p.add_argument("--layers", type=int, default=4)
p.add_argument("--bb-steps", type=int, default=600); p.add_argument("--cs-steps", type=int, default=300)
p.add_argument("--lr", type=float, default=5e-4); p.add_argument("--warmup-sft", type=float, default=0.3)
p.add_argument("--self-cot", type=float, default=0.0); p.add_argument("--models", default="direct,lrem")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--warmup-no-infonce", action="store_true")
p.add_argument("--paraphrases", action="store_true", help="pre-training corpus: knowledge said in several phrasings")
p.add_argument("--mixed", action="store_true", help="pre-training corpus: training queries with their teacher CoT")
p.add_argument("--save", default=None, help="save the trained LREM here")
p.add_argument("--rl-share", type=float, default=0.0, help="LREM cold start without this share of the train queries")
p.add_argument("--backbone-only", action="store_true")
p.add_argument("--k-repeats", type=int, default=3, help="pre-training corpus: knowledge repeats")
p.add_argument("--wrong-cot", type=float, default=0.0)
p.add_argument("--normalize", action="store_true", help="tiny tokenizer: lowercase + leading space")
p.add_argument("--replay", type=float, default=0.0, help="LREM cold start: weight of the LM replay of the pre-training text")
p.add_argument("--replay-batch", type=int, default=16)
p.add_argument("--replay-direct", action="store_true", help="the direct embedders rehearse too")
p.add_argument("--query-template", default=None, help="model.short_query_template (default: the config's)")
p.add_argument("--lambda-sft", type=float, default=0.1, help="LREM: SFT weight after the warm-up")
p.add_argument("--hard-negatives", type=int, default=0, help="attribute-contrast hard negatives per pair (every model)")
p.add_argument("--teacher-top-k", type=int, default=None, help="teacher.retriever_top_k")
p.add_argument("--item-select", default=None, choices=("top", "spread"), help="teacher.item_select")
p.add_argument("--mask-judged", action="store_true", help="mask in-batch negatives judged relevant to the query")
p.add_argument("--negative-scope", default="batch", choices=("batch", "query"))
a = p.parse_args()
torch.set_num_threads(a.threads)
logging.basicConfig(level=logging.INFO)
ec = ExperimentConfig()
if a.teacher_top_k:
    ec.teacher.retriever_top_k = a.teacher_top_k
if a.item_select:
    ec.teacher.item_select = a.item_select
data = prepare_data(ec, state_path("probe", "work"))
world = load_world(data.data_dir)
from components.model.prompts import SHORT_QUERY_TEMPLATE, THINK, THINK_END
pairs = dict((t["query"], t["cot"]) for t in data.triplets)
cot_docs = [SHORT_QUERY_TEMPLATE.format(query=q) + THINK + c + THINK_END for q, c in pairs.items()] if a.mixed else None
corpus = render_world_corpus(world.catalog.to_dict(orient="records"), world.split("train")["text"].tolist(),
                             load_knowledge(data.data_dir), paraphrases=a.paraphrases, train_cots=cot_docs,
                             knowledge_repeats=a.k_repeats)
print("CORPUS docs", len(corpus.train), flush=True)
mc = ModelConfig(hidden_size=a.hidden, intermediate_size=2 * a.hidden, num_hidden_layers=a.layers,
                 num_attention_heads=4, num_key_value_heads=2, tokenizer_normalize=a.normalize,
                 **({'short_query_template': a.query_template} if a.query_template else {}))
t0 = time.time()
bb = prepare_backbone(mc, BackboneConfig(steps=a.bb_steps), corpus, state_path("backbones"), track=False)
print("BACKBONE", bb.source, bb.cache_key, json.dumps({k: v for k, v in (bb.summary or {}).items() if k != "history"}),
      f"{time.time()-t0:.0f}s", flush=True)
hard = ("qa", "alternative", "knowledge")
if a.backbone_only:
    raise SystemExit(0)
def report(name, q, items):
    m, _ = score(data, q, items, ec)
    hr = {c: round(m[c]["hit_rate@100"], 4) for c in m}
    hardv = np.mean([m[c]["hit_rate@100"] for c in hard])
    print("RESULT", name, json.dumps(hr), "hard_mean", round(float(hardv), 4), flush=True)
    print("RESULT@10", name, json.dumps({c: round(m[c]["hit_rate@10"], 4) for c in m}),
          "P@10", json.dumps({c: round(m[c]["precision@10"], 4) for c in m}), flush=True)
for which in a.models.split(","):
    reasoning = which == "lrem"
    model = LREMModel.create(replace(mc, pooling="mean" if which == "direct_mean" else "emb_token"),
                             backbone_dir=bb.model_dir)
    cs = ColdStartConfig(reasoning=reasoning, lambda_sft=a.lambda_sft if reasoning else 0.0, learning_rate=a.lr,
                         max_steps=a.cs_steps, batch_size=64, save_every=0, resume=False,
                         sft_warmup_ratio=a.warmup_sft if reasoning else 0.0, self_cot_ratio=a.self_cot,
                         sft_warmup_infonce=not a.warmup_no_infonce, wrong_cot_ratio=a.wrong_cot if reasoning else 0.0,
                         lm_replay_weight=a.replay if reasoning or a.replay_direct else 0.0, lm_replay_batch=a.replay_batch,
                         hard_negatives=a.hard_negatives, hard_negative_scope=a.negative_scope,
                         mask_judged_negatives=a.mask_judged)
    t0 = time.time()
    from components.training.grpo import split_for_rl
    rows = split_for_rl(data.triplets, a.rl_share)[0] if reasoning else data.triplets
    summ = train_cold_start(model, rows, cs, state_path("probe", which), show_progress=False,
                            replay_docs=corpus.train if cs.lm_replay_weight else None,
                            catalog=world.catalog.to_dict(orient="records"), relevant=world.relevant())
    print("TRAIN", which, f"{time.time()-t0:.0f}s", json.dumps(summ["last"]), flush=True)
    if a.save and reasoning:
        model.save(a.save)
    items = model.embed_items(data.item_titles, batch_size=128)
    if not reasoning:
        report("direct_mean" if which == "direct_mean" else "direct_last",
               model.embed_queries(data.eval_texts, reasoning=False)[0], items)
        continue
    emb, cots = model.embed_queries(data.eval_texts, reasoning=True)
    report("lrem_generated", emb, items)
    print("COTS", json.dumps(list(zip(data.eval_texts[:8], cots[:8]))), "distinct", len(set(cots)) / len(cots))
    teacher = {t["query"]: t["cot"] for t in data.triplets}
    from components.teacher import generate_triplets  # noqa
    from components.teacher import Teacher
    from components.config import TeacherConfig
    tch = Teacher(load_knowledge(data.data_dir), TeacherConfig())
    tcots = [tch.cot(q, c)[0] for q, c in zip(data.eval_texts, data.eval_categories)]
    report("lrem_teacher_cot", model.embed_queries_with_cot(data.eval_texts, tcots), items)
    report("lrem_empty", model.embed_queries(data.eval_texts, reasoning=False)[0], items)
    # train-query token accuracy of greedy CoT vs teacher
    tq = list(dict.fromkeys(t["query"] for t in data.triplets))[:300]
    gen = model.generate_cots(tq)
    acc = np.mean([len(set(g.replace(",", " ").split()) & set(teacher[q].replace(",", " ").split())) /
                   max(1, len(set(teacher[q].replace(",", " ").split()))) for q, g in zip(tq, gen)])
    print("TRAIN_KEYWORD_RECALL", round(float(acc), 4), flush=True)
