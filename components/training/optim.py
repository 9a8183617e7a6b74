"""The one optimiser set-up of every trainer here (backbone pre-training, cold start, MiniLM).

AdamW without weight decay on biases and norms, and a cosine schedule with linear warm-up.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def build_optimizer(model: nn.Module, learning_rate: float, weight_decay: float, warmup_ratio: float,
                    total_steps: int):
    from transformers import get_cosine_schedule_with_warmup

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler
