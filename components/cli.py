"""`lrem`: the command line of every pipeline step (also the container entrypoint).

    lrem data generate [--out data]     write the seeded demo world
    lrem data bootstrap                 make sure the DVC remote holds data.dvc's data
    lrem data import FMT SRC --out DIR  convert a public data set (beir, esci, wands) to the data contract
    lrem dvc ARGS                       dvc on the state dir's DVC cache and remote (lrem dvc pull, lrem dvc push)
    lrem steps                          the pipeline's steps, in order, with their inputs and outputs
    lrem step NAME --ctx ctx.json       run one pipeline step on the artefacts in ctx.json
                                        (step name -> artefact; --save adds the result to it)
    lrem step build_index --shard I     one shard of a sharded step (index.shards); without --shard, the gathering
    lrem step train_grpo --launch       a training step under `accelerate launch`, one process a GPU of the
                                        config's compute.gpus (what the Kubernetes pods run)
    lrem pipeline                       run all steps in this process, no Airflow
                                        (writes the context to .lrem/runs/<run key>/ctx.json)
    lrem run-lock [--clear]             the run holding the pipeline's run lock (one run at a time)
    lrem milvus start|stop|status       the embedded Milvus Lite server
    lrem serve-sync                     point the serving alias at the MLflow champion's collection
                                        (verified first, recorded in the audit trail)
    lrem serve [--background]           the search service; serve-stop, serve-status
    lrem replay | online-eval           simulated users against the service; the online A/B analysis
    lrem history | rollback [--to V]    audit trail of alias moves; move champion back, serving follows
    lrem summary                        metrics, versions, aliases, collection, MLflow UI command
    lrem gate calibrate [--twin URI]    the gate's false-veto rate and power on simulated nights (docs/gate.md)
    lrem gate train-pair --data DIR     the calibration's model pair: one recipe, one model a seed (--seeds 0,1)
    lrem reproduce scifact              MiniLM on BEIR SciFact through import, Milvus and the metrics vs MTEB
    lrem clean-up [--keep N] [--dry-run]  drop collections neither champion, challenger, serving nor recent champions
    lrem experiment [--quick] ...       LREM against the paper's baselines on the demo world
    lrem config [--show | --reference]  the config's resolved values; every field's reference (docs/config.md)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from components.config import load_config


def _config(args):
    from components.pipeline import run_conf_overrides

    return load_config(args.config, run_conf_overrides({"allow_drift": getattr(args, "allow_drift", "")}))


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


def cmd_dvc(args) -> int:
    """``dvc ARGS`` in this directory, on the state dir's DVC cache and remote ($LREM_HOME/dvc/config)."""
    import subprocess

    from components.data import versioning

    here = Path.cwd().resolve()
    repo = next((p for p in (here, *here.parents) if (p / ".dvc").is_dir()), None)
    env = {**os.environ, **versioning.dvc_env(repo)}
    return subprocess.run([versioning.dvc_executable(), *args.dvc_args], env=env).returncode


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
    print(stats["summary"], file=sys.stderr)  # one line: what was repaired or dropped (import_report.json)
    return 0


def cmd_steps(args) -> int:
    from components.pipeline import STEPS

    for step in STEPS.values():
        gets = ", ".join(f"{param}={up}" for param, up in step.inputs.items()) or "run key"
        print(f"{step.name:<20} ({gets}) -> {step.produces.__name__}")
    return 0


def accelerate_command(args, cfg) -> list[str] | None:
    """``lrem step NAME --launch``: the ``accelerate launch`` command line that reruns this one in
    ``compute.gpus`` processes (read from the run's config now, not when the DAG was parsed), or
    None: a one-process step, ``compute.gpus`` at most 1, or already a process of a launcher."""
    from components.pipeline import get_step

    step = get_step(args.name)
    gpus = int(cfg.compute.gpus)
    if not step.multi_process or args.shard is not None or gpus <= 1:
        return None
    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:  # a process accelerate (torchrun) started
        return None
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() < gpus:
        raise SystemExit(f"compute.gpus is {gpus} in {args.config} but this machine sees {torch.cuda.device_count()} "
                         "GPUs: the pod's nvidia.com/gpu request and the config disagree")
    rest = [a for a in args.argv if a != "--launch"]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpus),
            "-m", "components.cli", *rest]


