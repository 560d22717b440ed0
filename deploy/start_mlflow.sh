#!/usr/bin/env bash
# Start the MLflow tracking server on the Ray head, in the background, without systemd.
#
#   deploy/start_mlflow.sh ARTIFACTS_URI [PORT]      e.g. s3://my-bucket/slmscale/mlflow-artifacts
#
# Backend store: PostgreSQL (the local one made by setup_postgres.sh, or MLFLOW_BACKEND_STORE_URI
# from ~/.slmscale/mlflow.env, which holds any password and is never committed).  Artifacts: the
# server proxies uploads to ARTIFACTS_URI (--artifacts-destination), so trials need no S3 client
# config of their own for artifacts; the head's instance profile grants the S3 access.
#
# It listens on all interfaces of the head so that trials on worker nodes can log to it; the
# cluster's security group admits only SSH from outside, so a laptop reaches it only through an SSH
# port forward (`ray attach ray_cluster.yaml -p 5000`).  Idempotent: a running server is kept.
#
# Environment (all optional): MLFLOW_BACKEND_STORE_URI, MLFLOW_HOST (default 0.0.0.0),
# MLFLOW_WORKERS (default 4), MLFLOW_BIN (default ~/venv/bin/mlflow), SLMSCALE_STATE_DIR (pid file
# and log, default ~/.slmscale).  The loopback cluster test starts its server with this script.
set -euo pipefail

artifacts="${1:?usage: start_mlflow.sh ARTIFACTS_URI [PORT]}"
port="${2:-5000}"
state="${SLMSCALE_STATE_DIR:-$HOME/.slmscale}"
mkdir -p "$state"
ENV_FILE="${SLMSCALE_MLFLOW_ENV:-$state/mlflow.env}"
# shellcheck disable=SC1090
if [ -f "$ENV_FILE" ]; then . "$ENV_FILE"; fi
backend="${MLFLOW_BACKEND_STORE_URI:-postgresql+psycopg2:///mlflow?host=/var/run/postgresql}"
mlflow_bin="${MLFLOW_BIN:-$HOME/venv/bin/mlflow}"

pidfile="$state/mlflow.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "start_mlflow: already running (pid $(cat "$pidfile"))"
    exit 0
fi

nohup setsid "$mlflow_bin" server \
    --backend-store-uri "$backend" \
    --artifacts-destination "$artifacts" \
    --host "${MLFLOW_HOST:-0.0.0.0}" --port "$port" --workers "${MLFLOW_WORKERS:-4}" \
    >>"$state/mlflow.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"

# A loaded node (or a first start creating the schema) can take minutes; MLFLOW_START_TIMEOUT_S.
for _ in $(seq "${MLFLOW_START_TIMEOUT_S:-300}"); do
    kill -0 "$pid" 2>/dev/null || break
    if curl -sf "http://127.0.0.1:${port}/health" >/dev/null; then
        echo "start_mlflow: serving on port ${port} (pid ${pid}, log $state/mlflow.log)"
        exit 0
    fi
    sleep 1
done
echo "start_mlflow: server did not become healthy; last log lines:" >&2
kill -- -"$pid" 2>/dev/null || true
rm -f "$pidfile"
tail -n 30 "$state/mlflow.log" >&2
exit 1
