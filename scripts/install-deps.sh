#!/usr/bin/env bash
# Installs sparsejit's build and test dependencies from Debian 12's packages.
# Idempotent: does nothing when everything is present. CUDA 13 (NVRTC) is
# expected at /usr/local/cuda (optional: without it the NVRTC backend reports
# itself unavailable and its tests skip).
set -euo pipefail
pkgs=(cmake ninja-build g++ pkg-config python3 python3-pytest
      nlohmann-json3-dev libspdlog-dev libfmt-dev libgtest-dev libcli11-dev libssl-dev
      clang-22 clang-tools-22 lld-22 llvm-22 llvm-22-dev libclang-cpp22-dev libclang-22-dev liblld-22-dev
      libamdhip64-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "sparsejit: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
