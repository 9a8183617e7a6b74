"""`lrem`: the command line of every pipeline step (also the container entrypoint).

    lrem data generate [--out data]     write the seeded demo world
    lrem data bootstrap                 make sure the DVC remote holds data.dvc's data
    lrem data import FMT SRC --out DIR  convert a public data set (beir, esci, wands) to the data contract
    lrem step NAME --ctx in.json        run one pipeline step (prints / writes its context)
    lrem pipeline                       run all steps in this process, no Airflow
    lrem milvus start|stop|status       the embedded Milvus Lite server
    lrem serve-sync                     point the serving alias at the MLflow champion's collection
    lrem summary                        metrics, versions, aliases, collection, MLflow UI command
    lrem experiment [--quick] ...       LREM against the paper's baselines on the demo world
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from components.config import load_config


def _config(args):
    return load_config(args.config)


def cmd_data(args) -> int:
    if args.action == "import":
        return cmd_data_import(args)
    cfg = _config(args)
    from components.data.generate import generate_world

    if args.action == "generate":
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stats = generate_world(cfg.world, out)
        print(json.dumps(stats, indent=2, default=str))
        return 0
    from components.data import versioning

    result = versioning.bootstrap(lambda d: generate_world(cfg.world, d))
    state = "generated, verified against data.dvc and pushed" if result["generated"] else "already in the remote"
    print(f"data {result['md5']}: {state}")
    return 0


def cmd_data_import(args) -> int:
    from components.data.importers import FORMATS, ImportFormatError, ImportOptions, import_dataset

    if len(args.source) != 2 or args.source[0] not in FORMATS:
        print(f"usage: lrem data import {{{','.join(FORMATS)}}} SRC --out DIR", file=sys.stderr)
        return 2
    fmt, src = args.source
    try:
        options = ImportOptions(categories=args.categories, eval_fraction=args.eval_fraction, locale=args.locale)
        stats = import_dataset(fmt, src, args.out, options)
    except (ImportFormatError, ValueError) as exc:
        print(f"lrem data import {fmt}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stats, indent=2, default=str))
    return 0


def cmd_step(args) -> int:
    from components.pipeline import run_step

    cfg = _config(args)
    ctx = json.loads(Path(args.ctx).read_text()) if args.ctx else None
    if args.ctx_json:
        ctx = json.loads(args.ctx_json)
    result = run_step(args.name, cfg, ctx, run_key=args.run_key)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    return 0


def cmd_pipeline(args) -> int:
    from components.pipeline import run_all

    cfg = _config(args)
    ctx = run_all(cfg, args.run_key or time.strftime("manual-%Y%m%dT%H%M%S"))
    print(json.dumps({k: v for k, v in ctx.items() if k != "eval"}, indent=2, default=str))
    return 0


def cmd_milvus(args) -> int:
    from components.index import server

    cfg = _config(args)
    if args.action == "start":
        server.ensure_server(cfg.index.milvus_uri)
    elif args.action == "stop":
        server.stop_server()
    print(json.dumps(server.server_status(cfg.index.milvus_uri), indent=2, default=str))
    return 0


def cmd_serve_sync(args) -> int:
    from components.serving import sync_serving_alias

    cfg = _config(args)
    print(json.dumps(sync_serving_alias(cfg), indent=2))
    return 0


def cmd_summary(args) -> int:
    from components.summary import print_summary

    print_summary(_config(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "experiment":  # its own options: python -m components.experiment --help
        from components.experiment.__main__ import main as experiment_main

        return experiment_main(argv[1:])
    parser = argparse.ArgumentParser(prog="lrem", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml", help="YAML config (default: configs/demo.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="generate or bootstrap the demo data; import a public data set")
    p.add_argument("action", choices=["generate", "bootstrap", "import"])
    p.add_argument("source", nargs="*", help="import only: FORMAT (beir, esci, wands) and SRC folder")
    p.add_argument("--out", default="data")
    p.add_argument("--categories", default="rule", help="import: 'rule' (query-type heuristic) or one category")
    p.add_argument("--eval-fraction", type=float, default=0.2, help="import: eval share where the source has no split")
    p.add_argument("--locale", help="import esci: keep one product_locale (us, es, jp)")
    p.set_defaults(fn=cmd_data)

    p = sub.add_parser("step", help="run one pipeline step")
    p.add_argument("name")
    p.add_argument("--ctx", help="JSON file with the previous step's output")
    p.add_argument("--ctx-json", help="the previous step's output as inline JSON (KubernetesPodOperator)")
    p.add_argument("--run-key", help="run key (pull_data only)")
    p.add_argument("--out", help="also write the resulting context here (e.g. /airflow/xcom/return.json)")
    p.set_defaults(fn=cmd_step)

    p = sub.add_parser("pipeline", help="run every step in this process")
    p.add_argument("--run-key")
    p.set_defaults(fn=cmd_pipeline)

    p = sub.add_parser("milvus", help="the embedded Milvus Lite server")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(fn=cmd_milvus)

    p = sub.add_parser("serve-sync", help="point the serving alias at the champion's collection")
    p.set_defaults(fn=cmd_serve_sync)

    sub.add_parser("experiment", help="LREM against the baselines (options: lrem experiment --help)")

    p = sub.add_parser("summary", help="print the state of the registry and the index")
    p.set_defaults(fn=cmd_summary)

    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
