#!/usr/bin/env bash
# `mvmoe bench` and build/bench/peak on a tiny model: the JSON has every field, with positive,
# finite, self-consistent values (no timing thresholds: the machine may be busy); the
# --save-weights / --check-out files describe the same function (PyTorch reference logits on
# the check images match ours); bad invocations exit 2, a missing checkpoint exits 1.
# Usage: tests/e2e/test_bench.sh BUILD_DIR
set -u
BUILD=${1:-build}
BIN=$BUILD/mvmoe
PEAK=$BUILD/bench/peak
HERE=$(cd "$(dirname "$0")" && pwd)
for b in "$BIN" "$PEAK"; do
  if [ ! -x "$b" ]; then
    echo "test_bench: $b is not built (run make)"
    echo "0 passed, 1 failed"
    exit 1
  fi
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
ok() { passed=$((passed+1)); }
fail() { failed=$((failed+1)); echo "FAIL: $*"; }

# ---- a tiny run, two thread settings, all outputs
TINY=(bench --preset vit-test-tiny --steps 2 --warmup 1 --latency-reps 3 --infer-batch 4
      --infer-reps 1 --batch 8 --threads 1,2)
if "$BIN" "${TINY[@]}" --json --save-weights "$TMP/w.safetensors" --check-out "$TMP/check.safetensors" \
     >"$TMP/out.json" 2>"$TMP/err"; then ok; else fail "bench --json exited $?"; sed 's/^/    | /' "$TMP/err"; fi

/usr/bin/python3 - "$TMP/out.json" <<'EOF' && ok || fail "bench JSON fields"
import json, math, sys
d = json.load(open(sys.argv[1]))
errs = []
def need(cond, what):
    if not cond:
        errs.append(what)
need(d.get("preset") == "vit-test-tiny", "preset name")
need(d["config"]["dim"] == 16 and d["config"]["depth"] == 2, "config")
need(d["params"] > 0 and d["flops_per_image"] > 0, "params/flops")
need(d["options"]["batch"] == 8 and d["options"]["steps"] == 2, "options echo")
runs = d["runs"]
need([r["threads"] for r in runs] == [1, 2], "one run per thread setting")
positive = ["peak_gflops", "train_images_per_s", "step_ms_median", "step_ms_min", "step_ms_p10",
            "step_ms_p90", "step_ms_max", "phase_ms_pack", "phase_ms_forward", "phase_ms_backward",
            "phase_ms_optimizer", "loss_first", "loss_last", "train_mfu",
            "latency_ms_median", "latency_ms_p10", "latency_ms_p90", "latency_mfu",
            "infer_images_per_s", "infer_mfu", "bytes_params", "bytes_grads", "bytes_adam",
            "bytes_train_acts", "bytes_infer_acts", "bytes_train_total", "peak_rss_bytes",
            "rss_over_analytic"]
for r in runs:
    t = r["threads"]
    for k in positive:
        v = r.get(k)
        need(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f"threads {t}: {k} = {v}")
    need(r["peak_measured"] == 1, f"threads {t}: peak measured")
    need(r["step_ms_min"] <= r["step_ms_p10"] <= r["step_ms_median"] <= r["step_ms_p90"]
         <= r["step_ms_max"], f"threads {t}: step time order")
    need(r["latency_ms_p10"] <= r["latency_ms_median"] <= r["latency_ms_p90"], f"threads {t}: latency order")
    # the phases partition the step: their medians add up to about the median step
    ph = r["phase_ms_pack"] + r["phase_ms_forward"] + r["phase_ms_backward"] + r["phase_ms_optimizer"]
    need(0.5 * r["step_ms_min"] <= ph <= 1.5 * r["step_ms_max"] + 0.05, f"threads {t}: phases sum {ph} vs step")
    need(abs(r["train_images_per_s"] - 8 / (r["step_ms_median"] / 1e3)) < 1e-6 * r["train_images_per_s"],
         f"threads {t}: images/s = batch / median step")
    mfu = 3 * d["flops_per_image"] * r["train_images_per_s"] / (r["peak_gflops"] * 1e9)
    need(abs(r["train_mfu"] - mfu) < 1e-9 + 1e-6 * mfu, f"threads {t}: train MFU = 3 F img/s / peak")
    need(4 * d["params"] <= r["bytes_params"] <= 4 * d["params"] * 1.1 + 4096  # arena padding
         and r["bytes_grads"] == r["bytes_params"]
         and r["bytes_adam"] == 2 * r["bytes_params"], f"threads {t}: params/grads/AdamW bytes")
    need(r["bytes_train_total"] == r["bytes_params"] + r["bytes_grads"] + r["bytes_adam"]
         + r["bytes_train_acts"], f"threads {t}: total = sum of parts")
    need(r["bytes_train_acts"] > r["bytes_infer_acts"], f"threads {t}: training keeps more activations")
    need(r["loss_first"] < 10 and r["loss_last"] < 10, f"threads {t}: loss sane")
