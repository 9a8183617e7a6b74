#!/usr/bin/env bash
# Start an MLflow tracking + registry server.
#   embedded:   mlflow/start-server.sh            (SQLite + local artifacts under $LREM_HOME)
#   production: mlflow/start-server.sh server.env (Postgres + S3/MinIO, see server.env.example)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [[ $# -ge 1 ]]; then
  set -a; source "$1"; set +a
else
  state="${LREM_HOME:-$here/../.lrem}"
  mkdir -p "$state/mlflow/artifacts"
  MLFLOW_BACKEND_STORE_URI="sqlite:///$state/mlflow/mlflow.db"
  MLFLOW_ARTIFACTS_DESTINATION="$state/mlflow/artifacts"
fi
exec mlflow server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --host 0.0.0.0 --port "${MLFLOW_PORT:-5000}"
