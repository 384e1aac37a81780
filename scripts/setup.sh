#!/usr/bin/env bash
# Installs mvmoe's Debian dependencies, then ONNX Runtime for Node (bench/node_modules, from
# bench/package-lock.json) that the ONNX export test and bench/compare.sh run models in.
# Idempotent: does nothing when all are present.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(build-essential libdnnl-dev libopenblas-dev libopenblas0-openmp libcjson-dev libmetis-dev libpng-dev
      libjpeg62-turbo-dev zlib1g-dev python3-torch python3-numpy dataset-fashion-mnist
      protobuf-c-compiler libprotobuf-c-dev  # mvmoe export: C code from onnx.proto, its runtime
      python3-onnx                           # tests: onnx.checker on exported models
      clang libclang-rt-14-dev libomp-dev valgrind   # make fuzz (libFuzzer), valgrind-test
      pkg-config man-db groff-base bash-completion   # tests of make install (tests/e2e/test_install.sh)
      libopenmpi-dev openmpi-bin             # data-parallel training under mpirun (docs/SCALING.md)
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static  # make runtime-aarch64, run under qemu (docs/EDGE.md)
      libxnnpack-dev libpthreadpool-dev)     # make bench-xnnpack only (docs/EDGE.md, "XNNPACK measurement")
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm: Debian's, unless a node (with its npm) is installed already
command -v node > /dev/null && command -v npm > /dev/null || missing+=(nodejs npm)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all Debian dependencies present"
else
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# --ignore-scripts: the CPU build of onnxruntime-node ships in the package; its install script
# only fetches GPU libraries, which nothing here uses.
if (cd bench && node -e "require('onnxruntime-node')") > /dev/null 2>&1; then
  echo "setup: bench/node_modules (onnxruntime-node) present"
else
  echo "setup: installing bench/node_modules (npm ci: onnxruntime-node as locked in bench/package-lock.json)"
  (cd bench && npm ci --ignore-scripts --no-audit --no-fund)
fi