if errs:
    print("\n".join(errs)); sys.exit(1)
EOF

# ---- the saved weights and the check logits are the same function (PyTorch reference)
/usr/bin/python3 - "$TMP/w.safetensors" "$TMP/check.safetensors" "$HERE/../parity" <<'EOF' && ok || fail "check logits vs PyTorch"
import sys
sys.path.insert(0, sys.argv[3])
import numpy as np, torch, safetensors_io, vit_torch
model, cfg = vit_torch.load_checkpoint(sys.argv[1])
t, _ = safetensors_io.load(sys.argv[2])
imgs, ours = t["images"], t["logits"]
assert imgs.shape == (8, 1, 8, 8) and ours.shape == (8, 10), (imgs.shape, ours.shape)
assert imgs.min() >= 0 and imgs.max() <= 255 and np.all(imgs == np.round(imgs))
with torch.no_grad():
    ref = model(vit_torch.preprocess(imgs, cfg)).numpy()
diff = float(np.abs(ref - ours).max())
print("max |logit diff| =", diff)
sys.exit(0 if diff < 1e-4 else 1)
EOF

# ---- an MoE model (super-class routing without a map: bench supplies one)
if "$BIN" "${TINY[@]}" --threads 1 --routing image-superclass --experts 4 --top-k 2 --moe-layers 1 \
     --json >"$TMP/moe.json" 2>"$TMP/err" \
   && /usr/bin/python3 -c '
import json, math, sys
d = json.load(open(sys.argv[1])); r = d["runs"][0]
assert d["config"]["routing"] == "image-superclass" and d["config"]["experts"] == 4
assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("train_images_per_s", "loss_last", "infer_images_per_s", "bytes_train_acts"))
' "$TMP/moe.json"; then ok; else fail "bench on an MoE preset"; sed 's/^/    | /' "$TMP/err" | head -5; fi

# ---- bf16 products (--precision bf16): JSON says so, values sane; refused where the CPU has no bf16
if grep -qwE "avx512_bf16|amx_bf16" /proc/cpuinfo; then
  if "$BIN" "${TINY[@]}" --threads 1,2 --precision bf16 --json >"$TMP/bf.json" 2>"$TMP/err" \
     && /usr/bin/python3 -c '
import json, math, sys
d = json.load(open(sys.argv[1]))
assert d["precision"] == "bf16", d.get("precision")
for r in d["runs"]:
    assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("train_images_per_s", "loss_last", "infer_images_per_s", "latency_ms_median"))
' "$TMP/bf.json"; then ok; else fail "bench --precision bf16"; sed 's/^/    | /' "$TMP/err" | head -5; fi
  /usr/bin/python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["precision"] != "fp32")' "$TMP/out.json" \
    && ok || fail "bench JSON of a default run says precision fp32"
else
  "$BIN" "${TINY[@]}" --precision bf16 >/dev/null 2>"$TMP/err"; rc=$?
  [ $rc -eq 1 ] && grep -q "bf16 products need" "$TMP/err" && ok || fail "bench --precision bf16 without bf16: rc $rc"
