"""Probe: candidate router features beyond the shipped ones, measured on trained models (cached).

    OMP_NUM_THREADS=2 .venv/bin/python experiments/probes/router_features.py \
        --models <run>/routing/model,... --data data --out <dir>

For each model and each of the splits dev and eval: what ``components.routing.step.measure_queries``
measures (direct embedding, the shipped scalar features, HitRate@100 direct and after the
model's own greedy CoT) plus candidate features from the same direct forward or from the
training queries: the query prompt's surprisal under the model (sum, mean and max NLL of its
tokens: the model was trained on the training phrasings; a phrasing it never saw should
surprise it) and the direct embedding's highest cosine to a training query's direct embedding.
Saved per model as ``<dir>/<i>.npz`` for the analysis (docs/serving-cost.md, 3.6); the phrasing
labels of the data are kept for the analysis of dev only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def prompt_surprisal(model, texts, batch_size: int = 64) -> np.ndarray:
    """(sum, mean, max) NLL of each query prompt's tokens after the first, under the model."""
    import torch

    from components.model.lrem import _positions

    head = model.lm.get_output_embeddings()
    out = []
    with model._eval_mode():
        for start in range(0, len(texts), batch_size):
            part = list(texts[start:start + batch_size])
            ids, mask = model._left_pad(model.query_prompts_ids(part))
            ids, mask = ids.to(model.device), mask.to(model.device)
            hidden = model.decoder(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                                   use_cache=False).last_hidden_state
            logp = torch.log_softmax(head(hidden[:, :-1]).float(), dim=-1)
            nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
            valid = (mask[:, :-1] * mask[:, 1:]).bool()
            nll = torch.where(valid, nll, torch.zeros_like(nll))
            n = valid.sum(-1).clamp(min=1)
            out.append(torch.stack([nll.sum(-1), nll.sum(-1) / n,
                                    torch.where(valid, nll, torch.full_like(nll, -1.0)).max(-1).values], 1).cpu())
    return torch.cat(out).numpy()


def main() -> None:
    from components.config import load_config
    from components.data.io import load_world
    from components.model.lrem import LREMModel
    from components.routing.step import measure_queries

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cfg = load_config(args.config)
    world = load_world(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = world.split("train")
    for i, path in enumerate(args.models.split(",")):
        t0 = time.perf_counter()
        model = LREMModel.load(path)
        model.router = None
        train_direct, _ = model.direct_with_features(train["text"].tolist(), batch_size=cfg.eval.batch_size)
        arrays = {}
        for split in ("dev", "eval"):
            q = world.split(split).reset_index(drop=True)
            m = measure_queries(model, world, q, cfg.routing.hit_k, cfg.eval.batch_size)
            keep = q["query_id"].astype(str).isin(m["qids"]).to_numpy()
            q = q[keep].reset_index(drop=True)
            assert q["query_id"].astype(str).tolist() == m["qids"]
            surprisal = prompt_surprisal(model, q["text"].tolist(), cfg.eval.batch_size)
            knn = (m["direct"] @ train_direct.T).max(1)
            for key in ("direct", "scalars", "hit_direct", "hit_reason", "category"):
                arrays[f"{split}_{key}"] = np.asarray(m[key])
            arrays[f"{split}_surprisal"] = surprisal
            arrays[f"{split}_knn_max"] = knn
            for col in ("heldout_phrasing", "typo", "pattern", "wording", "intent"):
                if col in q:
                    arrays[f"{split}_{col}"] = q[col].astype(str).to_numpy()
        np.savez(out / f"{i}.npz", **arrays)
        (out / f"{i}.json").write_text(json.dumps({"model": path, "seconds": round(time.perf_counter() - t0, 1)}))
        print(f"{path}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
