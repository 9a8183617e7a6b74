"""Real data through the same pipeline: a SciFact subset, imported and versioned with DVC, runs every step.

`lrem data import beir` writes the data contract, DVC versions it in a data repo of its own,
and the nightly steps (in process, as `lrem pipeline` runs them) pull, gate, build triplets
by corpus feedback, train, register, index, evaluate (nDCG with the graded judgments) and
promote, on the smoke config.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from e2e_helpers import BIN, REPO  # noqa: E402  (tests/e2e is on sys.path: no package)
from e2e_helpers import free_port as _free_port  # noqa: E402
from e2e_helpers import run as _run  # noqa: E402
SCIFACT = REPO.parent / "shared" / "data" / "beir-scifact"
pytestmark = pytest.mark.e2e






def _scifact_subset(root: Path, n_test: int = 20, n_train: int = 80, n_distractors: int = 300) -> Path:
    (root / "qrels").mkdir(parents=True)
    judged: set[str] = set()
    for name, n in (("test", n_test), ("train", n_train)):
        lines = (SCIFACT / "qrels" / f"{name}.tsv").read_text().splitlines()
        qids = list(dict.fromkeys(line.split("\t")[0] for line in lines[1:]))[:n]
        kept = [lines[0]] + [line for line in lines[1:] if line.split("\t")[0] in qids]
        (root / "qrels" / f"{name}.tsv").write_text("\n".join(kept) + "\n")
        judged |= {line.split("\t")[1] for line in kept[1:]}
    corpus = (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    keep = [c for i, c in enumerate(corpus) if i < n_distractors or json.loads(c)["_id"] in judged]
    (root / "corpus.jsonl").write_text("\n".join(keep) + "\n", encoding="utf-8")
    (root / "queries.jsonl").write_text((SCIFACT / "queries.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    return root


def test_imported_scifact_runs_the_whole_pipeline(tmp_path, monkeypatch):
    if not SCIFACT.exists():
        pytest.skip(f"real data sample {SCIFACT} is absent (../shared/data is not checked out beside the repo)")
    from components.config import load_config
    from components.data.importers import import_dataset
    from components.data.versioning import dvc_env

    home = tmp_path / "lrem_home"
    env = {**os.environ, "LREM_HOME": str(home), "LREM_MILVUS_URI": f"http://127.0.0.1:{_free_port()}",
           "TOKENIZERS_PARALLELISM": "false"}
    for key in ("LREM_HOME", "LREM_MILVUS_URI", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(key, env[key])

    repo = tmp_path / "data-repo"
    repo.mkdir()
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        assert _run(cmd, env, cwd=repo).returncode == 0
    stats = import_dataset("beir", _scifact_subset(tmp_path / "src"), repo / "data")
    assert stats["queries_per_split"] == {"train": 80, "eval": 20}
    dvc = {**env, **dvc_env(repo)}  # the data repo's DVC on this state dir's cache and remote
    for cmd in ([str(BIN / "dvc"), "add", "-q", "data"], [str(BIN / "dvc"), "push", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "scifact subset"]):
        res = _run(cmd, dvc, cwd=repo)
        assert res.returncode == 0, " ".join(cmd) + ": " + res.stdout + res.stderr

    smoke = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    smoke["name"] = "real-data"
    smoke["data"] = {"repo": str(repo)}
    config = tmp_path / "real.yaml"
    config.write_text(yaml.safe_dump(smoke))
    cfg = load_config(config)

    start = _run([str(BIN / "lrem"), "milvus", "start"], env)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        from components.pipeline import run_all

        ctx = run_all(cfg, "real-1")
    finally:
        _run([str(BIN / "lrem"), "milvus", "stop"], env)

    assert ctx["validate_raw"]["failed"] == 0
    assert ctx["generate_triplets"]["n_triplets"] > 0
    assert ctx["build_index"]["rows"] == stats["n_items"]
    headline = ctx["evaluate_offline"]["headline"]
    assert 0.0 <= headline["ndcg@10"] <= 1.0 and headline["n_queries"] == 20
    assert ctx["promote"]["promoted"] is True
