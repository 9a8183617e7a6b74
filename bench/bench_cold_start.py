"""Cold-start training speed: ``train_cold_start`` against a bare PyTorch loop on the same work.

TARGET: steps/s of train_cold_start / steps/s of the bare loop >= 0.9.

Both start from the same model init (deep copies of one tiny demo model) and see the same
batches of the demo world's teacher triplets: the bare loop's batches are collated up front
by ``ColdStartCollator`` from a DataLoader seeded as train_cold_start seeds its own (same
shuffle), and already on the device. The bare step is the same loss and update:
``query_forward`` (SFT on the CoT) + ``encode`` (items) + ``info_nce`` with the item keys,
``lambda_sft * sft + lambda_infonce * nce``, backward, ``clip_grad_norm_``, AdamW with the
trainer's decay / no-decay groups, the same cosine-with-warmup schedule, ``zero_grad``.
On a GPU it mirrors the trainer's defaults too (bf16 autocast, gradient checkpointing).

Interleaving: the bare loop runs INSIDE the train_cold_start run. A global optimizer
step-post hook fires after each of the trainer's optimizer steps; there it takes a
timestamp, runs bare step k on its own model copy, and takes another. Trainer step k+1 is
the time between the end of hook k and the start of hook k+1 (scheduler, zero_grad, the
trainer's per-step float() syncs and logging, the collation of the next batch, forward,
backward, clip, optimizer step), minus nothing. So the two loops alternate step by step, and
load from other processes hits both alike. The first ``--warmup-steps`` steps of each are
not timed; the trainer's setup (Accelerator, DataLoader, optimizer) and its final model save
fall outside the hooks and are reported apart. The ratio is the median over steps of the
paired per-step ratios; the ratio of the summed step times is printed too. As a check that
the baseline computes the same thing, the losses of both are compared at step 1 and over
the logged window.
Peak memory: each of the two trained for ``--memory-steps`` steps in its own subprocess.

    .venv/bin/python bench/bench_cold_start.py [--steps 40] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import torch  # noqa: E402

NAME = "cold_start"
TARGET = 0.9


def demo_model_and_triplets():
    world, triplets = C.load_demo()
    model, key = C.get_model(C.pipeline_corpus(world, triplets), "pipeline")
    return model, key, triplets


def make_cfg(args, steps: int):
    from components.config import ColdStartConfig

    return ColdStartConfig(max_steps=steps, batch_size=args.batch_size, log_every=10**9, save_every=0,
                           resume=False)


def collate_batches(model, triplets, cfg, n: int, device) -> list[dict]:
    """The first ``n`` batches train_cold_start sees (same seeded shuffle), collated, on ``device``."""
    from torch.utils.data import DataLoader

    from components.training.cold_start import ColdStartCollator, TripletDataset

    dataset = TripletDataset(triplets, cfg.hard_negatives, seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=len(dataset) > cfg.batch_size,
                        collate_fn=ColdStartCollator(model, cfg.reasoning), generator=gen)
    out: list[dict] = []
    while len(out) < n:
        gen.manual_seed(cfg.seed + len(out) // len(loader))
        for b in loader:
            out.append({"query": b["query"].to(device), "item_ids": b["item_ids"].to(device),
                        "item_mask": b["item_mask"].to(device), "item_keys": b["item_keys"]})
            if len(out) == n:
                break
    return out


class BareLoop:
    """The irreducible training step: same loss, optimizer, schedule; batches pre-collated."""

    def __init__(self, model, cfg, total_steps: int, device):
        from transformers import get_cosine_schedule_with_warmup

        self.model, self.cfg, self.device = model, cfg, device
        gpu = device.type == "cuda"
        self.bf16 = gpu and cfg.bf16 in ("auto", "true")
        if gpu and cfg.gradient_checkpointing in ("auto", "true"):
            model.lm.gradient_checkpointing_enable()
        decay, no_decay = [], []
        for name, param in model.named_parameters():
            (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
        self.params = decay + no_decay
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, math.ceil(cfg.warmup_ratio * total_steps),
                                                         total_steps)
        model.train()

    def step(self, batch) -> torch.Tensor:
        from components.training.losses import info_nce

        cfg, model = self.cfg, self.model
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            q_emb, sft = model.query_forward(batch["query"])
            i_emb = model.encode(batch["item_ids"], batch["item_mask"])
            nce = info_nce(q_emb, i_emb, cfg.temperature, item_keys=batch["item_keys"])
            loss = cfg.lambda_sft * sft + cfg.lambda_infonce * nce
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def run_trainer(model, triplets, cfg, out_dir, log=None):
    from components.training.cold_start import train_cold_start

    return train_cold_start(model, triplets, cfg, out_dir, log_metrics=log, show_progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--warmup-steps", type=int, default=2, help="first steps of each loop not timed")
    ap.add_argument("--memory-steps", type=int, default=4, help="steps trained in each memory subprocess")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch default); see README")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also write a cProfile of a train_cold_start run")
    ap.add_argument("--memory-variant", help=argparse.SUPPRESS)
    ap.add_argument("--memory-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = C.pick_device()

    if args.memory_variant:
        def setup_trainer():
            _, key, triplets = demo_model_and_triplets()
            model = C.load_model(key, device)
            cfg = make_cfg(args, args.memory_steps)
            tmp = tempfile.mkdtemp(prefix="bench-cold-start-", dir=C.RESULTS / "cache")
            return lambda: {"steps": run_trainer(model, triplets, cfg, tmp)["steps"]}

        def setup_bare():
            _, key, triplets = demo_model_and_triplets()
            model = C.load_model(key, device)
            cfg = make_cfg(args, args.memory_steps)
            batches = collate_batches(model, triplets, cfg, args.memory_steps, device)
            loop = BareLoop(model, cfg, args.memory_steps, device)
            return lambda: {"steps": len([loop.step(b) for b in batches])}

        C.memory_child_main(args, {"train_cold_start": setup_trainer, "bare_loop": setup_bare})
        return

    C.set_threads(args.threads)
    model0, key, triplets = demo_model_and_triplets()
    model0.to(device)
    cfg = make_cfg(args, args.steps)
    batches = collate_batches(model0, triplets, cfg, args.steps, device)
    q_len = statistics.mean(b["query"].input_ids.shape[1] for b in batches)
    i_len = statistics.mean(b["item_ids"].shape[1] for b in batches)
    print(f"[cold start] device={device.type} threads={torch.get_num_threads()} steps={args.steps} "
          f"batch={args.batch_size} triplets={len(triplets)} mean padded widths: query {q_len:.0f}, "
          f"item {i_len:.0f} tokens", flush=True)

    trainer_model, bare_model = copy.deepcopy(model0), copy.deepcopy(model0)
    bare = BareLoop(bare_model, cfg, args.steps, device)
    bare_losses: list[float] = []
    hook_start: list[float] = []  # trainer's optimizer step k just finished
    hook_end: list[float] = []  # bare step k finished

    def after_optimizer_step(optimizer, _args, _kwargs):
        if optimizer is bare.optimizer:
            return
        hook_start.append(C.now(device))
        k = len(hook_start)
        loss = bare.step(batches[k - 1])
        hook_end.append(C.now(device))
        bare_losses.append(float(loss))  # outside both timed windows

    trainer_log: list[tuple[int, dict]] = []
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(after_optimizer_step)
    out_dir = Path(tempfile.mkdtemp(prefix="bench-cold-start-", dir=C.RESULTS / "cache"))
    try:
        t_call = C.now(device)
        summary = run_trainer(trainer_model, triplets, cfg, out_dir, log=lambda m, s: trainer_log.append((s, m)))
        t_return = C.now(device)
    finally:
        handle.remove()
    assert summary["steps"] == args.steps == len(hook_start), (summary["steps"], len(hook_start))

    w = args.warmup_steps
    # trainer step k (1-based, k >= 2): end of hook k-1 -> start of hook k
    trainer_steps = [hook_start[k - 1] - hook_end[k - 2] for k in range(w + 1, args.steps + 1)]
    bare_steps = [hook_end[k - 1] - hook_start[k - 1] for k in range(w + 1, args.steps + 1)]
    paired = [b / t for b, t in zip(bare_steps, trainer_steps)]
    ratio = statistics.median(paired)
    ratio_sums = sum(bare_steps) / sum(trainer_steps)
    setup_s = hook_start[0] - t_call  # call -> end of the trainer's step 1 (setup + step 1)
    save_s = t_return - hook_end[-1]
    first_loss_trainer = trainer_log[0][1]["cold_start/loss"] if trainer_log else float("nan")
    last_window = trainer_log[-1][1]["cold_start/loss"] if len(trainer_log) > 1 else float("nan")
    bare_window = statistics.fmean(bare_losses[1:]) if len(bare_losses) > 1 else float("nan")
    met = ratio >= TARGET
    result = {
        "config": {"steps": args.steps, "batch_size": args.batch_size, "warmup_steps": w, "device": device.type,
                   "threads": torch.get_num_threads(), "mean_query_width": q_len, "mean_item_width": i_len},
        "trainer_step_seconds": trainer_steps,
        "bare_step_seconds": bare_steps,
        "steps_per_s": {"train_cold_start_mean": len(trainer_steps) / sum(trainer_steps),
                        "bare_loop_mean": len(bare_steps) / sum(bare_steps),
                        "train_cold_start_of_median_step": 1 / statistics.median(trainer_steps),
                        "bare_loop_of_median_step": 1 / statistics.median(bare_steps)},
        "ratio": {"median_paired": ratio, "of_sums": ratio_sums,
                  "paired_quartiles": statistics.quantiles(paired, n=4)},
        "trainer_outside_steps_seconds": {"setup_and_step_1": setup_s, "final_save_and_return": save_s,
                                          "whole_call": t_return - t_call},
        "loss_check": {"trainer_step1": first_loss_trainer, "bare_step1": bare_losses[0],
                       "trainer_mean_steps_2_to_N": last_window, "bare_mean_steps_2_to_N": bare_window},
        "target": {"ratio": "train_cold_start / bare loop steps/s (median of paired steps)", "min": TARGET,
                   "value": ratio, "met": met},
    }
    sps = result["steps_per_s"]
    for label, key_, steps in (("train_cold_start", "train_cold_start", trainer_steps), ("bare loop", "bare_loop", bare_steps)):
        print(f"  {label:<17} {sps[key_ + '_mean']:.3f} steps/s over the timed steps (median step "
              f"{statistics.median(steps) * 1e3:.0f} ms, fastest {min(steps) * 1e3:.0f} ms)")
    print(f"  ratio train_cold_start / bare = {ratio:.3f} (median of {len(paired)} paired steps; of sums "
          f"{ratio_sums:.3f})   TARGET >= {TARGET}: {'met' if met else 'MISSED'}")
    print(f"  outside the timed steps: setup + step 1 {setup_s:.2f} s, final model save {save_s:.2f} s "
          f"(whole call {t_return - t_call:.1f} s)")
    print(f"  loss check: step 1 trainer {first_loss_trainer:.5f} vs bare {bare_losses[0]:.5f}; "
          f"mean of steps 2..{args.steps} trainer {last_window:.5f} vs bare {bare_window:.5f}")

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof_dir = Path(tempfile.mkdtemp(prefix="bench-cold-start-", dir=C.RESULTS / "cache"))
        prof.enable()
        run_trainer(copy.deepcopy(model0), triplets, make_cfg(args, min(args.steps, 10)), prof_dir)
        prof.disable()
        path = C.RESULTS / f"{NAME}_profile.txt"
        with open(path, "w") as fh:
            pstats.Stats(prof, stream=fh).sort_stats("cumulative").print_stats(45)
        result["profile"] = str(path.relative_to(C.REPO_ROOT))
        print(f"  cProfile: {result['profile']}")

    if not args.no_memory:
        extra = ["--batch-size", str(args.batch_size), "--memory-steps", str(args.memory_steps),
                 "--threads", str(args.threads)]
        mem = {v: C.run_memory_child(Path(__file__), v, extra) for v in ("train_cold_start", "bare_loop")}
        result["memory"] = mem
        for v, rep in mem.items():
            print(f"  memory {v:<16} ({args.memory_steps} steps) {C.fmt_mem(rep)}")
    import shutil

    shutil.rmtree(out_dir, ignore_errors=True)
    for d in (C.RESULTS / "cache").glob("bench-cold-start-*"):
        shutil.rmtree(d, ignore_errors=True)
    path = C.write_result(NAME, result)
    print(f"  -> {path.relative_to(C.REPO_ROOT)}")


if __name__ == "__main__":
    main()
