#!/usr/bin/env bash
# Runs every built libFuzzer harness for SECONDS each, one at a time, at the lowest CPU
# priority, starting from its seed corpus (fuzz/corpus/NAME) and the regression inputs
# (tests/regressions/NAME). New interesting inputs go to BUILD/corpus/NAME (not committed);
# a crash, leak, UB report or timeout is saved under BUILD/artifacts/NAME/ and fails the run.
# Prints one line per harness with libFuzzer's executed-unit count, then "N passed, N failed".
# Usage: fuzz/run.sh [BUILD=build-fuzz] [SECONDS=60]     (make fuzz FUZZ_SECONDS=N runs it)
# FUZZ_TIMEOUT (default 10 s): one input running longer is a hang. libFuzzer measures it in
# wall-clock time, so a run that is paused (SIGSTOP, to free the cores for a benchmark) needs
# a timeout longer than its pauses, or it reports every pause as a hang.
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build-fuzz}
SECONDS_EACH=${2:-60}
TIMEOUT=${FUZZ_TIMEOUT:-10}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# detect_leaks: leaks count as failures; the harnesses free everything they get.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0; failed=0
summary="$BUILD/fuzz-summary.txt"
mkdir -p "$BUILD"
: > "$summary"
for bin in "$BUILD"/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  name=${name#fuzz_}
  work="$BUILD/corpus/$name" art="$BUILD/artifacts/$name"
  mkdir -p "$work" "$art"
  seeds=()
  for d in "fuzz/corpus/$name" "tests/regressions/$name"; do [ -d "$d" ] && seeds+=("$d"); done
  log="$BUILD/fuzz-$name.log"
  # -timeout: one input taking TIMEOUT s is a hang; -rss_limit_mb/-malloc_limit_mb: an input that
  # makes a reader ask for more than 2 GB is a failure (readers must bound their allocations).
  nice -n 19 "$bin" -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -rss_limit_mb=2048 \
    -malloc_limit_mb=2048 -dict=fuzz/fuzz.dict -print_final_stats=1 \
    -artifact_prefix="$art/" "$work" "${seeds[@]}" > "$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  units=$(find "$work" -type f | wc -l)
  line=$(printf '%-14s %4s s  %10s execs  cov %6s  corpus %5s  %s' "$name" "$SECONDS_EACH" \
    "${execs:-?}" "${cov:-?}" "$units" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (rc $rc, see $log)")")
  echo "$line" | tee -a "$summary"
  if [ $rc -eq 0 ]; then
    passed=$((passed+1))
  else
    failed=$((failed+1))
    grep -E 'ERROR|SUMMARY|runtime error|invariant broken|Test unit written' "$log" | head -n 8 | sed 's/^/    /'
  fi
done
if [ $((passed+failed)) -eq 0 ]; then
  echo "no fuzz harness built in $BUILD/fuzz (run make fuzz-build)"; failed=1
fi
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
