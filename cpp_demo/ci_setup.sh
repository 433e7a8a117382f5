#!/usr/bin/env bash
# Installs what cpp_demo needs to build on Debian 12 / Ubuntu 22.04+: a C++17 compiler, CMake,
# OpenCV (image/video I/O and warps only) and nlohmann-json. OpenVINO comes from the Python wheel
# ('facesdk[openvino]'), TensorRT from NVIDIA's packages or JetPack (see cpp_demo/README.md).
# Idempotent and quiet: does nothing when every package is already installed. Needs root or sudo.
set -euo pipefail

PACKAGES=(cmake g++ make pkg-config libopencv-dev nlohmann-json3-dev)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "cpp_demo: build dependencies already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "cpp_demo: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "cpp_demo: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "cpp_demo: build dependencies installed"
