#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first created (docker-entrypoint-initdb.d): a second
# database for Airflow's metadata beside the outreach store, owned by the same user.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE DATABASE "${AIRFLOW_DB:-airflow}" OWNER "$POSTGRES_USER";
SQL
