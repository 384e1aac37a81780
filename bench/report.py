#!/usr/bin/python3
"""Joins the per-framework results of bench/compare.sh into one table of absolute numbers and
ratios; prints it and writes DIR/summary.json and DIR/summary.md.

    bench/report.py DIR MODEL...

Reads, per MODEL: DIR/MODEL.mvmoe.json (`mvmoe bench --json`), DIR/MODEL.torch.tN.json
(torch_bench.py, one per thread count N) and, if present, DIR/MODEL.ort.json (ort_bench.js)
and the bf16 pair DIR/MODEL.mvmoe-bf16.json, DIR/MODEL.torch-bf16.tN.json (compare.sh --bf16),
and the int8 pair DIR/MODEL.mvmoe-int8.json (`mvmoe bench --precision int8`) and
DIR/MODEL.ort-int8.json (ort_bench.js on `mvmoe export --int8`).
Every ratio is "mvmoe's advantage": > 1 means mvmoe is faster (their time / our time, or our
images/s / their images/s), measured in this one run.
"""
import glob
import json
import os
import re
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def ratio(a, b):
    return a / b if a and b else None


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def sci(v):
    return "-" if v is None else f"{v:.2e}"


def model_summary(d, name):
    ours = load(os.path.join(d, f"{name}.mvmoe.json"))
    torch = {}
    for p in glob.glob(os.path.join(d, f"{name}.torch.t*.json")):
        r = load(p)
        torch[int(r["threads"])] = r
    ort_path = os.path.join(d, f"{name}.ort.json")
    ort = {int(r["threads"]): r for r in load(ort_path)["runs"]} if os.path.exists(ort_path) else {}
    ours_t = {int(r["threads"]): r for r in ours["runs"]}
    threads = sorted(ours_t)
    cfg = ours["config"]
    rows = []  # (measure, threads, mvmoe, torch eager, torchscript, ort, ratios...)

    def get(dct, t, *keys):
        v = dct.get(t)
        for k in keys:
            if v is None:
                return None
            v = v.get(k)
        return v

    for t in threads:
        o, te = ours_t[t]["train_images_per_s"], get(torch, t, "train", "train_images_per_s")
        rows.append({"measure": "train images/s", "threads": t, "mvmoe": o, "torch_eager": te,
                     "vs_torch_eager": ratio(o, te)})
    for t in threads:
        o = ours_t[t]["latency_ms_median"]
        te, ts, on = (get(torch, t, "eager", "latency_ms_median"),
                      get(torch, t, "torchscript", "latency_ms_median"), get(ort, t, "latency_ms_median"))
        rows.append({"measure": "latency batch 1, ms", "threads": t, "mvmoe": o, "torch_eager": te,
                     "torchscript": ts, "ort": on, "vs_torch_eager": ratio(te, o),
                     "vs_torchscript": ratio(ts, o), "vs_ort": ratio(on, o)})
    for t in threads:
        o = ours_t[t]["infer_images_per_s"]
        te, ts, on = (get(torch, t, "eager", "infer_images_per_s"),
                      get(torch, t, "torchscript", "infer_images_per_s"), get(ort, t, "infer_images_per_s"))
        rows.append({"measure": f"inference batch {ours['options']['infer_batch']}, images/s",
                     "threads": t, "mvmoe": o, "torch_eager": te, "torchscript": ts, "ort": on,
                     "vs_torch_eager": ratio(o, te), "vs_torchscript": ratio(o, ts), "vs_ort": ratio(o, on)})
    bf16 = []  # mvmoe --precision bf16 vs PyTorch bf16 autocast (compare.sh --bf16)
    bf_path = os.path.join(d, f"{name}.mvmoe-bf16.json")
    if os.path.exists(bf_path):
        bf_t = {int(r["threads"]): r for r in load(bf_path)["runs"]}
        tb = {}
        for p in glob.glob(os.path.join(d, f"{name}.torch-bf16.t*.json")):
            r = load(p)
            tb[int(r["threads"])] = r
        for t in sorted(bf_t):
            o, te = bf_t[t]["train_images_per_s"], get(tb, t, "train", "train_images_per_s")
            bf16.append({"threads": t, "train": o, "torch_bf16_train": te, "vs_torch_bf16": ratio(o, te),
                         "vs_own_fp32": ratio(o, ours_t[t]["train_images_per_s"]) if t in ours_t else None,
                         "latency_ms": bf_t[t]["latency_ms_median"],
                         "infer_images_per_s": bf_t[t]["infer_images_per_s"],
                         "ort_latency_ms": get(ort, t, "latency_ms_median"),
                         "ort_infer_images_per_s": get(ort, t, "infer_images_per_s")})
    int8 = []  # mvmoe --precision int8 vs ONNX Runtime on mvmoe export --int8 (compare.sh)
    i8_path, o8_path = os.path.join(d, f"{name}.mvmoe-int8.json"), os.path.join(d, f"{name}.ort-int8.json")
    o8 = {int(r["threads"]): r for r in load(o8_path)["runs"]} if os.path.exists(o8_path) else {}
    if os.path.exists(i8_path):
        i8_t = {int(r["threads"]): r for r in load(i8_path)["runs"]}
        for t in sorted(i8_t):
            lat, ips = i8_t[t]["latency_ms_median"], i8_t[t]["infer_images_per_s"]
            olat, oips = get(o8, t, "latency_ms_median"), get(o8, t, "infer_images_per_s")
            int8.append({"threads": t, "latency_ms": lat, "ort_latency_ms": olat, "vs_ort_latency": ratio(olat, lat),
                         "own_fp32_speedup_latency": ratio(get(ours_t, t, "latency_ms_median"), lat),
                         "ort_fp32_speedup_latency": ratio(get(ort, t, "latency_ms_median"), olat),
                         "infer_images_per_s": ips, "ort_infer_images_per_s": oips, "vs_ort_infer": ratio(ips, oips),
                         "own_fp32_speedup_infer": ratio(ips, get(ours_t, t, "infer_images_per_s")),
                         "ort_fp32_speedup_infer": ratio(oips, get(ort, t, "infer_images_per_s"))})
    best_ours = min(r["latency_ms_median"] for r in ours["runs"])
    best_ort = min((r["latency_ms_median"] for r in ort.values()), default=None)
    return {
        "model": name,
        "shape": f"{cfg['img_size']}x{cfg['img_size']}x{cfg['in_chans']}, {cfg['num_classes']} classes, "
                 f"{ours['params'] / 1e6:.2f} M params, {ours['flops_per_image'] / 1e9:.3f} GFLOPs/image",
        "train_batch": ours["options"]["batch"],
        "rows": rows,
        "latency_best_threads": {"mvmoe_ms": best_ours, "ort_ms": best_ort,
                                 "vs_ort": ratio(best_ort, best_ours)},
        "train_mfu": {t: ours_t[t]["train_mfu"] for t in threads},
        "peak_gflops": {t: ours_t[t]["peak_gflops"] for t in threads},
        "rss_over_analytic": max(r["rss_over_analytic"] for r in ours["runs"]),
        "analytic_train_mib": ours["runs"][0]["bytes_train_total"] / 2**20,
        "peak_rss_mib": max(r["peak_rss_bytes"] for r in ours["runs"]) / 2**20,
        "check_max_abs_diff": {
            "torch": max((r.get("check_max_abs_diff", 0) for r in torch.values()), default=None),
            "ort": max((r.get("check_max_abs_diff", 0) for r in ort.values()), default=None),
            "max_abs_logit": next((r.get("check_max_abs_logit") for r in torch.values()), None)},
        "ort_available": bool(ort),
        "bf16": bf16,
        "int8": int8,
        "int8_ort_vs_fp32_max_abs_diff": max((r.get("check_max_abs_diff", 0) for r in o8.values()), default=None),
    }


