"""The online evaluation: replay against the running service (or one started here), analyse, report.

``evaluate_online`` is what the nightly DAG's ``evaluate_online`` step calls (once the
step registry has it): the service serves ``champion`` and ``challenger`` straight from the
registry, so the challenger arm is "started" by the alias the registration step set.
Both modes run: the split A/B test (half the request budget) and team-draft
interleaving (the other half); the analysis covers the events of this evaluation only.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from components.config import PipelineConfig
from components.service import analysis
from components.service.clicks import ClickModel
from components.service.events import EventStore
from components.service.replay import eval_queries, replay


class InProcessService:
    """The service on a free loopback port in this process (uvicorn in a thread)."""

    def __init__(self, cfg: PipelineConfig):
        import socket

        import uvicorn

        from components.service.app import build

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(build(cfg), host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the in-process service did not start")
            time.sleep(0.05)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=20)


def evaluate_online(cfg: PipelineConfig, data_uri: str, out_dir: Path, url: str | None = None,
                    mlflow_run_id: str | None = None, modes: tuple[str, ...] = ("split", "interleave"),
                    seed: int | None = None) -> dict[str, Any]:
    """Replay the eval queries with simulated users, analyse, write the report, log to MLflow.

    ``seed``: the replay seed (the pipeline derives it from the run key: ``replay.replay_seed``);
    None: ``online.seed``."""
    from components.data.io import load_world

    world = load_world(data_uri)
    queries, relevant, categories = eval_queries(world)
    on = cfg.online
    seed = on.seed if seed is None else int(seed)
    since = time.time()
    per_mode = max(1, on.max_requests // len(modes))
    runs = {}

    def drive(target: str) -> None:
        for i, mode in enumerate(modes):
            runs[mode] = replay(target, queries, relevant, mode=mode, n_users=on.n_users, max_requests=per_mode,
                                max_seconds=on.max_seconds / len(modes), concurrency=on.concurrency, k=on.k,
                                click_model=ClickModel.from_config(on), seed=seed + i)

    if url is None:
        with InProcessService(cfg) as svc:
            drive(svc.url)
    else:
        drive(url)
    store = EventStore(cfg.serve.event_store_url)
    try:
        searches, feedback = store.frames(experiment=on.experiment, since=since)
    finally:
        store.close()
    result = analysis.analyze(searches, feedback, relevant, categories, on.challenger_share, on.alpha, on.srm_alpha,
                              gate=cfg.gate, k=on.k)
    result["replay"] = runs
    result["replay_seed"] = seed
    paths = analysis.write_report(Path(out_dir), result, title="Online A/B test: champion vs challenger")
    result["report"] = str(paths["html"])
    result["mlflow_run_id"] = analysis.log_to_mlflow(cfg, result, Path(out_dir), run_id=mlflow_run_id)
    return result
