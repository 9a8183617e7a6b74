"""`lrem serve`: the search service, its online A/B test and the replayer that drives it.

- ``app``: the FastAPI app (``/search``, ``/feedback``, ``/healthz``, ``/metrics``)
- ``arms``: champion/challenger models loaded from the MLflow registry, reloaded on alias moves
- ``batcher``: batched generation across concurrent requests
- ``split``: the stable user-hash traffic split; ``interleave``: team-draft interleaving
- ``events``: the event store (SQLite by default, any SQLAlchemy URL); schema in its docstring
- ``clicks`` and ``replay``: simulated users driving the running service over loopback HTTP
- ``analysis``: per-arm and per-category online metrics, SRM check and significance tests
- ``audit``: the audit trail of alias moves, ``lrem history`` and ``lrem rollback``
- ``runner``: start and stop the service in the background (``make demo``, ``make serve-stop``)
- ``online`` and ``step``: the nightly ``evaluate_online`` step (service in-process, replay, analysis)
- ``gate``: the gate on both offline (paired bootstrap per category) and online evidence
- ``cli``: ``lrem serve``, ``serve-stop``, ``serve-status``, ``replay``, ``online-eval``, ``history``, ``rollback``
"""
