#!/usr/bin/env bash
# docker compose's PostgreSQL, first start only (/docker-entrypoint-initdb.d): Airflow's role,
# no superuser, with the stack's random password (stack-secrets), and the database it owns.
# `make airflow` does the same in localdev/airflow_stack/postgres.py.
set -euo pipefail

# The password is read by psql itself (\set with a backquoted command), so that it is on no
# process's command line.
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres <<'SQL'
\set password `cat /run/fruit-secrets/db-password`
CREATE ROLE airflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
CREATE DATABASE airflow OWNER airflow;
SQL
