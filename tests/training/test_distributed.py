"""Training in two processes: `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo group),
the library cold start and GRPO on a tiny model (tests/training/dist_train.py runs in each process).

Checked: the ranks hold identical weights after optimizer steps; only rank 0 logs and saves; the
global batch and the LR schedule are the config's (each process takes batch / world size); a run
killed mid-way resumes from its last checkpoint to the same weights as an uninterrupted run (the
cold start and GRPO).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import ColdStartConfig, ModelConfig

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TITLES = [f"{c} {t}" for c in ("red", "blue", "green", "black") for t in ("mug", "chair", "shoe", "lamp")]
COLD_START = {"max_steps": 6, "batch_size": 8, "save_every": 2, "log_every": 1, "warmup_ratio": 0.5,
              "learning_rate": 1e-3, "mask_judged_negatives": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(HERE / "dist_train.py"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A saved tiny LREM (every process loads the same weights and tokenizer) and its triplets."""
    from components.model.lrem import LREMModel

    root = tmp_path_factory.mktemp("tiny")
    model = LREMModel.create(ModelConfig(vocab_size=200, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2, max_cot_tokens=4),
                             TITLES * 20 + [f"i want a {t}" for t in TITLES] * 5)
    model.save(root / "model")
    rows = [{"query_id": f"q{i}", "query": f"i want a {TITLES[i % 16]}", "cot": TITLES[i % 16].split()[1],
             "item_id": f"I{i % 16}", "item_title": TITLES[i % 16]} for i in range(32)]
    (root / "triplets.json").write_text(json.dumps(rows))
    return root


def _ranks(out: Path, name: str) -> list[dict]:
    return [json.loads((out / f"{name}.rank{r}.json").read_text()) for r in (0, 1)]


def _single_process_lrs(cfg: ColdStartConfig) -> list[float]:
    """The LR after each optimizer step of the config's schedule, as one process steps it."""
    import torch

    from components.training.optim import build_optimizer

    optimizer, scheduler = build_optimizer(torch.nn.Linear(2, 2), cfg.learning_rate, cfg.weight_decay,
                                           cfg.warmup_ratio, cfg.max_steps)
    lrs = []
    for _ in range(cfg.max_steps):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    return lrs


