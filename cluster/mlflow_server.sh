#!/usr/bin/env bash
# Start a shared MLflow tracking server for uda3d runs.
#   cluster/mlflow_server.sh                      # SQLite + ./mlartifacts, http://127.0.0.1:5000
#   BACKEND_URI=postgresql://user:pw@db/mlflow ARTIFACTS=s3://bucket/mlflow HOST=0.0.0.0 cluster/mlflow_server.sh
# Binds to 127.0.0.1 unless HOST says otherwise: expose it on a network only behind auth/a VPN.
# Then point every client and job at it: export MLFLOW_TRACKING_URI=http://HOST:PORT
set -euo pipefail
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-5000}"
STATE="${STATE:-$PWD/mlflow-server}"
BACKEND_URI="${BACKEND_URI:-sqlite:///$STATE/mlflow.db}"
ARTIFACTS="${ARTIFACTS:-$STATE/mlartifacts}"
mkdir -p "$STATE"
exec mlflow server --host "$HOST" --port "$PORT" \
  --backend-store-uri "$BACKEND_URI" \
  --artifacts-destination "$ARTIFACTS" --serve-artifacts "$@"
