"""`lrem gate train-pair`: one recipe, one model a seed, the pipeline's own steps on a fixed snapshot.

Unit level: the steps are faked (training is what the pipeline's own tests cover); what is
tested is the seeding, the snapshot artefact, the order of the steps, the registered name
(never the serving model's) and that a rerun goes on after its last finished step.
"""

from __future__ import annotations

import json
import types

import pytest

from components.evaluation import gate_pair


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LREM_MLFLOW_URI", raising=False)
    return tmp_path / "home"


@pytest.fixture
def world(tmp_path):
    folder = tmp_path / "world"
    folder.mkdir()
    (folder / "catalog.jsonl").write_text('{"item_id": "i1"}\n')
    (folder / "queries.jsonl").write_text('{"query_id": "q1"}\n')
    return folder


@pytest.mark.parametrize("vary", [gate_pair.VARIED, gate_pair.SEEDED])
def test_the_varied_seeds_and_only_those_change_and_the_name_is_its_own(vary):
    a = gate_pair.seeded_config("configs/smoke.yaml", 5, vary=vary)
    b = gate_pair.seeded_config("configs/smoke.yaml", 6, vary=vary)
    for section in vary:
        assert (getattr(a, section).seed, getattr(b, section).seed) == (5, 6), section
    for section in set(gate_pair.SEEDED) - set(vary):  # by default the backbone's seeds stay the config's
        assert getattr(a, section).seed == getattr(b, section).seed == 0, section
    assert a.tracking.model_name == b.tracking.model_name == gate_pair.DEFAULT_MODEL_NAME
    da, db = a.to_dict(), b.to_dict()
    for section in vary:
        da[section].pop("seed"), db[section].pop("seed")
    assert da == db  # nothing else differs between the two members of the pair
    assert a.teacher.seed == b.teacher.seed  # the teacher's triplets are data, not training
    with pytest.raises(ValueError, match="no training seed"):
        gate_pair.seeded_config("configs/smoke.yaml", 1, vary=("teacher",))


def _fake(monkeypatch, fail_at=None):
    import components.pipeline as pipeline

    ran = []

    def fake_step(name, cfg, ctx, run_key=None):
        if name == fail_at:
            raise RuntimeError(f"{name} crashed")
        ran.append((name, cfg.cold_start.seed, cfg.tracking.model_name, sorted(ctx)))
        out = {"step": name}
        if name == "register_challenger":
            out.update(model_uri=f"models:/{cfg.tracking.model_name}/{cfg.cold_start.seed + 1}",
                       model_version=str(cfg.cold_start.seed + 1))
        return types.SimpleNamespace(to_dict=lambda: out)

    monkeypatch.setattr(pipeline, "run_step", fake_step)
    return ran


def test_the_pair_runs_the_pipeline_steps_per_seed_on_the_snapshot(monkeypatch, world, tmp_path):
    ran = _fake(monkeypatch)
    out = tmp_path / "pair.json"
    result = gate_pair.train_pair("configs/smoke.yaml", str(world), [0, 1], out)
    assert [(r[0], r[1]) for r in ran] == [(s, seed) for seed in (0, 1) for s in gate_pair.PAIR_STEPS]
    assert {r[2] for r in ran} == {gate_pair.DEFAULT_MODEL_NAME}
    assert ran[0][3] == ["pull_data"]  # the first step sees only the snapshot
    saved = json.loads(out.read_text())
    assert [m["model_uri"] for m in saved["models"]] == [f"models:/{gate_pair.DEFAULT_MODEL_NAME}/1",
                                                        f"models:/{gate_pair.DEFAULT_MODEL_NAME}/2"]
    snap = result["models"][0]["context"]["pull_data"]
    from components.data.versioning import content_hash

    assert snap["data_uri"] == str(world.resolve()) and snap["data_md5"] == f"sha256:{content_hash(world)}"
    assert result["models"][0]["data_md5"] == result["models"][1]["data_md5"]  # one snapshot for both


