#!/usr/bin/env bash
# docker compose's PostgreSQL, first start only (/docker-entrypoint-initdb.d): Airflow's role,
# no superuser, with the stack's random password (stack-secrets), and the database it owns.
# `make airflow` does the same in localdev/airflow_stack/postgres.py.
set -euo pipefail

password=$(cat /run/fruit-secrets/db-password)
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres -v password="${password}" <<'SQL'
CREATE ROLE airflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
CREATE DATABASE airflow OWNER airflow;
SQL
