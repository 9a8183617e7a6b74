"""Figures of the long-running stack (docs/stack.md): memory per service, and Airflow's overhead.

    python bench/stack_figures.py memory [--samples N --every S]
        resident memory (PSS where the kernel gives it, else RSS) of every process of the stack
        started by `make up` (the recorded process groups, the Postgres cluster, the Milvus Lite
        server), per service and in total; with --samples, the peak total over N samples
    python bench/stack_figures.py overhead RUN_ID [--pipeline-seconds S]
        a finished lrem_nightly run's wall time, the sum of its tasks' durations, and (given the
        wall time of the same steps in `lrem pipeline`, measured on the same machine) Airflow's
        share of the scheduled run: (scheduled wall - pipeline wall) / scheduled wall

Both read the stack named by the environment (LREM_HOME and the ports of `lrem stack`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _memory_kib(pid: int) -> int:
    """PSS (shared pages counted once across processes) where available, else RSS."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def stack_processes() -> dict[str, set[int]]:
    """service -> pids: each recorded group with the processes it started (task processes run in
    sessions of their own), the Milvus Lite server, the postmaster and its backends."""
    from components.index import server as milvus
    from components.stack import procs
    from components.stack.settings import StackSettings

    s = StackSettings.from_env()
    table = procs._process_table()
    out: dict[str, set[int]] = {}
    for rec_file in procs.records_dir().glob("*.json"):
        rec = procs.read(rec_file.stem)
        if rec is not None:
            out[rec.name] = procs.members(rec)
    pid = milvus._read_pid()
    if pid:
        out["milvus"] = {p for p, (_, pgid) in table.items() if pgid == pid}
    pm = s.home / "postgres" / "data" / "postmaster.pid"
    if pm.exists():
        pg = int(pm.read_text().split()[0])
        out["postgres"] = {pg} | {p for p, (ppid, _) in table.items() if ppid == pg}
    return out


def memory_by_service() -> dict[str, tuple[int, int]]:
    """service -> (processes, MiB)."""
    return {name: (len(pids), sum(_memory_kib(p) for p in pids) // 1024)
            for name, pids in stack_processes().items()}


def cmd_memory(args) -> int:
    peak, peak_at = None, None
    for i in range(args.samples):
        mem = memory_by_service()
        total = sum(m for _, m in mem.values())
        if peak is None or total > sum(m for _, m in peak.values()):
            peak, peak_at = mem, time.strftime("%H:%M:%S")
        if i + 1 < args.samples:
            time.sleep(args.every)
    total = sum(m for _, m in peak.values())
    print(f"stack memory ({'peak of ' + str(args.samples) + ' samples, at ' + peak_at if args.samples > 1 else 'now'}):")
    for name, (n, mib) in sorted(peak.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:<22} {n:>3} processes {mib:>6} MiB  ({mib / max(total, 1):.0%})")
    print(f"  {'total':<22} {sum(n for n, _ in peak.values()):>3} processes {total:>6} MiB")
    return 0


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def cmd_overhead(args) -> int:
    from components.stack.settings import StackSettings
    from components.stack.stack import airflow_api

    s = StackSettings.from_env()
    run = airflow_api(s, "GET", f"/dags/lrem_nightly/dagRuns/{args.run_id}").json()
    if run.get("state") not in ("success", "failed"):
        print(f"run {args.run_id} is {run.get('state')}: wait until it ends")
        return 1
    tis = airflow_api(s, "GET", f"/dags/lrem_nightly/dagRuns/{args.run_id}/taskInstances",
                      params={"limit": 100}).json()["task_instances"]
    wall = _ts(run["end_date"]) - _ts(run["start_date"])
    in_tasks = sum(t["duration"] or 0 for t in tis)
    print(f"scheduled run {args.run_id}: {run['state']}, wall {wall:.0f} s, {len(tis)} task instances, "
          f"sum of task durations {in_tasks:.0f} s, between tasks {wall - in_tasks:.0f} s ({(wall - in_tasks) / wall:.0%})")
    if args.pipeline_seconds:
        p = args.pipeline_seconds
        print(f"same steps in `lrem pipeline`: {p:.0f} s (baseline); scheduled / pipeline = {wall / p:.2f}x; "
              f"Airflow's share of the scheduled run: {(wall - p) / wall:.0%}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("memory")
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--every", type=float, default=5.0)
    p.set_defaults(fn=cmd_memory)
    p = sub.add_parser("overhead")
    p.add_argument("run_id")
    p.add_argument("--pipeline-seconds", type=float)
    p.set_defaults(fn=cmd_overhead)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