COLS = [("measure", "measure"), ("threads", "thr"), ("mvmoe", "mvmoe"), ("torch_eager", "torch eager"),
        ("torchscript", "torchscript"), ("ort", "ORT"), ("vs_torch_eager", "x eager"),
        ("vs_torchscript", "x script"), ("vs_ort", "x ORT")]


def markdown(summaries):
    out = ["# mvmoe vs PyTorch vs ONNX Runtime", "",
           "Ratios are mvmoe's advantage measured in this run (> 1: mvmoe faster).", ""]
    for s in summaries:
        out += [f"## {s['model']} ({s['shape']}; training batch {s['train_batch']})", "",
                "| " + " | ".join(h for _, h in COLS) + " |",
                "|" + "---|" * len(COLS)]
        for r in s["rows"]:
            out.append("| " + " | ".join(
                fmt(r.get(k), 2 if k.startswith("vs_") else 1) if k != "threads" else str(r[k])
                for k, _ in COLS) + " |")
        lb = s["latency_best_threads"]
        chk = s["check_max_abs_diff"]
        mfu = ", ".join(f"{t} thr {100 * v:.1f}% of {s['peak_gflops'][t]:.0f} GFLOP/s"
                        for t, v in s["train_mfu"].items())
        out += ["",
                f"- batch-1 latency, best thread setting: mvmoe {fmt(lb['mvmoe_ms'], 3)} ms, "
                f"ORT {fmt(lb['ort_ms'], 3)} ms, x ORT {fmt(lb['vs_ort'], 2)}",
                f"- training MFU (mvmoe): {mfu}",
                f"- memory: peak RSS {s['peak_rss_mib']:.1f} MiB vs analytic (params+grads+AdamW+"
                f"activations) {s['analytic_train_mib']:.1f} MiB: {s['rss_over_analytic']:.2f}x",
                f"- same function: max |logits - mvmoe's| torch {sci(chk['torch'])}, ORT "
                f"{sci(chk['ort']) if s['ort_available'] else '- (not run)'}"
                f" (max |logit| {sci(chk['max_abs_logit'])})", ""]
        if s["bf16"]:
            out += ["bf16 products (`--precision bf16`; results are not fp32's) against PyTorch training "
                    "under bf16 autocast; inference against fp32 ORT:", "",
                    "| thr | train img/s | PyTorch bf16 | x PyTorch bf16 | x own fp32 | latency ms | ORT ms "
                    "| x ORT | batch img/s | ORT img/s | x ORT |", "|" + "---|" * 11]
            for r in s["bf16"]:
                out.append("| " + " | ".join([
                    str(r["threads"]), fmt(r["train"]), fmt(r["torch_bf16_train"]), fmt(r["vs_torch_bf16"], 2),
                    fmt(r["vs_own_fp32"], 2), fmt(r["latency_ms"], 3), fmt(r["ort_latency_ms"], 3),
                    fmt(ratio(r["ort_latency_ms"], r["latency_ms"]), 2), fmt(r["infer_images_per_s"]),
                    fmt(r["ort_infer_images_per_s"]),
                    fmt(ratio(r["infer_images_per_s"], r["ort_infer_images_per_s"]), 2)]) + " |")
            out.append("")
        if s["int8"]:
            out += ["int8 inference: `mvmoe bench --precision int8` (int8 per token) against ONNX Runtime on "
                    "`mvmoe export --int8` (the same int8 weights; activations per tensor). \"x own fp32\": each "
                    "one's speed-up over its own fp32 (ORT's fp32 is PyTorch's export):", "",
                    "| thr | latency ms | ORT int8 ms | x ORT int8 | x own fp32 | ORT x own fp32 | batch img/s "
                    "| ORT int8 img/s | x ORT int8 | x own fp32 | ORT x own fp32 |", "|" + "---|" * 11]
            for r in s["int8"]:
                out.append("| " + " | ".join([
                    str(r["threads"]), fmt(r["latency_ms"], 3), fmt(r["ort_latency_ms"], 3),
                    fmt(r["vs_ort_latency"], 2), fmt(r["own_fp32_speedup_latency"], 2),
                    fmt(r["ort_fp32_speedup_latency"], 2), fmt(r["infer_images_per_s"]),
                    fmt(r["ort_infer_images_per_s"]), fmt(r["vs_ort_infer"], 2),
                    fmt(r["own_fp32_speedup_infer"], 2), fmt(r["ort_fp32_speedup_infer"], 2)]) + " |")
            out += ["", f"- ORT int8 max |logits - mvmoe fp32's| on the check images: "
                    f"{sci(s['int8_ort_vs_fp32_max_abs_diff'])} (int8 rounding, not an error)", ""]
    return "\n".join(out)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: bench/report.py DIR MODEL...")
    d, names = sys.argv[1], sys.argv[2:]
    for n in names:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", n):
            sys.exit(f"report: odd model name '{n}'")
    summaries = [model_summary(d, n) for n in names]
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"models": summaries}, f, indent=1)
    md = markdown(summaries)
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
