"""One nightly run at a time on one state dir: the pipeline's run lock.

The scheduler runs one ``lrem_nightly`` run at a time (``max_active_runs=1``: a second run
waits queued). ``airflow dags test`` (what ``make demo`` runs) and ``lrem pipeline`` know
nothing of that: two of them, or one beside the scheduler's run, would train, register,
index and promote on the same registry, index and run folders at once. So every task of
the DAG (embedded execution) and ``lrem pipeline`` hold a lock file,
``$LREM_HOME/locks/<dag id>.json``, naming the run that owns the state dir:

- a task takes it for its run (the first task of a run takes it; every later task and
  every retry of the same run finds its own run there and goes on), and marks it with its
  process id and a heartbeat (every 30 s) while it runs;
- the last task (``clean_up``) releases it, and so does a task that ends its run by
  failing for good (a non-transient error, or no retry left); ``lrem pipeline`` releases
  it when it returns or fails;
- a task of another run finds it held and fails at once, without retries, before its step
  runs (nothing of the registry, the champion or the index is touched), naming the holder
  run and how to clear it (:class:`RunLockError`).

A lock left by a run that died is stale, and the next run takes it over (with a warning):
its holder's task process on this host is gone, or Airflow has that run as finished
(``success``/``failed``: e.g. marked failed in the UI), or it had no heartbeat for
``LREM_RUN_LOCK_STALE_S`` seconds (default 600; a retry waits 2 minutes). By hand:
``lrem run-lock`` shows it, ``lrem run-lock --clear`` removes it.

Production (``LREM_EXECUTION=kubernetes``) has no shared state dir: there the scheduler's
``max_active_runs=1`` is the guard, and ``airflow dags test`` is not used.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from components.paths import state_path

log = logging.getLogger(__name__)

DAG_ID = "lrem_nightly"
HEARTBEAT_S = 30.0
FINISHED_RUN_STATES = ("success", "failed")


def stale_after_s() -> float:
    return float(os.environ.get("LREM_RUN_LOCK_STALE_S", "600"))


class RunLockError(RuntimeError):
    """Another run holds the pipeline's run lock (not transient: the task is not retried)."""


