#!/usr/bin/env node
// ONNX Runtime side of bench/compare.sh: times the model torch_bench.py exported (uint8 images
// in, logits out, normalization inside the graph, as mvmoe_model_logits) -- or one `mvmoe
// export` wrote (float32 pixels = uint8 / 255 in, e.g. its --int8 form; the input's type tells
// which, and the conversion is made before timing) -- with onnxruntime-node (CPU execution
// provider), at each intra-op thread count: batch-1 latency (median, p10, p90) and batch
// throughput; and checks its logits against ours (`mvmoe bench --check-out`).
//
//   node bench/ort_bench.js --model M.onnx [--check CHECK.safetensors] [--threads 1,2]
//        [--infer-batch 256] [--infer-reps 3] [--latency-reps 200] [--json-out FILE]
//
// Needs bench/node_modules (cd bench && npm install --ignore-scripts).
'use strict';
const fs = require('fs');

function usage(msg) {
  process.stderr.write(`ort_bench: ${msg}\nusage: node bench/ort_bench.js --model M.onnx [--check F] ` +
    `[--threads 1,2] [--infer-batch N] [--infer-reps N] [--latency-reps N] [--json-out F]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = { threads: [1, 2], inferBatch: 256, inferReps: 3, latencyReps: 200, seed: 1 };
  const ints = { '--infer-batch': 'inferBatch', '--infer-reps': 'inferReps',
    '--latency-reps': 'latencyReps', '--seed': 'seed' };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i], v = argv[i + 1];
    if (f === '--model') { a.model = v; i++; }
    else if (f === '--check') { a.check = v; i++; }
    else if (f === '--json-out') { a.jsonOut = v; i++; }
    else if (f === '--threads') {
      a.threads = String(v).split(',').map(Number);
      if (!a.threads.every((t) => Number.isInteger(t) && t >= 1)) usage(`invalid --threads '${v}'`);
      i++;
    } else if (f in ints) {
      const n = Number(v);
      if (!Number.isInteger(n) || n < (f === '--seed' ? 0 : 1)) usage(`invalid ${f} '${v}'`);
      a[ints[f]] = n; i++;
    } else usage(`unknown argument '${f}'`);
  }
  if (!a.model) usage('--model is required');
  return a;
}

// safetensors: u64 LE header length, JSON header, raw little-endian data (F32 only here).
function readSafetensors(path) {
  const buf = fs.readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F32') throw new Error(`${path}: tensor ${name} is ${t.dtype}, expected F32`);
    const [b, e] = t.data_offsets;
    const bytes = buf.subarray(8 + n + b, 8 + n + e);
    const data = new Float32Array(bytes.length / 4);
    for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(4 * i);
    out[name] = { shape: t.shape, data };
  }
  return out;
}

function quantile(sorted, q) {
  const pos = q * (sorted.length - 1), i = Math.floor(pos);
  return i >= sorted.length - 1 ? sorted[sorted.length - 1] : sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]);
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

// Deterministic uint8 images (xorshift32), so every thread setting times the same inputs.
function randomImages(count, seed) {
  const x = new Uint8Array(count);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    x[i] = s & 255;
  }
  return x;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    process.stderr.write(`ort_bench: cannot load onnxruntime-node (${e.message}); ` +
      'install it with: cd bench && npm install --ignore-scripts\n');
    process.exit(3);
  }
  const res = { framework: 'onnxruntime-node', version: ort.env.versions ? ort.env.versions.node : '',
    model: a.model, options: { infer_batch: a.inferBatch, infer_reps: a.inferReps,
      latency_reps: a.latencyReps }, runs: [] };
  const check = a.check ? readSafetensors(a.check) : null;
  for (const t of a.threads) {
    const sess = await ort.InferenceSession.create(a.model, {
      executionProviders: ['cpu'], intraOpNumThreads: t, interOpNumThreads: 1,
      executionMode: 'sequential', graphOptimizationLevel: 'all' });
    if (sess.inputNames.length !== 1) usage(`${a.model} has ${sess.inputNames.length} inputs; expected one (images)`);
    // uint8 images (torch_bench.py's export) or float32 pixels = uint8 / 255 (mvmoe export's)
    const inType = (sess.inputMetadata && sess.inputMetadata[0] && sess.inputMetadata[0].type) || 'uint8';
    if (inType !== 'uint8' && inType !== 'float32') usage(`${a.model}: input type ${inType}; expected uint8 or float32`);
    const input = (u8) => (inType === 'uint8' ? u8 : Float32Array.from(u8, (v) => v / 255));
    res.input_type = inType;
    const run = async (x, n, shape) => {
      const feeds = { [sess.inputNames[0]]: new ort.Tensor(inType, x, [n, ...shape]) };
      return (await sess.run(feeds))[sess.outputNames[0]];
    };
    const r = { threads: t };
    let shape = null;
    if (check) {
      const img = check.images, ours = check.logits;
      shape = img.shape.slice(1);
      const out = await run(input(Uint8Array.from(img.data)), img.shape[0], shape);
      let d = 0, m = 0;
      for (let i = 0; i < ours.data.length; i++) {
        d = Math.max(d, Math.abs(out.data[i] - ours.data[i]));
        m = Math.max(m, Math.abs(ours.data[i]));
      }
      r.check_max_abs_diff = d;
      r.check_max_abs_logit = m;
    }
    if (!shape) {
      // without a check file, read C, S from the model's input metadata when it has them
      const meta = sess.inputMetadata && sess.inputMetadata[0];
      if (!meta || !meta.shape || meta.shape.slice(1).some((v) => typeof v !== 'number'))
        usage('give --check so the input shape is known');
      shape = meta.shape.slice(1);
    }
    const per = shape.reduce((x, y) => x * y, 1);
    const images = input(randomImages(per * a.inferBatch, a.seed));
    const one = (i) => images.subarray(per * (i % a.inferBatch), per * (i % a.inferBatch + 1));
    for (let i = 0; i < 3; i++) await run(one(i), 1, shape);
    const lat = [];
    for (let i = 0; i < a.latencyReps; i++) {
      const x = one(i), t0 = nowMs();
      await run(x, 1, shape);
      lat.push(nowMs() - t0);
    }
    lat.sort((x, y) => x - y);
    r.latency_ms_median = quantile(lat, 0.5);
    r.latency_ms_p10 = quantile(lat, 0.1);
    r.latency_ms_p90 = quantile(lat, 0.9);
    await run(images, a.inferBatch, shape);
    const thr = [];
    for (let i = 0; i < a.inferReps; i++) {
      const t0 = nowMs();
      await run(images, a.inferBatch, shape);
      thr.push(nowMs() - t0);
    }
    thr.sort((x, y) => x - y);
    r.infer_images_per_s = a.inferBatch / (quantile(thr, 0.5) / 1e3);
    res.runs.push(r);
    if (sess.release) await sess.release();
  }
  res.peak_rss_bytes = process.resourceUsage().maxRSS * 1024;
  const text = JSON.stringify(res, null, 1);
  if (a.jsonOut) fs.writeFileSync(a.jsonOut, text + '\n');
  else process.stdout.write(text + '\n');
}

main().catch((e) => {
  process.stderr.write(`ort_bench: error: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
