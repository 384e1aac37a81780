#!/usr/bin/env node
// Runs a model written by `mvmoe export` in ONNX Runtime (onnxruntime-node, CPU) on the first N
// images of an IDX file (or of a raw uint8 [N, C, H, W] file) and compares with mvmoe's own results (`mvmoe eval --logits --routes`):
// logits within --tol absolute, routes identical, and batch 1 = batch N (each image alone gives
// what it gives inside the batch). Prints one JSON line of measurements; exit 0 when all hold,
// 1 when one fails, 77 when onnxruntime-node is not installed (a skip), 2 on usage errors.
//
//   node tests/e2e/onnx_run.js --model M.onnx (--images IDX[.gz] | --pixels RAW.u8 --shape C,H,W)
//        --n N --logits L.f32 [--routes R.i64] [--tol 1e-4]
//
// --int8 (a model written by `mvmoe export --int8`, against `mvmoe eval --precision int8`): ONNX
// Runtime quantizes activations per tensor (DynamicQuantizeLinear), mvmoe per token, so results
// differ by rounding, and an image whose router input moved across a near-tie changes experts.
// Then the checks are: images whose routes differ <= --max-route-frac of N; top-1 class agrees
// on >= --agree-min of the images; max |ONNX - mvmoe| over the images routed alike <= --rel-tol
// times the largest |logit|. Batch 1 vs batch N is measured and printed, not required to be
// equal (the per-tensor scale depends on the whole batch). --fp32-logits F (optional): mvmoe's
// fp32 logits, for printing how often each int8 result keeps fp32's top-1 class.
// --opt-level disabled|basic|extended|all: ONNX Runtime's graph optimizations (default all).
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

function usage(msg) {
  process.stderr.write(`onnx_run: ${msg}\n`);
  process.exit(2);
}

const a = { tol: 1e-4, optLevel: 'all', int8: false, agreeMin: 0.99, relTol: 0.1, maxRouteFrac: 0.01 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const f = argv[i], v = argv[i + 1];
  if (f === '--int8') { a.int8 = true; i--; continue; }
  if (v === undefined) usage(`${f} needs a value`);
  if (f === '--model') a.model = v;
  else if (f === '--images') a.images = v;
  else if (f === '--pixels') a.pixels = v;
  else if (f === '--shape') a.shape = v.split(',').map(Number);
  else if (f === '--n') a.n = Number(v);
  else if (f === '--logits') a.logits = v;
  else if (f === '--routes') a.routes = v;
  else if (f === '--tol') a.tol = Number(v);
  else if (f === '--agree-min') a.agreeMin = Number(v);
  else if (f === '--rel-tol') a.relTol = Number(v);
  else if (f === '--max-route-frac') a.maxRouteFrac = Number(v);
  else if (f === '--fp32-logits') a.fp32Logits = v;
  else if (f === '--opt-level') a.optLevel = v;  // ONNX Runtime's graph optimization level
  else usage(`unknown argument '${f}'`);
}
if (!a.images === !a.pixels || (a.pixels && !(a.shape && a.shape.length === 3))) usage('give --images IDX, or --pixels RAW.u8 with --shape C,H,W');
if (!a.model || !a.logits || !(Number.isInteger(a.n) && a.n >= 1)) usage('--model, --images, --n and --logits are required');

let ort;
try {
  ort = require(path.join(__dirname, '..', '..', 'bench', 'node_modules', 'onnxruntime-node'));
} catch (e) {
  console.log(`skip: onnxruntime-node is not installed in bench/node_modules (cd bench && npm ci --ignore-scripts): ${e.message.split('\n')[0]}`);
  process.exit(77);
}

// IDX images: magic 0x00000803, count, rows, cols (big-endian u32), then uint8 pixels.
function readIdx(file, n) {
  let buf = fs.readFileSync(file);
  if (file.endsWith('.gz')) buf = zlib.gunzipSync(buf);
  if (buf.readUInt32BE(0) !== 0x803) throw new Error(`${file}: not an IDX image file`);
  const count = buf.readUInt32BE(4), rows = buf.readUInt32BE(8), cols = buf.readUInt32BE(12);
  if (n > count) throw new Error(`${file}: ${count} images, ${n} asked for`);
  return { c: 1, rows, cols, pixels: buf.subarray(16, 16 + n * rows * cols) };
}

// Raw uint8 [N, C, H, W], no header (what the test writes for multi-channel data).
function readPixels(file, n, [c, rows, cols]) {
  const buf = fs.readFileSync(file);
  if (buf.length < n * c * rows * cols) throw new Error(`${file}: ${buf.length} bytes, fewer than ${n} images of ${c}x${rows}x${cols}`);
  return { c, rows, cols, pixels: buf.subarray(0, n * c * rows * cols) };
}

