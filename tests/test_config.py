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


def test_router_reference_items_at_least_one():
    with pytest.raises(ConfigError, match="routing.reference_items: 0 must be at least 1"):
        load_config(None, {"routing": {"reference_items": 0}})
    cfg = load_config(None, {})
    assert (cfg.routing.use_dev, cfg.routing.reference_features, cfg.routing.direct_embedding) == (True, True, False)


@pytest.mark.parametrize("override,message", [
    ({"traffic_budget": 1.2}, "routing.traffic_budget: 1.2 must be between 0 and 1"),
    ({"traffic_budget": -0.1}, "routing.traffic_budget: -0.1 must be between 0 and 1"),
    ({"traffic_days": 0}, "routing.traffic_days"),
    ({"traffic_min_queries": 0}, "routing.traffic_min_queries"),
])
def test_router_traffic_budget_settings_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"routing": override})
    ok = load_config(None, {"routing": {"traffic_budget": 0.45, "traffic_days": 2, "traffic_min_queries": 50}})
    assert (ok.routing.traffic_budget, ok.routing.traffic_days, ok.routing.traffic_min_queries) == (0.45, 2, 50)


def test_router_threshold_quantile_in_unit_interval():
    with pytest.raises(ConfigError, match="routing.threshold_quantile: 1.5 must be between 0 and 1"):
        load_config(None, {"routing": {"threshold_quantile": 1.5}})
    assert load_config(None, {"routing": {"threshold_quantile": 0.25}}).routing.threshold_quantile == 0.25


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


# ---------------------------------------------------------------- extends: a config built on another
def test_extends_updates_the_base_section_by_section(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\nrouting:\n  max_queries: 120\n  holdout_share: 0.15\n"
                                        "grpo:\n  max_steps: 20\n")
    (tmp_path / "mid.yaml").write_text("extends: base.yaml\nrouting:\n  threshold_bags: 7\n")
    (tmp_path / "child.yaml").write_text("extends: mid.yaml\nname: child\nrouting:\n  holdout_share: 0.0\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.name == "child" and cfg.grpo.max_steps == 20
    assert (cfg.routing.max_queries, cfg.routing.holdout_share, cfg.routing.threshold_bags) == (120, 0.0, 7)
    assert load_config(tmp_path / "mid.yaml").routing.holdout_share == 0.15


def test_extends_refuses_a_cycle_and_a_missing_base(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"a.yaml: extends itself \(a.yaml -> b.yaml -> a.yaml\)"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere.yaml: no such config file \(extended by c.yaml\)"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("extends: [a.yaml, b.yaml]\n")
    with pytest.raises(ConfigError, match="must name one config file"):
        load_config(tmp_path / "d.yaml")


def test_the_gate_pair_variants_differ_from_their_base_only_where_they_say():
    base = load_config("configs/gate-pair.yaml").to_dict()
    bagged = load_config("configs/gate-pair-bagged.yaml").to_dict()
    assert {k for k in base if base[k] != bagged[k]} == {"routing"}
    assert {k for k in base["routing"] if base["routing"][k] != bagged["routing"][k]} == {"threshold_bags"}
    defaults = load_config("configs/gate-pair-defaults.yaml")
    assert defaults.name == "gate-pair-defaults" and defaults.cold_start.max_steps == 2400
    assert (defaults.routing.use_dev, defaults.routing.reason_share, defaults.routing.holdout_share,
            defaults.routing.max_queries, defaults.routing.threshold_bags) == (False, None, 0.0, 2000, 200)
    for pinned in (base, bagged, defaults.to_dict()):  # the router's features as those pairs ran (before 3.6)
        assert (pinned["routing"]["reference_features"], pinned["routing"]["direct_embedding"]) == (False, True)
        assert pinned["routing"]["traffic_budget"] is None  # no budget on whatever traffic the state dir holds (3.7)
