#!/usr/bin/env bash
# Installs mvmoe's Debian dependencies. Idempotent: does nothing when all are present.
set -euo pipefail
PKGS=(build-essential libdnnl-dev libopenblas-dev libopenblas0-openmp libcjson-dev libmetis-dev libpng-dev
      libjpeg62-turbo-dev zlib1g-dev python3-torch python3-numpy dataset-fashion-mnist
      clang libclang-rt-14-dev libomp-dev valgrind   # make fuzz (libFuzzer), valgrind-test
      pkg-config man-db groff-base bash-completion)  # tests of make install (tests/e2e/test_install.sh)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all Debian dependencies present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
