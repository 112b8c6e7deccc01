#!/usr/bin/env bash
# PostgreSQL's server (Airflow's metadata database) and Chromium (the UI test's browser), from
# Debian's packages, for `make airflow` and `make test`. Installs only what is missing, as root or
# with password-less sudo; otherwise says what to install and fails.
set -euo pipefail

missing=()
if [[ -z "${FRUIT_LOCAL_PG_BIN:-}" ]] && ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null \
    && ! command -v postgres >/dev/null; then
    missing+=(postgresql)
fi
if [[ -z "${FRUIT_CHROMIUM:-}" ]] && ! command -v chromium >/dev/null; then
    missing+=(chromium)
fi
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if command -v apt-get >/dev/null; then
    if [[ "$(id -u)" -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo)
    else
        sudo=(none)
    fi
    if [[ "${sudo[0]:-}" != none ]]; then
        echo "installing ${missing[*]} with apt-get" >&2
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
        exit 0
    fi
fi
cat >&2 <<MESSAGE
missing: ${missing[*]}
  Debian/Ubuntu: sudo apt-get install ${missing[*]}
  Elsewhere: install PostgreSQL 13+ (then FRUIT_LOCAL_PG_BIN=<its bin folder>) and Chromium
  (then FRUIT_CHROMIUM=<its executable>). Without them: \`make test STACK_TESTS=0\` skips the
  native-stack tests, and \`docker compose up\` runs the same stack in containers.
MESSAGE
exit 1