@dataclass
class LockHolder:
    dag_id: str
    run_id: str
    host: str
    pid: int | None  # the process of the task running now; None between two tasks of the run
    task: str | None  # the task running now, or the last one that ran
    acquired_at: float
    heartbeat_at: float

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        doing = f"task {self.task} running in pid {self.pid} on {self.host}" if self.pid is not None else \
            f"between tasks (last: {self.task or '-'}) on {self.host}"
        return (f"run {self.run_id!r} ({doing}; held since {_iso(self.acquired_at)}, "
                f"last heartbeat {now - self.heartbeat_at:.0f} s ago)")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """The lock file of one DAG. ``run_state(run_id)`` (optional) returns Airflow's state of a run, or None."""

    def __init__(self, dag_id: str = DAG_ID, path: Path | None = None, stale_after: float | None = None,
                 run_state: Callable[[str], str | None] | None = None):
        self.dag_id = dag_id
        self.path = path or state_path("locks") / f"{dag_id}.json"
        self.stale_after = stale_after_s() if stale_after is None else stale_after
        self.run_state = run_state

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """Serialises read-modify-write of the lock file between processes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".guard"), "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def _read(self) -> LockHolder | None:
        try:
            return LockHolder(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:  # a torn or hand-edited file: no owner can be named
            log.warning("run lock %s is unreadable (%s): treated as free", self.path, exc)
            return None

    def _write(self, holder: LockHolder) -> None:
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(asdict(holder), indent=2))
        os.replace(tmp, self.path)

    def holder(self) -> LockHolder | None:
        with self._guarded():
            return self._read()

    def stale_reason(self, holder: LockHolder, now: float | None = None) -> str | None:
        """Why ``holder`` is dead (its lock may be taken over), or None while it may still be running."""
        now = time.time() if now is None else now
        if now - holder.heartbeat_at > self.stale_after:
            return f"no heartbeat for {now - holder.heartbeat_at:.0f} s (> {self.stale_after:.0f} s)"
        if holder.pid is not None and holder.host == socket.gethostname():
            if _pid_alive(holder.pid):
                return None  # one of its tasks runs now
            return f"its task process {holder.pid} ({holder.task}) is gone"
        state = None
        if self.run_state is not None:
            try:
                state = self.run_state(holder.run_id)
            except Exception as exc:  # not in this Airflow's metadata (another AIRFLOW_HOME), no API: unknown
                log.debug("state of run %s unknown: %s", holder.run_id, exc)
        if state in FINISHED_RUN_STATES:
            return f"Airflow has run {holder.run_id!r} as {state}"
        return None

    def acquire(self, run_id: str, task: str | None = None, pid: int | None = None) -> LockHolder:
        """Take the lock for ``run_id`` (or confirm it: a later task or a retry of the same run).

        Raises :class:`RunLockError` naming the holder when another live run holds it.
        """
        with self._guarded():
            now = time.time()
            current = self._read()
            if current is not None and current.run_id != run_id:
                reason = self.stale_reason(current, now)
                if reason is None:
                    raise RunLockError(
                        f"{self.dag_id}: {current.describe(now)} is active on this state dir "
                        f"({self.path.parent.parent}); run {run_id!r} does not start beside it (one run at a time: "
                        f"it would train, register and index on the same registry and Milvus). Let that run finish, "
                        f"or, if it is dead, clear the lock with `lrem run-lock --clear` (or delete {self.path}); "
                        f"a dead run's lock is also taken over by itself once its task process is gone, Airflow "
                        f"has the run as finished, or after {self.stale_after:.0f} s without a heartbeat.")
                log.warning("run lock of %s: taking over from %s: %s", self.dag_id, current.describe(now), reason)
                current = None
            holder = LockHolder(self.dag_id, run_id, socket.gethostname(), pid, task,
                                acquired_at=current.acquired_at if current is not None else now, heartbeat_at=now)
            self._write(holder)
            return holder

    def beat(self, run_id: str, task: str | None = None, pid: int | None = None) -> bool:
        """Refresh the heartbeat (and the running task) of ``run_id``; False when it no longer holds the lock."""
        with self._guarded():
            current = self._read()
            if current is None or current.run_id != run_id:
                return False
            current.task, current.pid, current.heartbeat_at = task or current.task, pid, time.time()
            self._write(current)
            return True

    def release(self, run_id: str) -> bool:
        """Remove the lock if ``run_id`` holds it (never another run's)."""
        with self._guarded():
            current = self._read()
            if current is None or current.run_id != run_id:
                return False
            self.path.unlink(missing_ok=True)
            return True

    def clear(self) -> LockHolder | None:
        """Remove the lock whoever holds it (by hand, for a run known to be dead); returns the holder."""
        with self._guarded():
            current = self._read()
            self.path.unlink(missing_ok=True)
            return current


class _Heartbeat(threading.Thread):
    def __init__(self, lock: RunLock, run_id: str, task: str, every: float):
        super().__init__(name=f"run-lock-heartbeat-{task}", daemon=True)
        self.lock, self.run_id, self.task, self.every = lock, run_id, task, every
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            try:
                if not self.lock.beat(self.run_id, self.task, os.getpid()):
                    log.error("run %s lost the run lock %s (cleared by hand?)", self.run_id, self.lock.path)
                    return
            except OSError as exc:
                log.warning("run lock heartbeat failed: %s", exc)


@contextmanager
def holding_run_lock(run_id: str, task: str, *, last: bool, final_try: bool,
                     ends_run: tuple[type[BaseException], ...] = (), dag_id: str = DAG_ID,
                     run_state: Callable[[str], str | None] | None = None,
                     heartbeat_s: float = HEARTBEAT_S) -> Iterator[RunLock]:
    """Run a task of ``run_id`` holding the run lock (raises :class:`RunLockError` before the body if held).

    On leaving: released when the body succeeded and ``last``, or when it failed and the run
    ends with it (``final_try``: no retry left, or an exception of ``ends_run``, or an
    interrupt); otherwise kept for the run's next task or retry, marked as between tasks.
    """
    lock = RunLock(dag_id, run_state=run_state)
    lock.acquire(run_id, task, pid=os.getpid())
    heartbeat = _Heartbeat(lock, run_id, task, heartbeat_s)
    heartbeat.start()
    ok, run_over = False, False
    try:
        yield lock
        ok = True
        run_over = last
    except BaseException as exc:
        run_over = final_try or isinstance(exc, ends_run + (KeyboardInterrupt,))
        raise
    finally:
        heartbeat.done.set()
        heartbeat.join(timeout=5)
        if run_over:
            if lock.release(run_id):
                log.info("run %s released the run lock (%s)", run_id, "done" if ok else f"ended by {task}")
        else:
            lock.beat(run_id, task, pid=None)
