"""The service's subcommands of `lrem` (registered by components/cli.py):

    lrem serve [--host H] [--port P] [--background]   the search service (foreground, or detached)
    lrem serve-stop                                    stop the detached service
    lrem serve-status                                  pid, URL and /healthz of the detached service
    lrem replay [--url U] [--mode split|interleave] [--requests N] [--seconds S]
                                                       simulated users against the running service
    lrem online-eval [--url U] [--data DIR]            replay both modes, analyse, report to MLflow
                                                       (default: the detached service, else one in-process)
    lrem history                                       the audit trail of champion / serving alias moves
    lrem rollback [--to VERSION]                       move champion back (default: previous champion)
"""

from __future__ import annotations

import json
import time


def _cfg(args):
    from components.config import load_config

    return load_config(args.config)


def cmd_serve(args) -> int:
    cfg = _cfg(args)
    if args.background:
        from components.service.runner import start_background

        out = start_background(cfg, args.config, args.host, args.port)
        health = out["health"] or {}
        arms = ", ".join(f"{a} v{d['version']} ({d['collection']})" for a, d in (health.get("arms") or {}).items())
        print(f"lrem serve {'started' if out['started'] else 'already running'} (pid {out['pid']}): {out['url']}")
        print(f"  arms: {arms or 'none loaded yet: ' + str(health.get('last_error'))}")
        print(f"  try:  curl -s -X POST {out['url']}/search -H 'content-type: application/json' "
              "-d '{\"query\": \"waterproof hiking backpack\", \"k\": 5, \"user_id\": \"u1\"}'")
        print(f"  stop: make serve-stop   (health: {out['url']}/healthz, metrics: {out['url']}/metrics)")
        return 0
    import logging

    from components.service.app import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(cfg, args.host, args.port)
    return 0


def cmd_serve_stop(args) -> int:
    from components.service.runner import stop_background

    print("lrem serve stopped" if stop_background() else "lrem serve was not running")
    return 0


def cmd_serve_status(args) -> int:
    from components.service.runner import _recorded, healthz

    running = _recorded()
    if running is None:
        print("lrem serve is not running")
        return 1
    print(json.dumps({"pid": running[0], "url": running[1], "health": healthz(running[1])}, indent=2))
    return 0


def _url(args, cfg) -> str:
    from components.service.runner import _recorded, url_of

    if args.url:
        return args.url
    running = _recorded()
    return running[1] if running else url_of(cfg)


def _data_uri(args, cfg) -> str:
    if args.data:
        return args.data
    from components import tracking
    from components.registry import models

    tracking.configure(cfg)
    import mlflow

    for alias in (models.CHALLENGER, models.CHAMPION):
        mv = models.alias_version(cfg.tracking.model_name, alias)
        if mv is not None and mv.run_id:
            uri = mlflow.MlflowClient().get_run(mv.run_id).data.tags.get("data_uri")
            if uri:
                return uri
    return "data"


def cmd_replay(args) -> int:
    from components.data.io import load_world
    from components.service.clicks import ClickModel
    from components.service.replay import eval_queries, replay

    cfg = _cfg(args)
    queries, relevant, _ = eval_queries(load_world(_data_uri(args, cfg)))
    on = cfg.online
    out = replay(_url(args, cfg), queries, relevant, mode=args.mode or on.mode, n_users=on.n_users,
                 max_requests=args.requests or on.max_requests, max_seconds=args.seconds or on.max_seconds,
                 concurrency=on.concurrency, k=on.k, click_model=ClickModel.from_config(on), seed=on.seed)
    print(json.dumps(out, indent=2))
    return 0


def cmd_online_eval(args) -> int:
    from components.paths import state_path
    from components.service.online import evaluate_online

    cfg = _cfg(args)
    if args.requests:
        cfg.online.max_requests = args.requests
    out = state_path("online", time.strftime("%Y%m%dT%H%M%S"))
    from components.service.runner import _recorded

    running = _recorded()
    url = args.url or (running[1] if running else None)  # None: a service in this process
    result = evaluate_online(cfg, _data_uri(args, cfg), out, url=url)
    print(f"{'REGRESSION' if result['regression'] else 'OK'}: {result['reason']}")
    print(f"report: {result['report']}  (MLflow run {result['mlflow_run_id']})")
    return 0


def cmd_history(args) -> int:
    from components.service.audit import history

    events = history(_cfg(args))
    if not events:
        print("no alias moves recorded yet")
        return 0
    print(f"{'when (UTC)':<25} {'what':<14} {'from':>5} -> {'to':<5} {'collection':<28} by")
    for e in events:
        print(f"{e['when']:<25} {e['kind']:<14} {str(e['from_version'] or '-'):>5} -> {str(e['to_version'] or '-'):<5} "
              f"{str(e['to_collection'] or '-'):<28} {e['actor']}" + (f"  ({e['reason']})" if e.get("reason") else ""))
    return 0


def cmd_rollback(args) -> int:
    from components.service.audit import rollback

    out = rollback(_cfg(args), to=args.to)
    print(f"champion v{out['from_version']} -> v{out['to_version']}; serving alias {out['serving']['alias']} -> "
          f"{out['serving']['collection']} in {out['seconds']:.1f}s")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("serve", help="the search service (FastAPI + uvicorn)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--background", action="store_true", help="detach, wait for /healthz, print the URL")
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("serve-stop", help="stop the detached search service")
    p.set_defaults(fn=cmd_serve_stop)
    p = sub.add_parser("serve-status", help="the detached search service's pid, URL and health")
    p.set_defaults(fn=cmd_serve_status)
    for name, fn, text in (("replay", cmd_replay, "simulated users against the running service (loopback only)"),
                           ("online-eval", cmd_online_eval, "replay split + interleaving, analyse, report to MLflow")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--url", help="service URL (default: the detached service, else serve.host:serve.port)")
        p.add_argument("--data", help="data folder with the eval queries (default: the challenger's snapshot)")
        p.add_argument("--requests", type=int, help="bound on searches (default: online.max_requests)")
        if name == "replay":
            p.add_argument("--mode", choices=["split", "interleave"])
            p.add_argument("--seconds", type=float, help="bound on wall time (default: online.max_seconds)")
        p.set_defaults(fn=fn)
    p = sub.add_parser("history", help="audit trail of champion and serving alias moves")
    p.set_defaults(fn=cmd_history)
    p = sub.add_parser("rollback", help="move champion back and make serving follow")
    p.add_argument("--to", help="version to roll back to (default: the previous champion)")
    p.set_defaults(fn=cmd_rollback)
