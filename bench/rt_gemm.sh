#!/usr/bin/env bash
# Old vs new x86 matmul kernels of the runtime on the model's shapes (bench/rt_gemm.c):
#   bash bench/rt_gemm.sh [BASE_REV] [ROUNDS]
# BASE_REV (default: the revision before the blocked kernels, 27bab5a) gives the "old"
# src/runtime/rt_kernels_x86.c; the working tree gives the "new" one. Same flags as the runtime
# (-O2, no -march). Results are only meaningful on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-27bab5a}
rounds=${2:-7}
out=build/bench/rt_gemm
mkdir -p "$out"
git show "$base:src/runtime/rt_kernels_x86.c" >"$out/old_x86.c"
flags="-O2 -std=c17 -D_GNU_SOURCE -Wall -Wextra -fno-trapping-math -Iinclude -Isrc"
gcc $flags -Dmvmoe_rt_kernels_avx512=old_rt_kernels_avx512 -Dmvmoe_rt_kernels_avx2=old_rt_kernels_avx2 \
    -c -o "$out/old_x86.o" "$out/old_x86.c"
gcc $flags -o "$out/rt_gemm" bench/rt_gemm.c "$out/old_x86.o" src/runtime/rt_kernels_x86.c -lm
"$out/rt_gemm" "$rounds"
