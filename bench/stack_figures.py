"""Figures of the long-running stack (docs/stack.md): memory per service, and Airflow's overhead.

    python bench/stack_figures.py memory [--samples N --every S]
        resident memory (PSS where the kernel gives it, else RSS) of every process of the stack
        started by `make up` (the recorded process groups, the Postgres cluster, the Milvus Lite
        server), per service and in total; with --samples, the peak total over N samples
    python bench/stack_figures.py compare [--config configs/smoke.yaml --pairs 1]
        Airflow's overhead measured in one invocation: for each pair, a nightly run triggered
        through the REST API and waited for (the stack's memory sampled meanwhile), then the same
        config through `lrem pipeline` in this shell (the stack's stores: tracking server,
        Postgres, Milvus); pairs alternate which goes first; prints each wall time, the load
        average, the ratio and Airflow's share (scheduled - pipeline) / scheduled
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


def _trigger_and_wait(s, config: str, poll: float, timeout: float) -> tuple[str, dict, int]:
    """Trigger lrem_nightly on ``config``; wait until it ends. (run id, run, peak stack MiB)."""
    from components.stack.stack import airflow_api

    resp = airflow_api(s, "POST", "/dags/lrem_nightly/dagRuns", json={"logical_date": None, "conf": {"config": config}})
    resp.raise_for_status()
    run_id = resp.json()["dag_run_id"]
    peak = 0
    deadline = time.monotonic() + timeout
    while True:
        run = airflow_api(s, "GET", f"/dags/lrem_nightly/dagRuns/{run_id}").json()
        peak = max(peak, sum(m for _, m in memory_by_service().values()))
        if run.get("state") in ("success", "failed"):
            return run_id, run, peak
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} still {run.get('state')} after {timeout:.0f} s")
        time.sleep(poll)


def cmd_compare(args) -> int:
    import subprocess

    from components.stack.settings import StackSettings

    s = StackSettings.from_env()
    lrem = Path(sys.executable).parent / "lrem"
    rows = []
    for pair in range(args.pairs):
        order = ("scheduled", "pipeline") if pair % 2 == 0 else ("pipeline", "scheduled")
        row = {"pair": pair + 1}
        for which in order:
            load0 = os.getloadavg()[0]
            if which == "scheduled":
                t0 = time.time()
                run_id, run, peak = _trigger_and_wait(s, args.config, args.poll, args.timeout)
                row["queued_s"] = _ts(run["start_date"]) - t0
                row["scheduled_s"] = _ts(run["end_date"]) - _ts(run["start_date"])
                row["scheduled_state"] = run["state"]
                row["run_id"] = run_id
                row["peak_mib"] = peak
                print(f"pair {pair + 1}: scheduled run {run_id} {run['state']} in {row['scheduled_s']:.0f} s "
                      f"(started {row['queued_s']:.0f} s after the trigger; stack peak {peak} MiB PSS)", flush=True)
            else:
                t0 = time.monotonic()
                proc = subprocess.run([str(lrem), "--config", args.config, "pipeline"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
                row["pipeline_s"] = time.monotonic() - t0
                row["pipeline_rc"] = proc.returncode
                print(f"pair {pair + 1}: lrem pipeline rc {proc.returncode} in {row['pipeline_s']:.0f} s", flush=True)
                if proc.returncode:
                    print(proc.stderr[-3000:])
            row[f"load_{which}"] = round((load0 + os.getloadavg()[0]) / 2, 1)
        rows.append(row)
    print()
    print("| pair | scheduled run (s) | `lrem pipeline` (s) | scheduled / pipeline | Airflow's share | load avg (sched / pipe) | stack peak MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        sch, pip = r["scheduled_s"], r["pipeline_s"]
        print(f"| {r['pair']} | {sch:.0f} ({r['scheduled_state']}) | {pip:.0f} (rc {r['pipeline_rc']}) | {sch / pip:.2f}x | "
              f"{(sch - pip) / sch:.0%} | {r['load_scheduled']} / {r['load_pipeline']} | {r['peak_mib']} |")
    if len(rows) > 1:
        sch = sum(r["scheduled_s"] for r in rows)
        pip = sum(r["pipeline_s"] for r in rows)
        print(f"| all | {sch:.0f} | {pip:.0f} | {sch / pip:.2f}x | {(sch - pip) / sch:.0%} | | |")
    return 0 if all(r["pipeline_rc"] == 0 and r["scheduled_state"] == "success" for r in rows) else 1


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
    p = sub.add_parser("compare")
    p.add_argument("--config", default="configs/smoke.yaml")
    p.add_argument("--pairs", type=int, default=1)
    p.add_argument("--poll", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(fn=cmd_compare)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