def cmd_step(args) -> int:
    from components.pipeline import run_step

    cfg = _config(args)
    if args.launch:
        command = accelerate_command(args, cfg)
        if command is not None:  # the launcher replaces this process (signals reach it, its status is the pod's)
            print("lrem step --launch: " + " ".join(command), file=sys.stderr, flush=True)
            os.execv(command[0], command)
    ctx_file = Path(args.ctx) if args.ctx else None
    ctx = json.loads(ctx_file.read_text()) if ctx_file is not None and ctx_file.exists() else {}
    if args.ctx_json:
        ctx.update(json.loads(args.ctx_json))
    if args.shard is not None:  # one shard of a sharded step (a mapped Airflow task)
        from components.pipeline import run_shard

        text = json.dumps(run_shard(args.name, cfg, args.shard, ctx), default=str)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
        print(text)
        return 0
    result = run_step(args.name, cfg, ctx, run_key=args.run_key)
    text = result.to_json()
    if os.environ.get("RANK", "0") != "0":  # a worker of `accelerate launch`: rank 0 writes the outputs
        return 0
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.save:
        if ctx_file is None:
            raise SystemExit("--save needs --ctx FILE")
        ctx[args.name] = result.to_dict()
        ctx_file.write_text(json.dumps(ctx, indent=2))
    print(text)
    return 0


def cmd_pipeline(args) -> int:
    from components.paths import run_dir
    from components.pipeline import run_all, run_key_from

    cfg = _config(args)
    run_key = run_key_from(args.run_key or time.strftime("manual-%Y%m%dT%H%M%S"))
    ctx_file = run_dir(run_key) / "ctx.json"
    ctx = run_all(cfg, run_key, ctx_file=ctx_file)
    print(json.dumps(ctx, indent=2))
    print(f"context: {ctx_file} (rerun one step: lrem step NAME --ctx {ctx_file})")
    return 0


def cmd_run_lock(args) -> int:
    from components.runlock import RunLock

    lock = RunLock()
    if args.clear:
        holder = lock.clear()
        print(f"cleared the run lock of {holder.describe()}" if holder else f"no run lock ({lock.path})")
        return 0
    holder = lock.holder()
    if holder is None:
        print(f"free: no run holds {lock.path}")
        return 0
    reason = lock.stale_reason(holder)
    print(f"held by {holder.describe()}")
    print(f"stale ({reason}): the next run takes it over" if reason else
          "active: another run fails at once; if that run is dead: lrem run-lock --clear")
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
    from components.service.audit import sync  # verifies, then calls serving.sync_serving_alias, then audits

    cfg = _config(args)
    print(json.dumps(sync(cfg), indent=2, default=str))
    return 0


def cmd_clean_up(args) -> int:
    from components.index.retention import clean_up_collections

    result = clean_up_collections(_config(args), keep_last_champions=args.keep, dry_run=args.dry_run)
    print(json.dumps(result, indent=2))
    return 0


def cmd_reproduce(args) -> int:
    from components.evaluation.reproduce import PUBLISHED, index_config_for, reproduce

    index_cfg = index_config_for(_config(args).index, args.index_type)
    published = PUBLISHED[args.name]
    print(f"reproducing {published.dataset} with {published.model} ({published.source})")
    try:
        result = reproduce(args.name, src=args.src, work_dir=args.work_dir, index_cfg=index_cfg,
                           tolerance=args.tolerance)
    except FileNotFoundError as exc:
        print(f"lrem reproduce: {exc}", file=sys.stderr)
        return 1
    print(result.table())
    print(f"{result.n_queries} queries, {result.n_documents} documents in Milvus collection {result.collection} "
          f"({result.index_type}); seconds: {result.seconds}")
    print(f"PASS: every figure within {result.tolerance} of the published one" if result.passed
          else f"FAIL: a figure is more than {result.tolerance} from the published one")
    return 0 if result.passed else 1


