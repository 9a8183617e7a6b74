"""Config loading: choice-like fields are checked when the config loads, naming the allowed values."""

from __future__ import annotations

import pytest

from components.config import (GPU_SWITCHES, HARD_SPLITS, ITEM_FILTERS, ITEM_SELECTS, POOLINGS, REWARD_NAMES, ConfigError, PipelineConfig,
                               load_config)


@pytest.mark.parametrize("name", ["demo", "smoke", "qwen2.5-3b"])
def test_shipped_configs_load(name):
    assert isinstance(load_config(f"configs/{name}.yaml"), PipelineConfig)


@pytest.mark.parametrize("overrides, field, allowed", [
    ({"teacher": {"item_filter": "bm25"}}, "teacher.item_filter", ITEM_FILTERS),
    ({"teacher": {"item_select": "random"}}, "teacher.item_select", ITEM_SELECTS),
    ({"world": {"hard_split": "category"}}, "world.hard_split", HARD_SPLITS),
    ({"model": {"pooling": "max"}}, "model.pooling", POOLINGS),
    ({"model": {"prompt_style": "long"}}, "model.prompt_style", ("auto", "chat", "short")),
    ({"grpo": {"reward_funcs": ["format", "recall"], "reward_weights": [1.0, 1.0]}}, "grpo.reward_funcs",
     REWARD_NAMES),
    ({"cold_start": {"bf16": "yes"}}, "cold_start.bf16", GPU_SWITCHES),
    ({"cold_start": {"gradient_checkpointing": "on"}}, "cold_start.gradient_checkpointing", GPU_SWITCHES),
    ({"grpo": {"scale_rewards": "std"}}, "grpo.scale_rewards", ("group", "batch", "none")),
    ({"gate": {"metric": "hit_rate@5"}}, "gate.metric", ("hit_rate@10", "hit_rate@50", "hit_rate@100",
                                                         "precision@10")),
])
def test_out_of_choice_values_fail_at_load_naming_the_allowed_values(overrides, field, allowed):
    with pytest.raises(ConfigError) as info:
        load_config("configs/smoke.yaml", overrides)
    message = str(info.value)
    assert message.startswith("configs/smoke.yaml") and field in message
    assert ", ".join(allowed) in message


def test_checked_also_when_built_in_code():
    from components.config import TeacherConfig

    with pytest.raises(ConfigError, match="teacher.item_filter: 'x' is not allowed"):
        PipelineConfig(teacher=TeacherConfig(item_filter="x"))


def test_reward_weights_match_reward_funcs():
    with pytest.raises(ConfigError, match="grpo.reward_weights: 3 weights for 2 reward_funcs"):
        load_config(None, {"grpo": {"reward_funcs": ["format", "accuracy"]}})
    cfg = load_config(None, {"grpo": {"reward_funcs": ["format", "accuracy"], "reward_weights": [0.5, 1.0]}})
    assert cfg.grpo.reward_funcs == ["format", "accuracy"]


def test_grpo_num_iterations_at_least_one():
    with pytest.raises(ConfigError, match="grpo.num_iterations: 0 must be >= 1"):
        load_config(None, {"grpo": {"num_iterations": 0}})
    assert load_config(None, {"grpo": {"num_iterations": 2}}).grpo.num_iterations == 2


def test_yaml_booleans_for_gpu_switches():
    cfg = load_config(None, {"cold_start": {"bf16": True, "gradient_checkpointing": False}})
    assert (cfg.cold_start.bf16, cfg.cold_start.gradient_checkpointing) == ("true", "false")


def test_unknown_keys_and_wrong_types_are_config_errors():
    with pytest.raises(ConfigError, match="unknown config keys"):
        load_config(None, {"teacher": {"item_filtr": "judged"}})
    with pytest.raises(ConfigError, match="expected int"):
        load_config(None, {"teacher": {"retriever_top_k": "many"}})


def test_shares_out_of_range_are_named(tmp_path):
    import pytest as _pytest

    from components.config import ConfigError, load_config

    path = tmp_path / "bad.yaml"
    path.write_text("cold_start:\n  wrong_cot_ratio: 1.5\n")
    with _pytest.raises(ConfigError, match="cold_start.wrong_cot_ratio"):
        load_config(str(path))
    path.write_text("grpo:\n  rl_query_share: 1.0\n")
    with _pytest.raises(ConfigError, match="grpo.rl_query_share"):
        load_config(str(path))


def test_reward_pool_and_refresh_out_of_range_are_named(tmp_path):
    import pytest as _pytest

    from components.config import ConfigError, load_config

    path = tmp_path / "c.yaml"
    for body in ("grpo:\n  reward_pool_size: -1\n", "grpo:\n  reward_refresh_steps: 0\n"):
        path.write_text(body)
        with _pytest.raises(ConfigError, match="grpo.reward_pool_size"):
            load_config(str(path))
    path.write_text("backbone:\n  knowledge_repeats: -1\n")
    with _pytest.raises(ConfigError, match="backbone.knowledge_repeats"):
        load_config(str(path))
    path.write_text("grpo:\n  reward_pool_size: 0\n")
    assert load_config(str(path)).grpo.reward_pool_size == 0  # 0: the whole catalog


def test_rehearsal_settings_out_of_range_are_named(tmp_path):
    import pytest as _pytest

    from components.config import ConfigError, load_config

    path = tmp_path / "r.yaml"
    for section in ("cold_start", "grpo"):
        for body in (f"{section}:\n  lm_replay_weight: -0.5\n", f"{section}:\n  lm_replay_batch: 0\n"):
            path.write_text(body)
            with _pytest.raises(ConfigError, match=f"{section}.lm_replay_weight"):
                load_config(str(path))
    path.write_text("grpo:\n  lm_replay_weight: 1.0\n")
    assert load_config(str(path)).grpo.lm_replay_weight == 1.0
