"""Backbone size sweep: held-out LM loss after pre-training and greedy-CoT keyword F1 after SFT.

python experiments/probes/size_sweep.py --sizes 128x2 192x3 256x4 --bb-steps 200 --sft-steps 150
Each size: pre-train on the world corpus (the pipeline's BackboneConfig but --bb-steps steps), then
SFT only (query -> teacher CoT, lambda_sft 1, no InfoNCE) for --sft-steps steps; report held-out LM
loss, teacher-forced CoT token accuracy on eval queries and greedy keyword F1 against the teacher.
"""
import argparse, json, time
from dataclasses import replace

import numpy as np
import torch

from components.config import BackboneConfig, ColdStartConfig, ModelConfig, TeacherConfig
from components.data.io import load_knowledge
from components.experiment.baselines import ExperimentConfig, keyword_f1, prepare_data
from components.model.lrem import LREMModel
from components.paths import state_path
from components.training.cold_start import train_cold_start
from components.training.pretrain import lm_loss, prepare_backbone

p = argparse.ArgumentParser()
p.add_argument("--sizes", nargs="+", default=["128x2", "192x3", "256x4"])
p.add_argument("--bb-steps", type=int, default=200)
p.add_argument("--sft-steps", type=int, default=150)
a = p.parse_args()
torch.set_num_threads(1)
ec = ExperimentConfig()
data = prepare_data(ec, state_path("sweep", "work"))
for size in a.sizes:
    h, layers = map(int, size.split("x"))
    mc = ModelConfig(hidden_size=h, intermediate_size=2 * h, num_hidden_layers=layers)
    t0 = time.time()
    bb = prepare_backbone(mc, BackboneConfig(steps=a.bb_steps), data.corpus, state_path("sweep", "backbones"),
                          track=False, show_progress=False)
    bb_s = time.time() - t0
    model = LREMModel.create(mc, backbone_dir=bb.model_dir)
    heldout = (bb.summary or {}).get("heldout_lm_loss_after") or lm_loss(model.lm, model.tokenizer, data.corpus.heldout)
    cs = ColdStartConfig(lambda_sft=1.0, lambda_infonce=0.0, learning_rate=1e-3, max_steps=a.sft_steps,
                         batch_size=64, save_every=0, resume=False)
    t1 = time.time()
    train_cold_start(model, data.triplets, cs, state_path("sweep", f"sft-{size}"), show_progress=False)
    sft_s = time.time() - t1
    gen = model.generate_cots(data.eval_texts)
    f1 = float(np.mean([keyword_f1(g, t) for g, t in zip(gen, data.teacher_eval_cots)]))
    n_params = sum(p.numel() for p in model.lm.parameters())
    print("SWEEP", json.dumps({"size": size, "params_M": round(n_params / 1e6, 2),
                               "heldout_lm_loss": round(heldout, 4),
                               "eval_keyword_f1": round(f1, 4), "distinct": round(len(set(gen)) / len(gen), 3),
                               "pretrain_s": round(bb_s), "sft_s": round(sft_s)}), flush=True)