def cmd_config(args) -> int:
    if args.reference:  # docs/config.md: `lrem config --reference > docs/config.md`
        from components.config_reference import markdown

        print(markdown())
        return 0
    import yaml

    print(yaml.safe_dump(_config(args).to_dict(), sort_keys=False), end="")
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
    parser.add_argument("--allow-drift", default="", metavar="BOUNDS",
                        help="drift bounds of the raw-data gate this run may exceed: 'all' or names, comma-separated "
                             "(the run conf's allow_drift; docs/data-contract.md)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="generate or bootstrap the demo data; import a public data set")
    p.add_argument("action", choices=["generate", "bootstrap", "import"])
    p.add_argument("source", nargs="*", help="import only: FORMAT (beir, esci, wands) and SRC folder")
    p.add_argument("--out", default="data")
    p.add_argument("--categories", default="rule", help="import: 'rule' (query-type heuristic) or one category")
    p.add_argument("--eval-fraction", type=float, default=0.2, help="import: eval share where the source has no split")
    p.add_argument("--locale", help="import esci: keep one product_locale (us, es, jp)")
    p.set_defaults(fn=cmd_data)

    p = sub.add_parser("dvc", help="dvc with the state dir's cache and remote: lrem dvc pull, lrem dvc push, ...")
    p.add_argument("dvc_args", nargs=argparse.REMAINDER, metavar="DVC_ARGS", help="the dvc command line")
    p.set_defaults(fn=cmd_dvc)

    p = sub.add_parser("steps", help="list the pipeline's steps, their inputs and outputs")
    p.set_defaults(fn=cmd_steps)

    p = sub.add_parser("step", help="run one pipeline step")
    p.add_argument("name")
    p.add_argument("--ctx", help="JSON file: step name -> artefact, holding at least the step's inputs")
    p.add_argument("--ctx-json", help="the same as inline JSON (KubernetesPodOperator); added to --ctx")
    p.add_argument("--run-key", help="run key (the first step, pull_data, only)")
    p.add_argument("--out", help="also write the step's artefact here (e.g. /airflow/xcom/return.json)")
    p.add_argument("--save", action="store_true", help="add the step's artefact to the --ctx file")
    p.add_argument("--shard", type=int, default=os.environ.get("LREM_SHARD"),
                   help="run only this shard of a sharded step (build_index: index.shards); $LREM_SHARD")
    p.add_argument("--launch", action="store_true",
                   help="a multi-process step (train_cold_start, train_grpo): rerun it under `accelerate launch`, "
                        "one process a GPU of the config's compute.gpus, when that is more than 1 (the Kubernetes "
                        "pods' command); no effect on other steps")
    p.set_defaults(fn=cmd_step)

    p = sub.add_parser("pipeline", help="run every step in this process")
    p.add_argument("--run-key")
    p.set_defaults(fn=cmd_pipeline)

    p = sub.add_parser("run-lock", help="show (or --clear) the run holding the pipeline's run lock")
    p.add_argument("--clear", action="store_true", help="remove the lock whoever holds it (a dead run's)")
    p.set_defaults(fn=cmd_run_lock)

    p = sub.add_parser("milvus", help="the embedded Milvus Lite server")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(fn=cmd_milvus)

    p = sub.add_parser("serve-sync", help="point the serving alias at the champion's collection")
    p.set_defaults(fn=cmd_serve_sync)

    sub.add_parser("experiment", help="LREM against the baselines (options: lrem experiment --help)")

    p = sub.add_parser("clean-up", help="drop collections no longer needed (retention: index.keep_last_champions)")
    p.add_argument("--keep", type=int, help="keep the collections of the last N champions (default: the config's)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, drop nothing")
    p.set_defaults(fn=cmd_clean_up)

    p = sub.add_parser("reproduce", help="reproduce a published retrieval figure through the project's own path")
    p.add_argument("name", choices=["scifact"])
    p.add_argument("--src", help="the BEIR folder (default: ../shared/data/beir-scifact)")
    p.add_argument("--work-dir", help="where the imported data and result.json go (default: .lrem/reproduce/NAME)")
    p.add_argument("--index-type", default="FLAT", help="Milvus index type (default FLAT: exact, as published)")
    p.add_argument("--tolerance", type=float, default=0.005)
    p.set_defaults(fn=cmd_reproduce)

    p = sub.add_parser("summary", help="print the state of the registry and the index")
    p.set_defaults(fn=cmd_summary)

    p = sub.add_parser("config", help="print the config's resolved values, or the reference of every field")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--show", action="store_true", help="the --config file's resolved values as YAML (the default)")
    shown.add_argument("--reference", action="store_true",
                       help="every field: type, default, allowed values, what it does (markdown: docs/config.md)")
    p.set_defaults(fn=cmd_config)

    from components.service.cli import add_commands as add_service_commands

    add_service_commands(sub)  # serve, serve-stop, serve-status, replay, online-eval, history, rollback
    from components.evaluation.calibrate import add_commands as add_gate_commands

    add_gate_commands(sub)  # gate calibrate (docs/gate.md)
    from components.stack.cli import add_commands as add_stack_commands

    add_stack_commands(sub)  # stack up|down|status (make up / down / status)

    args = parser.parse_args(argv)
    args.argv = argv  # `lrem step --launch` reruns this command line under accelerate
    if not logging.getLogger().handlers:  # steps report through logging
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
