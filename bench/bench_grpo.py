"""GRPO step time, split into generation, rewards, loss + backward and the optimizer.

Runs the real ``components.training.grpo.train_grpo`` (TRL's GRPOTrainer with the LREM InfoNCE
term) on the demo world's teacher triplets with the default model (``ModelConfig()``: the
3.4M-parameter tiny Qwen2 with the short prompt template; untrained, which does not change
what a step costs, except that an untrained policy never closes its CoT early, so every
completion runs to the CoT budget: the worst case for generation) and a short
``GRPOStageConfig(max_steps=5, num_generations=8, per_device_batch_size=64)`` (8 queries x 8
completions per step), and times the parts of each step by wrapping, for the length of the
call only, PUBLIC methods and hooks (no private attribute of trl or of ``components``):

  * ``GRPOTrainer.training_step``: everything of a step but clipping and the optimizer
    (generate and score the completions, loss, backward);
  * generation: ``generate`` of the policy's class (the HF generate call TRL makes; TRL's
    prompt tokenisation and completion decoding around it are counted under "other");
  * rewards: ``__call__`` of the reward classes (``FormatReward``, ``LengthReward``,
    ``RankAccuracyReward``), and inside the accuracy reward its embedding work:
    ``LREMModel.embed_queries_after_cot_ids`` (queries after the sampled CoTs) and
    ``LREMModel.embed_items`` (the reward's item pool, ``reward_pool_size`` items);
  * loss: ``GRPOTrainer.compute_loss`` (the policy's log-probs and the GRPO loss) and
    ``components.training.grpo.rl_infonce`` (the paper's 0.1 x InfoNCE term, forward);
  * ``components.training.grpo.replay_lm_loss`` (the rehearsal of the backbone's text, with
    ``--replay W``: ``grpo.lm_replay_weight``, 16 packed 96-token sequences per loss);
  * backward: ``Accelerator.backward``; gradient clipping: ``Accelerator.clip_grad_norm_``;
  * optimizer: global optimizer step pre/post hooks.

A step is the time from one optimizer step's end to the next's (so it also holds the
scheduler, zero_grad, logging and the next batch's collation of the step before); the first
``--warmup-steps`` steps are not timed (the trainer's setup falls in step 1). "other" is the
step minus the timed parts: TRL's scoring glue (tokenising prompts, decoding completions,
advantages, metrics), collation, scheduler, zero_grad, logging. Every clock read synchronises
the GPU when there is one.

    .venv/bin/python bench/bench_grpo.py [--steps 5] [--warmup-steps 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import torch  # noqa: E402

NAME = "grpo"

# (key, label, parent key) in print order; parents hold their children's time
PARTS = [
    ("generate", "generation (policy.generate)", None),
    ("rewards", "rewards (all reward callables)", None),
    ("reward_accuracy", "accuracy reward", "rewards"),
    ("acc_embed_queries", "embed queries after CoT", "reward_accuracy"),
    ("acc_embed_items", "embed the item pool", "reward_accuracy"),
    ("reward_format", "format reward", "rewards"),
    ("reward_length", "length reward", "rewards"),
    ("loss_backward", "loss + backward", None),
    ("compute_loss_grpo", "GRPO loss (log-probs, forward)", "loss_backward"),
    ("rl_infonce", "InfoNCE term (forward)", "loss_backward"),
    ("replay_lm", "LM rehearsal term (forward; --replay)", "loss_backward"),
    ("backward", "backward", "loss_backward"),
    ("optimizer", "optimizer (clip + AdamW step)", None),
    ("clip", "clip_grad_norm_", "optimizer"),
    ("optimizer_step", "AdamW step", "optimizer"),
    ("other", "other (TRL scoring glue, collation, logging)", None),
]


class StepTimers:
    """Seconds per part, accumulated between optimizer steps, one dict per step."""

    def __init__(self, device: torch.device):
        self.device = device
        self.acc: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, float]] = []
        self.boundaries: list[float] = []
        self._opt_start = 0.0

    def wrap(self, key: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = C.now(self.device)
            try:
                return fn(*args, **kwargs)
            finally:
                self.acc[key] += C.now(self.device) - t0
        return timed

    def before_optimizer_step(self, *_):
        self._opt_start = C.now(self.device)

    def after_optimizer_step(self, *_):
        t = C.now(self.device)
        self.acc["optimizer_step"] += t - self._opt_start
        self.steps.append(dict(self.acc))
        self.acc.clear()
        self.boundaries.append(t)


@contextlib.contextmanager
def patched(owner, name: str, make):
    """``owner.name = make(owner.name)`` for the length of the block, then what was there before."""
    had_own = name in vars(owner)
    before = vars(owner)[name] if had_own else None
    setattr(owner, name, make(getattr(owner, name)))
    try:
        yield
    finally:
        if had_own:
            setattr(owner, name, before)
        else:
            delattr(owner, name)


def no_checkpointing_config(config_cls):
    """A GRPOConfig whose ``gradient_checkpointing`` is off (TRL's GRPOConfig turns it on by default)."""
    @dataclasses.dataclass
    class NoCheckpointingGRPOConfig(config_cls):
        def __post_init__(self):
            self.gradient_checkpointing = False
            super().__post_init__()

    return NoCheckpointingGRPOConfig


def run(args, device: torch.device) -> dict:
    import trl
    from accelerate import Accelerator
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
    from trl import GRPOTrainer

    from components.config import GRPOStageConfig
    from components.model.lrem import LREMModel
    from components.training import grpo

    world, triplets = C.load_demo()
    _, key = C.get_model(C.pipeline_corpus(world, triplets), "pipeline")
    model = C.load_model(key, device)
    desc = C.describe_model(model)
    titles = dict(zip(world.catalog["item_id"], world.catalog["title"]))
    cfg = GRPOStageConfig(max_steps=args.steps, num_generations=args.num_generations,
                          per_device_batch_size=args.batch_size, reward_pool_size=args.reward_pool,
                          lm_replay_weight=args.replay)
    # the rehearsal reads text like the backbone's pre-training corpus: the catalog and the train queries
    replay_docs = (world.catalog["title"].tolist() + world.split("train")["text"].tolist()) if args.replay else None
    print(f"[grpo] device={device.type} threads={torch.get_num_threads()} model: {desc['text']}; "
          f"gradient checkpointing: {args.gradient_checkpointing}; "
          f"{cfg.max_steps} steps ({args.warmup_steps} untimed), {cfg.per_device_batch_size} completions/step "
          f"= {cfg.per_device_batch_size // cfg.num_generations} queries x G={cfg.num_generations}, "
          f"reward pool {cfg.reward_pool_size or 'whole catalog'} items, LM rehearsal weight {cfg.lm_replay_weight}, "
          f"{len(triplets)} triplets", flush=True)

    T = StepTimers(device)
    wraps = [
        (GRPOTrainer, "training_step", "training_step"),
        (GRPOTrainer, "compute_loss", "compute_loss_grpo"),
        (type(model.lm), "generate", "generate"),
        (grpo.FormatReward, "__call__", "reward_format"),
        (grpo.LengthReward, "__call__", "reward_length"),
        (grpo.RankAccuracyReward, "__call__", "reward_accuracy"),
        (LREMModel, "embed_queries_after_cot_ids", "acc_embed_queries"),
        (LREMModel, "embed_items", "acc_embed_items"),
        (grpo, "rl_infonce", "rl_infonce"),
        (grpo, "replay_lm_loss", "replay_lm"),
        (Accelerator, "backward", "backward"),
        (Accelerator, "clip_grad_norm_", "clip"),
    ]
    out_dir = Path(tempfile.mkdtemp(prefix="bench-grpo-", dir=C.RESULTS / "cache"))
    handles = [register_optimizer_step_pre_hook(T.before_optimizer_step),
               register_optimizer_step_post_hook(T.after_optimizer_step)]
    try:
        with contextlib.ExitStack() as stack:
            for owner, name, k in wraps:
                stack.enter_context(patched(owner, name, functools.partial(T.wrap, k)))
            if args.gradient_checkpointing == "off":
                stack.enter_context(patched(trl, "GRPOConfig", no_checkpointing_config))
            trainer_stdout = stack.enter_context(contextlib.redirect_stdout(io.StringIO()))  # TRL's log dicts
            t_call = C.now(device)
            summary = grpo.train_grpo(model, triplets, titles, cfg, out_dir, relevant=world.relevant(),
                                      show_progress=False, replay_docs=replay_docs)
            t_return = C.now(device)
        if args.verbose:
            print(trainer_stdout.getvalue(), end="")
    finally:
        for h in handles:
            h.remove()
        shutil.rmtree(out_dir, ignore_errors=True)
    n = len(T.boundaries)
    assert summary["steps"] == args.steps == n, (summary["steps"], args.steps, n)

    w = args.warmup_steps
    step_s = [T.boundaries[k] - T.boundaries[k - 1] for k in range(max(w, 1), n)]  # steps w+1..n
    parts_per_step = T.steps[max(w, 1):]
    timed = len(step_s)
    mean = lambda k: sum(p.get(k, 0.0) for p in parts_per_step) / timed  # noqa: E731
    sec = {k: mean(k) for k, _, _ in PARTS if k not in ("rewards", "loss_backward", "optimizer", "other")}
    sec["training_step"] = mean("training_step")
    sec["rewards"] = sec["reward_accuracy"] + sec["reward_format"] + sec["reward_length"]
    sec["loss_backward"] = sec["compute_loss_grpo"] + sec["rl_infonce"] + sec["replay_lm"] + sec["backward"]
    sec["optimizer"] = sec["clip"] + sec["optimizer_step"]
    step = sum(step_s) / timed
    sec["other"] = step - sec["generate"] - sec["rewards"] - sec["loss_backward"] - sec["optimizer"]
    share = {k: v / step for k, v in sec.items()}
    hist = summary["history"]
    lengths = [h[k] for h in hist for k in h if "completions" in k and k.endswith("mean_length")]
    result = {
        "config": {"steps": args.steps, "warmup_steps": w, "timed_steps": timed, "device": device.type,
                   "threads": torch.get_num_threads(), "num_generations": cfg.num_generations,
                   "per_device_batch_size": cfg.per_device_batch_size, "reward_pool_size": cfg.reward_pool_size,
                   "infonce_negatives": cfg.infonce_negatives, "lm_replay_weight": cfg.lm_replay_weight,
                   "model": desc,
                   "gradient_checkpointing": args.gradient_checkpointing},
        "seconds_per_step": step,
        "step_seconds": step_s,
        "seconds_per_step_by_part": sec,
        "share_of_step": share,
        "per_step_parts": parts_per_step,
        "outside_timed_steps_seconds": {"setup_and_untimed_steps": T.boundaries[max(w, 1) - 1] - t_call,
                                        "after_last_step_incl_save": t_return - T.boundaries[-1],
                                        "whole_call": t_return - t_call},
        "mean_completion_length": statistics.fmean(lengths) if lengths else None,
        "last_rewards": summary.get("last_rewards", {}),
    }
    print(f"  step {step:.2f} s (median {statistics.median(step_s):.2f} s, min {min(step_s):.2f}, max "
          f"{max(step_s):.2f}) over steps {max(w, 1) + 1}..{n}; mean completion length "
          f"{result['mean_completion_length'] or float('nan'):.1f} tokens (budget {model.spec.max_cot_tokens} + "
          f"</think>)")
    print(f"  {'part':<50} {'s/step':>7} {'share':>6}")
    for k, label, parent in PARTS:
        depth = 0
        p = parent
        while p is not None:
            depth += 1
            p = next(pp for kk, _, pp in PARTS if kk == p)
        print(f"  {'  ' * depth + label:<50} {sec[k]:7.3f} {share[k]:6.1%}")
    print(f"  {'step':<50} {step:7.3f} {1:6.1%}")
    o = result["outside_timed_steps_seconds"]
    print(f"  outside the timed steps: setup + {max(w, 1)} untimed step(s) {o['setup_and_untimed_steps']:.1f} s, "
          f"after the last step (incl. model save) {o['after_last_step_incl_save']:.1f} s; "
          f"whole train_grpo call {o['whole_call']:.1f} s")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="GRPO steps (max_steps)")
    ap.add_argument("--warmup-steps", type=int, default=1, help="first steps not timed (at least 1)")
    ap.add_argument("--num-generations", type=int, default=8, help="G completions per query")
    ap.add_argument("--batch-size", type=int, default=64, help="completions per step (per_device_batch_size)")
    ap.add_argument("--reward-pool", type=int, default=256,
                    help="items the rank reward ranks against (0: the whole catalog, item embeddings refreshed "
                         "every grpo.reward_refresh_steps steps; time enough steps to include a refresh)")
    ap.add_argument("--replay", type=float, default=0.0,
                    help="grpo.lm_replay_weight: rehearse the backbone's text in each loss (the experiment: 1.0)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch default); see README")
    ap.add_argument("--gradient-checkpointing", choices=("default", "off"), default="default",
                    help="default: as train_grpo runs it (TRL's GRPOConfig default: on); off: an experiment, "
                         "GRPOConfig with gradient_checkpointing=False (results go to grpo_no_ckpt.json)")
    ap.add_argument("--verbose", action="store_true", help="also print TRL's per-step log dicts")
    ap.add_argument("--no-memory", action="store_true", help="accepted for run_all.py; no memory runs here")
    args = ap.parse_args()
    if args.steps <= max(args.warmup_steps, 1):
        ap.error("--steps must exceed --warmup-steps (and 1)")
    import logging
    import warnings

    logging.getLogger("components").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' gradient_checkpointing renames
    C.set_threads(args.threads)
    device = C.pick_device()
    result = run(args, device)
    name = NAME if args.gradient_checkpointing == "default" else f"{NAME}_no_ckpt"
    path = C.write_result(name + ("_replay" if args.replay else ""), result)
    print(f"  -> {path.relative_to(C.REPO_ROOT)}")


if __name__ == "__main__":
    main()
