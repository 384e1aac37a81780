#!/usr/bin/python3
"""PyTorch side of bench/compare.sh: the same checkpoint, the same measurements as `mvmoe bench`.

One thread setting per process: Debian's PyTorch does its matmuls in OpenBLAS, which reads
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS once at load and ignores torch.set_num_threads, so the
caller pins those variables to --threads (this script refuses to run otherwise).

Measures, on the model from tests/parity/vit_torch.py loaded from CKPT in float32:
  training   eager, AdamW (the project's decay groups, lr 1e-3, wd 0.05), label smoothing 0.1,
             gradient clipping 1.0, random N(0,1) inputs: median/min/max step time, images/s;
  inference  uint8 images -> (v/255 - mean)/std -> logits (normalization included, as in
             mvmoe_model_logits), eager and TorchScript-frozen: batch-1 latency (median, p10,
             p90) and batch throughput;
  check      max |logits - ours| on the images of `mvmoe bench --check-out`;
  export     optionally the uint8-input model as ONNX (opset 17, dynamic batch) for ort_bench.js.
--bf16 trains under torch.autocast("cpu", torch.bfloat16) (oneDNN's bf16 kernels), the
counterpart of `mvmoe bench --precision bf16`.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "parity"))
import safetensors_io  # noqa: E402
import vit_torch  # noqa: E402


class Uint8Model(nn.Module):
    """uint8 [B, C, S, S] -> logits: the contract's normalization, then the ViT."""

    def __init__(self, model, cfg):
        super().__init__()
        self.model = model
        c = cfg["in_chans"]
        self.register_buffer("mean", torch.tensor(cfg["mean"][:c], dtype=torch.float32).reshape(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"][:c], dtype=torch.float32).reshape(1, c, 1, 1))

    def forward(self, x):
        return self.model((x.to(torch.float32) / 255.0 - self.mean) / self.std)


def quantiles(times):
    t = np.sort(np.asarray(times, dtype=np.float64))
    return {"median": float(np.quantile(t, 0.5)), "p10": float(np.quantile(t, 0.1)),
            "p90": float(np.quantile(t, 0.9)), "min": float(t[0]), "max": float(t[-1])}


def bench_train(model, cfg, args):
    gen = torch.Generator().manual_seed(args.seed)
    c, s, k = cfg["in_chans"], cfg["img_size"], cfg["num_classes"]
    x = torch.randn(args.batch, c, s, s, generator=gen)
    y = torch.randint(0, k, (args.batch,), generator=gen)
    opt = torch.optim.AdamW(vit_torch.adamw_param_groups(model, 0.05), lr=1e-3, betas=(0.9, 0.999),
                            eps=1e-8)
    model.train()
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        losses.append(float(loss))
        if i >= args.warmup:
            times.append(dt)
    q = quantiles(times)
    return {"step_ms_median": 1e3 * q["median"], "step_ms_min": 1e3 * q["min"],
            "step_ms_max": 1e3 * q["max"], "step_ms_p10": 1e3 * q["p10"], "step_ms_p90": 1e3 * q["p90"],
            "train_images_per_s": args.batch / q["median"], "loss_first": losses[0],
            "loss_last": losses[-1]}


def bench_infer(fn, images, args):
    """fn: uint8 tensor -> logits. Batch-1 latency over the images in turn, then throughput."""
    out = {}
    with torch.inference_mode():
        for i in range(3):
            fn(images[i % len(images)][None])
        times = []
        for i in range(args.latency_reps):
            x = images[i % len(images)][None]
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
        q = quantiles(times)
        out.update(latency_ms_median=1e3 * q["median"], latency_ms_p10=1e3 * q["p10"],
                   latency_ms_p90=1e3 * q["p90"])
        fn(images)
        times = []
        for _ in range(args.infer_reps):
            t0 = time.perf_counter()
            fn(images)
            times.append(time.perf_counter() - t0)
        out["infer_images_per_s"] = len(images) / float(np.median(times))
    return out


def frozen(wrapper, example):
    """TorchScript-frozen inference module: script if the model scripts, else trace."""
    wrapper.eval()
    try:
        sm, how = torch.jit.script(wrapper), "script"
    except Exception as e:  # scripting is stricter than eager Python; tracing is equivalent here
        print(f"torch_bench: torch.jit.script failed ({type(e).__name__}); tracing instead",
              file=sys.stderr)
        with torch.no_grad():
            sm, how = torch.jit.trace(wrapper, example), "trace"
    return torch.jit.freeze(sm), how


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--check", help="images + logits from `mvmoe bench --check-out`")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--infer-batch", type=int, default=256)
    p.add_argument("--infer-reps", type=int, default=3)
    p.add_argument("--latency-reps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-train", action="store_true", help="inference only")
    p.add_argument("--no-infer", action="store_true", help="training only")
    p.add_argument("--bf16", action="store_true",
                   help="training under torch.autocast(cpu, bfloat16): PyTorch's counterpart of "
                        "`mvmoe bench --precision bf16` (training only)")
    p.add_argument("--onnx-out", help="also export the uint8-input model as ONNX here")
    p.add_argument("--json-out", help="write the results here (else stdout)")
    args = p.parse_args()
    if min(args.threads, args.batch, args.steps, args.infer_batch, args.infer_reps,
           args.latency_reps) < 1 or args.warmup < 0:
        p.error("counts must be >= 1 (warmup >= 0)")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if os.environ.get(var) != str(args.threads):
            p.error(f"{var} must be set to --threads ({args.threads}) in the environment: "
                    f"OpenBLAS ignores torch.set_num_threads (got {os.environ.get(var)!r})")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model, cfg = vit_torch.load_checkpoint(args.ckpt, dtype=torch.float32)
    wrapper = Uint8Model(model, cfg).eval()
    res = {"framework": "pytorch", "torch_version": torch.__version__, "threads": args.threads,
           "checkpoint": args.ckpt, "options": {k: getattr(args, k) for k in (
               "batch", "warmup", "steps", "infer_batch", "infer_reps", "latency_reps", "seed", "bf16")}}
    gen = torch.Generator().manual_seed(args.seed + 1)
    c, s = cfg["in_chans"], cfg["img_size"]
    images = torch.randint(0, 256, (args.infer_batch, c, s, s), generator=gen, dtype=torch.uint8)

    if args.check:
        t, _ = safetensors_io.load(args.check)
        x = torch.as_tensor(t["images"]).to(torch.uint8)
        with torch.inference_mode():
            ref = wrapper(x).numpy()
        res["check_max_abs_diff"] = float(np.abs(ref - t["logits"]).max())
        res["check_max_abs_logit"] = float(np.abs(t["logits"]).max())
    if args.onnx_out:
        torch.onnx.export(wrapper, images[:1], args.onnx_out, opset_version=17,
                          input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        res["onnx"] = args.onnx_out

    # inference first, on the checkpoint's weights (training changes them)
    if not args.no_infer:
        res["eager"] = bench_infer(lambda x: wrapper(x), images, args)
        fz, how = frozen(wrapper, images[:1])
        res["torchscript_how"] = how
        res["torchscript"] = bench_infer(lambda x: fz(x), images, args)
    if not args.no_train:
        res["train"] = bench_train(model, cfg, args)
    res["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    text = json.dumps(res, indent=1)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
