"""The long-running production-like stack on one machine: ``make up`` / ``make down`` / ``make status``.

``lrem stack up`` starts, each as its own process group with its log in ``$LREM_HOME/logs``:

=============  ===========================================================================
postgres       the distribution's PostgreSQL, a cluster under ``$LREM_HOME/postgres`` run as a
               non-root user (or none: ``LREM_PG_URL`` names an existing server); databases
               ``airflow``, ``mlflow`` and ``lrem_events`` (the service's event store)
mlflow         ``mlflow server`` on Postgres, artifacts served by the server
milvus         the Milvus Lite server (``components.index.server``)
airflow-*      Airflow 3 ``api-server`` (UI and execution API), ``scheduler`` (LocalExecutor),
               ``dag-processor``, all on Postgres; a generated admin login in the state dir
service        ``lrem serve``, the search service, events in Postgres
=============  ===========================================================================

then unpauses ``lrem_serve_sync`` and ``lrem_nightly`` (schedule ``LREM_SCHEDULE``). It is
idempotent: what already runs and answers is left alone. ``lrem stack down`` stops exactly the
process groups ``up`` recorded (``$LREM_HOME/stack/pids``), ``lrem stack status`` checks each
service's health. Ports and hosts: :mod:`components.stack.settings`.
"""
