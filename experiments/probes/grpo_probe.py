"""Probe: GRPO on a saved cold-start model; eval HitRate@100 per category before and after.

python experiments/probes/grpo_probe.py MODEL_DIR --steps 60 --lr 2e-5
"""
import argparse, dataclasses, json, logging, os, time

import numpy as np
import torch

from components.config import HARD_SPLITS, GRPOStageConfig
from components.experiment.baselines import HARD_CATEGORIES, ExperimentConfig, keyword_f1, per_query_block, prepare_data, score
from components.model.lrem import LREMModel
from components.paths import state_path
from components.training.grpo import train_grpo

p = argparse.ArgumentParser()
p.add_argument("model_dir"); p.add_argument("--steps", type=int, default=60); p.add_argument("--lr", type=float, default=2e-5)
p.add_argument("--lambda-infonce", type=float, default=0.1); p.add_argument("--temperature", type=float, default=1.0)
p.add_argument("--rl-share", type=float, default=0.0)
p.add_argument("--pool", type=int, default=256, help="rank reward pool (0: the whole catalog)")
p.add_argument("--save", default=None, help="save the GRPO model here")
p.add_argument("--replay", type=float, default=0.0, help="weight of the LM rehearsal of the backbone's text")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--negatives", type=int, default=64, help="random catalog negatives of the RL InfoNCE term")
p.add_argument("--positive", default="first", choices=("first", "random"), help="the RL InfoNCE positive")
p.add_argument("--hard-share", type=float, default=1.0, help="grpo.hard_prompt_share")
p.add_argument("--no-mask-judged", action="store_true", help="judged-relevant items stay InfoNCE negatives")
p.add_argument("--scale-rewards", default="group", choices=("group", "batch", "none"))
p.add_argument("--hard-split", default="intent", choices=HARD_SPLITS, help="world.hard_split of the data")
p.add_argument("--world-seed", type=int, default=None, help="world.seed of the data (default: the experiment's)")
p.add_argument("--batch", type=int, default=64, help="completions a step (grpo.per_device_batch_size)")
p.add_argument("--generations", type=int, default=8, help="G completions a query")
p.add_argument("--per-query-out", default=None,
               help="write before/after per-query HitRate@100 here (as lrem_cs/lrem_rl, for pool_runs.py)")
p.add_argument("--iterations", type=int, default=1, help="policy updates per generation batch (grpo.num_iterations)")
a = p.parse_args()
torch.set_num_threads(1)
ec = ExperimentConfig()
ec.world = dataclasses.replace(ec.world, hard_split=a.hard_split,
                               **({} if a.world_seed is None else {"seed": a.world_seed}))
data = prepare_data(ec, state_path("grpo-probe", "work"))
model = LREMModel.load(a.model_dir)
hard = HARD_CATEGORIES

RANKED = {}


def report(name):
    items = model.embed_items(data.item_titles, batch_size=128)
    emb, cots = model.embed_queries(data.eval_texts, reasoning=True)
    m, ranked = score(data, emb, items, ec)
    RANKED[name] = ranked
    hr = {c: round(m[c]["hit_rate@100"], 4) for c in m}
    f1 = np.mean([keyword_f1(g, t) for g, t in zip(cots, data.teacher_eval_cots)])
    print("RESULT", name, json.dumps(hr), "hard_mean", round(float(np.mean([m[c]["hit_rate@100"] for c in hard])), 4),
          "teacher_f1", round(float(f1), 4), "distinct", round(len(set(cots)) / len(cots), 3),
          "cot_tokens", round(float(np.mean([len(model.cot_ids(c)) for c in cots])), 2), flush=True)
    # the same model given the teacher's CoT: separates the embedding's drift from the CoT's
    mt, _ = score(data, model.embed_queries_with_cot(data.eval_texts, data.teacher_eval_cots), items, ec)
    print("RESULT", name + "_teacher_cot", json.dumps({c: round(mt[c]["hit_rate@100"], 4) for c in mt}), "hard_mean",
          round(float(np.mean([mt[c]["hit_rate@100"] for c in hard])), 4), flush=True)

report("before")
titles = dict(zip(data.item_ids.tolist(), data.item_titles))
t0 = time.time()
from components.training.grpo import split_for_rl
res = train_grpo(model, split_for_rl(data.triplets, a.rl_share)[1], titles, GRPOStageConfig(max_steps=a.steps, learning_rate=a.lr,
                 lambda_infonce=a.lambda_infonce, temperature=a.temperature,
                 reward_pool_size=a.pool, lm_replay_weight=a.replay, seed=a.seed,
                 infonce_negatives=a.negatives, infonce_positive=a.positive,
                 scale_rewards=a.scale_rewards, mask_judged_negatives=not a.no_mask_judged,
                 hard_prompt_share=a.hard_share, per_device_batch_size=a.batch,
                 num_generations=a.generations, num_iterations=a.iterations), state_path("grpo-probe", f"out-{os.getpid()}"),
                 relevant=data.relevant, show_progress=False, replay_docs=data.corpus.train)
print("GRPO", f"{time.time()-t0:.0f}s", json.dumps(res["first_rewards"]), json.dumps(res["last_rewards"]), flush=True)
report("after")
from components.evaluation.bootstrap import compare_by_group
diff = compare_by_group(RANKED["after"], RANKED["before"], data.relevant, data.categories, 100,
                        groups={"hard": hard}, n_resamples=2000, seed=0)
print("AFTER_MINUS_BEFORE", json.dumps({g: {k: round(r[k], 4) for k in ("diff", "ci_low", "ci_high")}
                                        for g, r in diff.items()}), flush=True)
if a.per_query_out:
    with open(a.per_query_out, "w") as fh:
        json.dump({"probe": vars(a), "per_query": per_query_block(
            {"lrem_cs": RANKED["before"], "lrem_rl": RANKED["after"]}, data, 100)}, fh)
if a.save:
    model.save(a.save)
