#!/usr/bin/env python3
"""Time per epoch of Mobile V-MoE training on 1..64 nodes (docs/SCALING.md, "A model of 1 to 64 nodes").

A step of global batch B on N nodes costs
    t_step(N) = t_compute(B / N) + t_opt + t_comm(N)
    t_compute(b) = b / r_node                     (r_node: a node's training images/s, measured
                                                   with `mvmoe bench` on the same model)
    t_opt                                         (the AdamW step and clipping, which every rank
                                                   runs on the whole model: not divided by N;
                                                   `mvmoe bench`'s "optimizer" phase)
    t_comm(N)    = sum over collectives of  alpha * steps(N) + bytes(N) / beta
where a ring all-reduce of S bytes takes 2(N-1) latency steps and sends 2(N-1)/N * S bytes per
node, and an all-to-all (per-image expert parallelism) takes N-1 latency steps and sends the
images that leave the node. The gradient sum is not overlapped with the backward (as in
src/train/dist.c today), so the two terms add. Everything else (data loading, validation,
stragglers) is left out: the numbers are a lower bound on time per epoch.

Usage:
  scaling_model.py --node-img-s R [--params P] [--shared-params P] [--tokens T --dim D]
                   [--batch B] [--images N] [--bandwidth GB/s] [--latency-us US] [--nodes 1,2,...]
                   [--optimizer-s S]
  scaling_model.py --vit-tiny-moe --node-img-s R ...   (ViT-Tiny/16@224, E=10, L=2, k=1)
Prints a markdown table; every input is printed above it.
"""
import argparse
import sys


def vit_params(dim, depth, mlp, patch, chans, tokens, classes, experts=1, moe_layers=0):
    """Parameter count of an mvmoe ViT with per-image routing (docs/CHECKPOINT.md's tensors)."""
    attn = 4 * dim * dim + 4 * dim          # qkv + proj, with biases
    norms = 4 * dim                         # two LayerNorms per block
    mlp_p = 2 * dim * mlp + mlp + dim       # fc1 + fc2
    blocks = depth * (attn + norms + mlp_p)
    experts_extra = moe_layers * (experts - 1) * mlp_p
    embed = patch * patch * chans * dim + dim + dim + tokens * dim   # patch + cls + pos
    head = 2 * dim + dim * classes + classes
    router = dim * experts if moe_layers else 0   # the router has no bias
    total = blocks + experts_extra + embed + head + router
    expert_params = moe_layers * experts * mlp_p
    return total, total - expert_params


def comm_seconds(kind, n, p_all, p_shared, img_bytes, batch, alpha, beta):
    """Seconds of communication per step on n nodes, and the bytes each node sends."""
    if n == 1:
        return 0.0, 0.0
    ring = 2.0 * (n - 1) / n
    if kind == "data":
        sent = ring * 4 * p_all
        return 2 * (n - 1) * alpha + sent / beta, sent
    # per-image expert parallel, top-1: each image leaves its node with probability (n-1)/n,
    # once in the forward and once (its gradient) in the backward; shared weights all-reduce
    moved = 2.0 * (batch / n) * (n - 1) / n * img_bytes
    sent = moved + ring * 4 * p_shared
    return 2 * (n - 1) * alpha + 2 * (n - 1) * alpha + sent / beta, sent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vit-tiny-moe", action="store_true",
                    help="ViT-Tiny/16@224, 1000 classes, E=10 experts in the last L=2 blocks")
    ap.add_argument("--node-img-s", type=float, required=True,
                    help="one node's training images/s on this model (mvmoe bench)")
    ap.add_argument("--params", type=int, help="all parameters")
    ap.add_argument("--shared-params", type=int, help="parameters outside the experts")
    ap.add_argument("--tokens", type=int, default=197)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--batch", type=int, default=4096, help="global batch")
    ap.add_argument("--images", type=int, default=1281167, help="images per epoch (ImageNet-1k)")
    ap.add_argument("--bandwidth", type=float, default=3.125, help="GB/s per node (25 Gb/s Ethernet)")
    ap.add_argument("--latency-us", type=float, default=10.0, help="per message step, microseconds")
    ap.add_argument("--nodes", default="1,2,4,5,8,10,16,32,64")
    ap.add_argument("--experts", type=int, default=10)
    ap.add_argument("--optimizer-s", type=float, default=0.0,
                    help="seconds per step every rank spends on the optimizer (not divided by N)")
    a = ap.parse_args()
    if a.vit_tiny_moe:
        p, ps = vit_params(192, 12, 768, 16, 3, 197, 1000, experts=a.experts, moe_layers=2)
        a.params = a.params or p
        a.shared_params = a.shared_params or ps
        a.tokens, a.dim = 197, 192
    if not a.params or not a.shared_params:
        sys.exit("scaling_model.py: give --params and --shared-params, or --vit-tiny-moe")
    alpha, beta = a.latency_us * 1e-6, a.bandwidth * 1e9
    img_bytes = a.tokens * a.dim * 4
    nodes = [int(x) for x in a.nodes.split(",")]
    print(f"inputs: node {a.node_img_s:g} images/s, {a.params:,} parameters "
          f"({a.shared_params:,} shared), image activations {img_bytes:,} bytes, "
          f"global batch {a.batch}, {a.images:,} images per epoch, "
          f"{a.bandwidth:g} GB/s and {a.latency_us:g} us per node, optimizer {a.optimizer_s:g} s per step")
    print()
    print("| nodes | images per node per step | compute + optimizer s/step | data parallel: comm s/step, MB/node | "
          "data parallel: min/epoch | expert parallel top-1: comm s/step, MB/node | expert parallel: min/epoch | speed-up (data parallel) |")
    print("|---|---|---|---|---|---|---|---|")
    steps = a.images / a.batch
    base = None
    for n in nodes:
        comp = (a.batch / n) / a.node_img_s + a.optimizer_s
        cd, bd = comm_seconds("data", n, a.params, a.shared_params, img_bytes, a.batch, alpha, beta)
        ce, be = comm_seconds("expert", n, a.params, a.shared_params, img_bytes, a.batch, alpha, beta)
        ep = f"{ce:.3f}, {be / 1e6:.1f}" if n <= a.experts and a.experts % n == 0 else "N does not divide E"
        ep_t = f"{steps * (comp + ce) / 60:.1f}" if n <= a.experts and a.experts % n == 0 else "-"
        td = steps * (comp + cd) / 60
        base = base or td
        print(f"| {n} | {a.batch / n:g} | {comp:.3f} | {cd:.3f}, {bd / 1e6:.1f} | {td:.1f} | {ep} | {ep_t} | {base / td:.1f}x |")


if __name__ == "__main__":
    main()
