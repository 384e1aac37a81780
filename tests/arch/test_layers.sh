#!/usr/bin/env bash
# Architecture rules (docs/ARCHITECTURE.md): no call loops between source files, no include
# loops between headers, no folder using a folder on a higher layer. Reads the built objects.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
/usr/bin/python3 tests/tools/check_layers.py "$BUILD"
