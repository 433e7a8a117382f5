#!/usr/bin/env bash
# Installs the real components the audience tests run against on Debian 12 / Ubuntu 22.04+:
# the Mosquitto broker (MQTT sink) and chromium with its driver (the dashboard's headless-browser test).
# Idempotent and quiet: does nothing when every package is already installed. Needs root or sudo.
# The tests skip, naming what is missing, where this cannot run.
set -euo pipefail

PACKAGES=(mosquitto chromium chromium-driver)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "audience: test components already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "audience: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "audience: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "audience: test components installed"
