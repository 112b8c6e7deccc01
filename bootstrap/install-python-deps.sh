#!/usr/bin/env bash
# EMR bootstrap action: install the Spark jobs' pinned Python requirements for Python 3.11.
#
#   install-python-deps.sh REQUIREMENTS_URI [--constraints URI] [--cache-imagenet-weights]
#
# Runs on every node before YARN and Spark start. Spark's Python is /usr/bin/python3.11
# (the cluster's spark-env sets PYSPARK_PYTHON), so that is the interpreter we install into.
# Any failure exits non-zero, which fails the cluster with "bootstrap action 1 returned a
# non-zero return code"; this script's own log lines (stderr) in
# <LogUri>/<cluster-id>/node/<instance-id>/bootstrap-actions/1/ say which command failed.
# Safe to run twice: a marker holding the requirements' hash skips a repeated install.
set -euo pipefail

PYTHON="${PYTHON:-python3.11}"
KERAS_HOME="${KERAS_HOME:-/var/cache/keras}"
STATE_DIR="${STATE_DIR:-/var/lib/fruit-features}"
SUDO="${SUDO-sudo}"

log() { printf '%s install-python-deps: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

fetch() { # fetch URI DEST: s3:// through the AWS CLI, anything else as a local path (tests)
  local uri=$1 dest=$2
  log "fetching ${uri}"
  case "${uri}" in
    s3://*) aws s3 cp --only-show-errors "${uri}" "${dest}" || die "cannot copy ${uri}" ;;
    *) cp "${uri}" "${dest}" || die "cannot read ${uri}" ;;
  esac
}

usage="usage: $0 REQUIREMENTS_URI [--constraints URI] [--cache-imagenet-weights]"
[[ $# -ge 1 ]] || die "${usage}"
requirements_uri=$1
shift
constraints_uri=""
cache_weights=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --constraints)
      [[ $# -ge 2 ]] || die "--constraints needs a URI"
      constraints_uri=$2
      shift
      ;;
    --cache-imagenet-weights) cache_weights=true ;;
    *) die "unknown argument: $1 (${usage})" ;;
  esac
  shift
done

command -v "${PYTHON}" >/dev/null 2>&1 ||
  die "${PYTHON} not found: EMR 7.x (Amazon Linux 2023) ships it; check the release label"
log "python: $("${PYTHON}" --version 2>&1) at $(command -v "${PYTHON}")"

workdir=$(mktemp -d)
trap 'rm -rf "${workdir}"' EXIT
requirements="${workdir}/requirements.txt"
fetch "${requirements_uri}" "${requirements}"

# Only exact pins: the nodes must run the versions the tests ran.
unpinned=$(grep -Ev '^[[:space:]]*(#|$)' "${requirements}" | grep -Ev '^[][A-Za-z0-9._,-]+==[^[:space:]]+' || true)
[[ -z "${unpinned}" ]] || die "requirements must be pinned with ==, found: ${unpinned}"

pip_args=(-r "${requirements}")
pinned_files=("${requirements}")
if [[ -n "${constraints_uri}" ]]; then
  fetch "${constraints_uri}" "${workdir}/constraints.txt"
  pip_args+=(-c "${workdir}/constraints.txt") # pins the transitive dependencies too
  pinned_files+=("${workdir}/constraints.txt")
fi

digest=$(cat "${pinned_files[@]}" | sha256sum | cut -d' ' -f1)
marker="${STATE_DIR}/requirements.sha256"
if [[ -f "${marker}" && "$(cat "${marker}")" == "${digest}" ]]; then
  log "requirements ${digest:0:12} already installed: skipping pip"
else
  if ! "${PYTHON}" -m pip --version >/dev/null 2>&1; then
    log "pip missing for ${PYTHON}: installing the interpreter's bundled pip (ensurepip)"
    ${SUDO} "${PYTHON}" -m ensurepip --upgrade || die "ensurepip failed"
  fi
  log "installing: $(grep -Ev '^[[:space:]]*(#|$)' "${requirements}" | tr '\n' ' ')"
  # --only-binary: a missing wheel fails here in seconds, not after a long source build.
  ${SUDO} "${PYTHON}" -m pip install --no-input --disable-pip-version-check --no-cache-dir \
    --progress-bar off --only-binary=:all: "${pip_args[@]}" ||
    die "pip install failed for ${requirements_uri}"
  ${SUDO} mkdir -p "${STATE_DIR}"
  echo "${digest}" | ${SUDO} tee "${marker}" >/dev/null
  log "requirements installed"
fi

# Shared Keras cache (spark-env points KERAS_HOME here): every user can read and write it.
${SUDO} install -d -m 1777 "${KERAS_HOME}"
if [[ "${cache_weights}" == true ]]; then
  log "pre-caching MobileNetV2 imagenet weights in ${KERAS_HOME}"
  KERAS_HOME="${KERAS_HOME}" "${PYTHON}" -c '
from keras.applications import MobileNetV2
MobileNetV2(weights="imagenet", include_top=True)
' || die "cannot download the imagenet weights (no internet access? pass a weights URI instead)"
fi
log "done"