function readRaw(file, Type) {
  const b = fs.readFileSync(file);
  return new Type(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

async function main() {
  const img = a.images ? readIdx(a.images, a.n) : readPixels(a.pixels, a.n, a.shape);
  const hw = img.c * img.rows * img.cols; // values per image
  const pixels = new Float32Array(a.n * hw);
  for (let i = 0; i < pixels.length; i++) pixels[i] = img.pixels[i] / 255; // what an image library hands over
  const want = readRaw(a.logits, Float32Array);
  const K = want.length / a.n;
  if (!Number.isInteger(K)) throw new Error(`${a.logits}: ${want.length} floats is not ${a.n} rows`);
  const wantRoutes = a.routes ? readRaw(a.routes, BigInt64Array) : null;

  const s = await ort.InferenceSession.create(a.model, { intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: a.optLevel });
  const hasRoutes = s.outputNames.includes('routes');
  const run = async (from, count) => {
    const x = new ort.Tensor('float32', pixels.subarray(from * hw, (from + count) * hw), [count, img.c, img.rows, img.cols]);
    return s.run({ pixels: x });
  };
  const full = await run(0, a.n);
  const logits = full.logits.data, routes = hasRoutes ? full.routes.data : null;
  const k = hasRoutes ? full.routes.dims[1] : 0;
  const problems = [];
  if (full.logits.dims[0] !== a.n || full.logits.dims[1] !== K) problems.push(`logits shape ${full.logits.dims}, expected ${a.n},${K}`);

  // routes: entries and images that differ from mvmoe's
  let routeMismatch = 0;
  const routeSame = new Array(a.n).fill(true), distinct = new Set();
  if (wantRoutes) {
    if (!hasRoutes) problems.push('the model has no "routes" output');
    else if (wantRoutes.length !== routes.length) problems.push(`routes: ${routes.length} values, mvmoe has ${wantRoutes.length}`);
    else {
      for (let i = 0; i < a.n; i++) {
        const row = [];
        for (let q = 0; q < k; q++) {
          if (routes[i * k + q] !== wantRoutes[i * k + q]) routeMismatch++, routeSame[i] = false;
          row.push(routes[i * k + q]);
        }
        distinct.add(row.join(','));
      }
    }
  } else if (hasRoutes) problems.push('the model has a "routes" output but no --routes file was given');
  const routeImages = routeSame.filter((x) => !x).length;

  // logits: max |difference| (over all images, and over those routed alike), top-1 agreement
  const argmax = (v, i) => {
    let b = 0;
    for (let j = 1; j < K; j++) if (v[i * K + j] > v[i * K + b]) b = j;
    return b;
  };
  let maxDiff = 0, maxDiffSame = 0, maxAbs = 0, agree = 0;
  for (let i = 0; i < a.n; i++) {
    for (let j = 0; j < K; j++) {
      const d = Math.abs(logits[i * K + j] - want[i * K + j]);
      maxDiff = Math.max(maxDiff, d);
      if (routeSame[i]) maxDiffSame = Math.max(maxDiffSame, d);
      maxAbs = Math.max(maxAbs, Math.abs(want[i * K + j]));
    }
    if (argmax(logits, i) === argmax(want, i)) agree++;
  }
  if (!a.int8) {
    if (!(maxDiff <= a.tol)) problems.push(`max |ONNX - mvmoe| logit difference ${maxDiff} > ${a.tol}`);
    if (routeMismatch) problems.push(`${routeMismatch} route entries differ from mvmoe's`);
  } else {
    if (routeImages > a.maxRouteFrac * a.n)
      problems.push(`${routeImages} of ${a.n} images routed differently from mvmoe, more than ${a.maxRouteFrac} of them`);
    if (!(agree >= a.agreeMin * a.n)) problems.push(`top-1 class agrees on ${agree} of ${a.n} images, fewer than ${a.agreeMin} of them`);
    if (!(maxDiffSame <= a.relTol * maxAbs))
      problems.push(`max |ONNX - mvmoe| over images routed alike ${maxDiffSame} > ${a.relTol} x max |logit| ${maxAbs}`);
  }
  let fp32 = null;
  if (a.fp32Logits) {
    const f = readRaw(a.fp32Logits, Float32Array);
    if (f.length !== want.length) throw new Error(`${a.fp32Logits}: ${f.length} floats, ${want.length} expected`);
    let ortAgree = 0, oursAgree = 0;
    for (let i = 0; i < a.n; i++) {
      ortAgree += argmax(logits, i) === argmax(f, i);
      oursAgree += argmax(want, i) === argmax(f, i);
    }
    fp32 = { ort_top1_agree_fp32: ortAgree / a.n, mvmoe_top1_agree_fp32: oursAgree / a.n };
  }

  // batch 1: every image alone
  let maxB1 = 0, b1RouteMismatch = 0;
  for (let i = 0; i < a.n; i++) {
    const o = await run(i, 1);
    for (let j = 0; j < K; j++) maxB1 = Math.max(maxB1, Math.abs(o.logits.data[j] - logits[i * K + j]));
    for (let q = 0; q < k; q++) if (o.routes.data[q] !== routes[i * k + q]) b1RouteMismatch++;
  }
  if (!a.int8) {
    if (!(maxB1 <= a.tol)) problems.push(`batch 1 vs batch ${a.n}: max logit difference ${maxB1} > ${a.tol}`);
    if (b1RouteMismatch) problems.push(`batch 1 vs batch ${a.n}: ${b1RouteMismatch} route entries differ`);
  }

  console.log(JSON.stringify({ model: path.basename(a.model), n: a.n, classes: K, k,
    max_abs_logit_diff: maxDiff, max_abs_logit: maxAbs, max_abs_diff_batch1_vs_batch: maxB1,
    route_mismatches: routeMismatch, distinct_route_sets: distinct.size,
    ...(a.int8 ? { int8: true, images_routed_differently: routeImages, top1_agreement: agree / a.n,
      max_abs_diff_same_routes: maxDiffSame, rel_diff_same_routes: maxDiffSame / maxAbs,
      batch1_route_entries_differ: b1RouteMismatch, ...fp32 } : {}),
    ort_version: ort.env.versions?.common ?? null }));
  for (const p of problems) console.log(`FAIL: ${p}`);
  process.exit(problems.length ? 1 : 0);
}

main().catch((e) => { console.log(`FAIL: ${e.stack || e}`); process.exit(1); });
