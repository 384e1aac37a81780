#!/usr/bin/env bash
# Set-up + build + the default test suite (what CI runs). Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc)" all lib
make test