fi

# ---- int8 products (--precision int8, inference-only): inference measured, no training steps
if "$BIN" "${TINY[@]}" --precision int8 --json >"$TMP/i8.json" 2>"$TMP/err" \
   && /usr/bin/python3 -c '
import json, math, sys
d = json.load(open(sys.argv[1]))
assert d["precision"] == "int8" and d["inference_only"] is True, (d.get("precision"), d.get("inference_only"))
for r in d["runs"]:
    assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("infer_images_per_s", "latency_ms_median", "bytes_params"))
    assert r["train_images_per_s"] == 0 and r["bytes_grads"] == 0 and r["bytes_adam"] == 0, r
' "$TMP/i8.json"; then ok; else fail "bench --precision int8"; sed 's/^/    | /' "$TMP/err" | head -5; fi
"$BIN" "${TINY[@]}" --threads 1 --precision int8 --peak-gflops 100 >"$TMP/i8.txt" 2>/dev/null \
  && grep -q "inference only (int8 products" "$TMP/i8.txt" && ! grep -q "^  train" "$TMP/i8.txt" \
  && ok || fail "bench --precision int8 text output"
/usr/bin/python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["inference_only"] is not False)' "$TMP/out.json" \
  && ok || fail "bench JSON of a default run says inference_only false"

# ---- text output and the peak tool
if "$BIN" "${TINY[@]}" --threads 1 --peak-gflops 100 >"$TMP/text" 2>/dev/null \
   && grep -q "peak 100.0 GFLOP/s, given" "$TMP/text" && grep -q "images/s" "$TMP/text"; then ok
else fail "bench text output with --peak-gflops"; fi
if "$PEAK" --threads 1 --seconds 0.05 --triad-mib 8 --json >"$TMP/peak.json" \
   && /usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["runs"][0]; sys.exit(not (r["threads"]==1 and r["fma_gflops"]>0 and r["triad_gb_s"]>0))' "$TMP/peak.json"
then ok; else fail "peak --json"; fi

# ---- usage errors exit 2 (and say why), a missing file exits 1
expect() {  # CODE NEEDLE ARGS...
  local want=$1 needle=$2; shift 2
  "$@" >/dev/null 2>"$TMP/stderr" </dev/null
  local rc=$?
  if [ "$rc" -eq "$want" ] && grep -qF -- "$needle" "$TMP/stderr"; then ok
  else fail "$* -> exit $rc (want $want, stderr needs '$needle')"; sed 's/^/    | /' "$TMP/stderr" | head -5; fi
}
expect 2 "exactly one" "$BIN" bench
expect 2 "exactly one" "$BIN" bench --preset vit-test-tiny --model x.safetensors
expect 2 "--frob" "$BIN" bench --preset vit-test-tiny --frob
expect 2 "nosuch" "$BIN" bench --preset nosuch
expect 2 "--steps" "$BIN" bench --preset vit-test-tiny --steps 0
expect 2 "--threads" "$BIN" bench --preset vit-test-tiny --threads 1.5
expect 2 "--peak-gflops" "$BIN" bench --preset vit-test-tiny --threads 1,2 --peak-gflops 100
expect 2 "apply to --preset" "$BIN" bench --model x.safetensors --dim 32
expect 2 "heads" "$BIN" bench --preset vit-test-tiny --heads 3
expect 2 "unexpected argument" "$BIN" bench vit-test-tiny
expect 2 "--check-out" "$BIN" bench --preset vit-test-tiny --precision int8 --check-out "$TMP/c.safetensors"
expect 1 "$TMP/missing.safetensors" "$BIN" bench --model "$TMP/missing.safetensors"
expect 2 "--threads" "$PEAK" --threads 0
"$BIN" bench --help >"$TMP/help" && grep -q -- "--latency-reps" "$TMP/help" && ok || fail "bench --help"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
