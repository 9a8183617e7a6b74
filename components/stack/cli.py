"""`lrem stack up|down|status` (registered by components/cli.py; `make up`, `make down`, `make status`)."""

from __future__ import annotations


def cmd_stack(args) -> int:
    from components.stack import stack
    from components.stack.settings import StackError, StackSettings

    try:
        settings = StackSettings.from_env()
        if args.action == "up":
            print(f"lrem stack up (state {settings.home}, config {settings.config}, schedule {settings.schedule!r})")
            out = stack.up(settings)
            what = f"started {', '.join(out['started'])}" if out["started"] else "everything was already running"
            print(f"stack healthy in {out['seconds']:.1f}s: {what}")
            for dag_id, schedule in out["schedules"].items():
                print(f"  DAG {dag_id} unpaused (schedule {schedule})")
            stack.print_urls(settings)
            return 0
        if args.action == "down":
            stopped = stack.down(settings)
            print(f"lrem stack down: stopped {', '.join(stopped)}" if stopped else "lrem stack down: nothing was running")
            return 0
        rows = stack.status(settings)
        width = max(len(r["service"]) for r in rows)
        for r in rows:
            mark = "healthy " if r["healthy"] else "DOWN    "
            print(f"{r['service']:<{width}}  {mark} pid {str(r['pid']):<9} {r['url']:<28} {r['detail']}")
        return 0 if all(r["healthy"] for r in rows) else 1
    except StackError as exc:
        print(f"lrem stack {args.action}: {exc}")
        return 1


def add_commands(sub) -> None:
    p = sub.add_parser("stack", help="the long-running stack: Postgres, MLflow server, Airflow, Milvus, the service")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(fn=cmd_stack)