def test_a_rerun_goes_on_after_the_last_finished_step(monkeypatch, world):
    _fake(monkeypatch, fail_at="train_grpo")
    with pytest.raises(RuntimeError, match="train_grpo crashed"):
        gate_pair.train_one("configs/smoke.yaml", str(world), 0)
    ran = _fake(monkeypatch)
    gate_pair.train_one("configs/smoke.yaml", str(world), 0)
    assert [r[0] for r in ran] == ["train_grpo", "train_router", "register_challenger"]
    ran.clear()  # another seed or recipe is another run, from the snapshot on
    one = gate_pair.train_one("configs/smoke.yaml", str(world), 1)
    assert [r[0] for r in ran] == list(gate_pair.PAIR_STEPS)
    with pytest.raises(ValueError, match="another recipe or snapshot"):  # an explicit run key of another recipe
        gate_pair.train_one("configs/demo.yaml", str(world), 1, run_key=one["run_key"])


def _variant(tmp_path, name, text):
    """configs/smoke.yaml with the settings of ``text`` (YAML) changed, nothing else."""
    import yaml

    recipe = yaml.safe_load(open("configs/smoke.yaml"))
    for section, values in yaml.safe_load(text).items():
        recipe.setdefault(section, {}).update(values)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_reuse_takes_over_the_training_and_redoes_only_the_router(monkeypatch, world, tmp_path):
    _fake(monkeypatch)
    first = gate_pair.train_pair("configs/smoke.yaml", str(world), [0, 1], tmp_path / "first.json")
    ran = _fake(monkeypatch)
    bagged = _variant(tmp_path, "bagged", "\nrouting:\n  threshold_bags: 7\n  max_queries: 50\n")
    again = gate_pair.train_pair(bagged, str(world), [0, 1], tmp_path / "again.json", reuse=[first])
    assert [(r[0], r[1]) for r in ran] == [(s, seed) for seed in (0, 1)
                                           for s in ("train_router", "register_challenger")]
    for old, new in zip(first["models"], again["models"]):
        assert new["run_key"] != old["run_key"]  # a run of its own, naming what it took over
        assert new["reused_from"] == {"run_key": old["run_key"], "model_uri": old["model_uri"]}
        for step in gate_pair.REUSABLE_STEPS:
            assert new["context"][step] == old["context"][step]
        assert new["context"]["pull_data"]["mlflow_run_id"] != old["context"]["pull_data"]["mlflow_run_id"]
    ran.clear()  # the same command again: nothing left to do
    gate_pair.train_pair(bagged, str(world), [0, 1], reuse=[first])
    assert ran == []


@pytest.mark.parametrize("text, named", [
    ("\ncold_start:\n  max_steps: 21\n", "cold_start.max_steps"),
    ("\nrouting:\n  holdout_share: 0.3\n", "routing.holdout_share"),  # picks the data every stage sees
    ("\nrouting:\n  seed: 4\n", "routing.seed"),
])
def test_reuse_refuses_a_recipe_whose_training_would_differ(monkeypatch, world, tmp_path, text, named):
    _fake(monkeypatch)
    first = gate_pair.train_pair("configs/smoke.yaml", str(world), [0], tmp_path / "first.json")
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        gate_pair.train_pair(_variant(tmp_path, "other", text), str(world), [0], reuse=[first])


def test_reuse_refuses_a_missing_seed_another_snapshot_or_an_unfinished_member(monkeypatch, world, tmp_path):
    _fake(monkeypatch)
    first = gate_pair.train_pair("configs/smoke.yaml", str(world), [0], tmp_path / "first.json")
    with pytest.raises(ValueError, match="no member of seed 1"):
        gate_pair.train_pair("configs/smoke.yaml", str(world), [1], reuse=[first])
    other = tmp_path / "other-world"
    other.mkdir()
    (other / "catalog.jsonl").write_text('{"item_id": "i2"}\n')
    with pytest.raises(ValueError, match="trained on"):
        gate_pair.train_pair("configs/smoke.yaml", str(other), [0], reuse=[first])
    first["models"][0]["context"].pop("train_grpo")
    with pytest.raises(ValueError, match=r"did not finish \['train_grpo'\]"):
        gate_pair.train_pair("configs/smoke.yaml", str(world), [0], reuse=[first])