def test_cold_start_in_two_processes_keeps_the_batch_and_resumes_after_a_kill(tiny, tmp_path):
    args = [str(tiny / "model"), str(tiny / "triplets.json"), str(tmp_path), json.dumps(COLD_START)]
    killed = _launch("cold_start", *args, "run", "5")  # rank 0 dies at step 5, after the step-4 checkpoint
    assert killed.returncode != 0, killed.stdout[-2000:] + killed.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "step-4" / "trainer_state.pt").exists()
    assert not (tmp_path / "run" / "model").exists()

    # rerun: resume the killed run, then train the same config uninterrupted in a fresh folder
    done = _launch("cold_start", *args, "run,straight")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    resumed, straight = _ranks(tmp_path, "run"), _ranks(tmp_path, "straight")

    for ranks in (resumed, straight):
        assert ranks[0]["final"] == ranks[1]["final"]  # identical weights on both ranks
        assert all(r["steps"] == 6 and r["num_processes"] == 2 for r in ranks)
        assert all(r["per_device_batch_size"] == COLD_START["batch_size"] // 2 for r in ranks)  # not doubled
        assert ranks[1]["logged"] == []  # only rank 0 logs
    assert straight[0]["final"] != straight[0]["initial"]
    # the global batch: 6 steps x 8 examples, half in each process
    assert [r["examples_this_process"] for r in straight] == [24, 24]
    # the schedule: stepped once per optimizer step, as in one process
    assert [round(x["lr"], 12) for x in straight[0]["logged"]] == [
        round(x, 12) for x in _single_process_lrs(ColdStartConfig(**COLD_START))]
    # the resumed run picked up after the checkpoint and ends where the uninterrupted one does
    assert [x["step"] for x in resumed[0]["logged"]] == [5, 6]
    assert resumed[0]["final"] == straight[0]["final"]
    # rank 0 saved the model, and it holds the trained weights
    from components.model.lrem import LREMModel

    sys.path.insert(0, str(HERE))
    from dist_train import weights_digest

    assert weights_digest(LREMModel.load(tmp_path / "straight" / "model")) == straight[0]["final"]


def test_grpo_in_two_processes_keeps_the_generation_batch(tiny, tmp_path):
    config = {"max_steps": 2, "num_generations": 4, "per_device_batch_size": 8, "reward_pool_size": 8,
              "lambda_infonce": 0.1, "infonce_negatives": 4}
    done = _launch("grpo", str(tiny / "model"), str(tiny / "triplets.json"), str(tmp_path), json.dumps(config))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = _ranks(tmp_path, "grpo")
    assert ranks[0]["final"] == ranks[1]["final"] != ranks[0]["initial"]
    for r in ranks:
        assert r["steps"] == 2 and r["num_processes"] == 2
        # TRL's generation batch is per-device x processes: the config's 8 completions, 4 a process
        assert r["per_device_batch_size"] == 4 and r["generation_batch_size"] == 8
        assert r["saved"]
    assert ranks[0]["logged"] and ranks[1]["logged"] == []


def test_grpo_in_two_processes_resumes_after_a_kill_to_the_uninterrupted_weights(tiny, tmp_path):
    """Rank 0 dies at step 5 of 5; the checkpoints came at steps 2 and 4 (grpo.save_every 2). With 6
    queries and 2 a step an epoch is 3 steps: the run crosses an epoch and step 4 is mid-epoch, so
    the resume restores the sampler's place, both processes' RNG (the sampled CoTs), the optimizer,
    and the trainer's own draws (InfoNCE positives and negatives, the reward's cached catalog
    embeddings: 6 items, a pool of 8 ranks the whole catalog)."""
    rows = json.loads((tiny / "triplets.json").read_text())[:6]
    triplets = tmp_path / "triplets.json"
    triplets.write_text(json.dumps(rows))
    config = {"max_steps": 5, "num_generations": 4, "per_device_batch_size": 8, "reward_pool_size": 8,
              "reward_refresh_steps": 3, "lambda_infonce": 0.1, "infonce_negatives": 4, "save_every": 2}
    args = [str(tiny / "model"), str(triplets), str(tmp_path), json.dumps(config)]
    killed = _launch("grpo", *args, "run", "5")
    assert killed.returncode != 0, killed.stdout[-2000:] + killed.stderr[-2000:]
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-4"]  # the newest only
    assert {"lrem_checkpoint.json", "lrem_state_0.pt", "lrem_state_1.pt", "rng_state_0.pth",
            "rng_state_1.pth"} <= {p.name for p in (checkpoints / "checkpoint-4").iterdir()}
    assert not (tmp_path / "run" / "model").exists()

    done = _launch("grpo", *args, "run,straight")  # resume the killed run, then the same run uninterrupted
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    resumed, straight = _ranks(tmp_path, "run"), _ranks(tmp_path, "straight")
    for ranks in (resumed, straight):
        assert ranks[0]["final"] == ranks[1]["final"]
        assert all(r["steps"] == 5 and r["saved"] for r in ranks)
        assert ranks[1]["logged"] == []
    assert [r["resumed_from_step"] for r in resumed + straight] == [4, 4, 0, 0]
    assert sorted(set(resumed[0]["logged"])) == [5]  # picked up after the checkpoint
    assert sorted(set(straight[0]["logged"])) == [1, 2, 3, 4, 5]
    assert resumed[0]["final"] == straight[0]["final"] != straight[0]["initial"]
    assert not checkpoints.exists()  # the finished model supersedes them


def test_a_global_batch_the_processes_cannot_share_is_an_error():
    from components.training.cold_start import per_device_batch_size

    assert per_device_batch_size(64, 4, "cold_start.batch_size") == 16
    with pytest.raises(ValueError, match=r"cold_start.batch_size \(9\).*divisible.*\(2\)"):
        per_device_batch_size(9, 2, "cold_start.batch_size")
