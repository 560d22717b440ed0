#!/usr/bin/env bash
# Prepare the MLflow backend database on the Ray head (run by head_setup_commands; idempotent).
#
# Default: a local PostgreSQL reached over its unix socket with peer authentication, so there is no
# password anywhere: the database role is the login user.  If ~/.slmscale/mlflow.env sets
# MLFLOW_BACKEND_STORE_URI (an external database such as RDS), nothing is installed here.
set -euo pipefail

ENV_FILE="${SLMSCALE_MLFLOW_ENV:-$HOME/.slmscale/mlflow.env}"
# shellcheck disable=SC1090
if [ -f "$ENV_FILE" ]; then . "$ENV_FILE"; fi
if [ -n "${MLFLOW_BACKEND_STORE_URI:-}" ]; then
    echo "setup_postgres: external backend store configured in $ENV_FILE; nothing to install"
    exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    sudo apt-get update -q
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
fi
sudo service postgresql start

db_user="$(id -un)"
if ! sudo -u postgres psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='${db_user}'" | grep -q 1; then
    sudo -u postgres createuser "${db_user}"
fi
if ! sudo -u postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname='mlflow'" | grep -q 1; then
    sudo -u postgres createdb --owner "${db_user}" mlflow
fi
echo "setup_postgres: database 'mlflow' ready for role '${db_user}' (peer auth, unix socket)"
