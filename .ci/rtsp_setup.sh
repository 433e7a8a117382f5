#!/usr/bin/env bash
# Installs what tests/sdk/test_network_camera.py's RTSP camera needs on Debian 12 / Ubuntu 22.04+:
# GStreamer's RTSP server with its GObject bindings for the system python3, and the base and good
# plugins (test sources, JPEG encoder, RTP payloader). Idempotent and quiet: does nothing when every
# package is installed. Needs root or sudo; where it cannot install, it prints one line and exits 1, and
# the RTSP tests skip, naming these packages.
set -euo pipefail

PACKAGES=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "rtsp: need root or sudo to install ${missing[*]}; the RTSP camera tests will skip" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  echo "rtsp: apt-get could not install ${missing[*]} ($(grep -E '^E:' "$log" | tail -1)); the RTSP camera tests will skip" >&2
  exit 1
fi
