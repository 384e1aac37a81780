"""PyTorch parity test for the C ViT: forward, loss, gradients and two AdamW steps.

Run:  /usr/bin/python3 tests/parity/test_parity.py --build build
For each config below it builds a random, well-scaled ViT, writes it as a contract checkpoint
(docs/CHECKPOINT_FORMAT.md) plus a batch file, runs `build/tests/tools/parity_dump CKPT BATCH OUT
[HEADS]`, and compares what the C side dumped with a float64 PyTorch reference
(tests/parity/vit_torch.py, written from the contract text). Before that it checks the Python
side itself (safetensors round trip, attention head layout against torch's
MultiheadAttention, autograd against finite differences, the MoE pieces against hand-worked
cases), so a wrong reference cannot pass silently.

The MoE cases (MOE_CONFIGS: image-superclass, image-learned, token-learned; docs/MOE.md) run
the C side in training mode; the reference reuses the router noise the C forward drew
(`route_noise` in the dump) and compares logits, the loss and its three parts (CE,
super-class router loss, importance + load loss), every gradient and the weights after each
AdamW step. Experts that no loss-relevant item reached must have exactly zero gradient on
both sides. Exits non-zero on any failure; the last line is "N passed, N failed".
Options: --build DIR (default build), --only S1,TL3 (run only these cases), --keep.
"""
import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # a skip, which tests/run_all.sh counts as such (exit 77), never a pass
    print(f"SKIP test_parity: PyTorch/numpy not importable by {sys.executable} ({e}); "
          f"install python3-torch (bash scripts/setup.sh) to run the parity tests")
    sys.exit(77)

import safetensors_io  # noqa: E402
import vit_torch  # noqa: E402

TOOL = os.path.join("tests", "tools", "parity_dump")
# float32 (C) vs float64 (reference): per-tensor max|c - ref| / max|ref|.
TOL_VALUE = 1e-4
# The optimizer update (step - initial), same measure. It is looser and restricted to
# elements whose reference gradient is not tiny, because Adam divides by sqrt(v): on a
# near-zero gradient the update is ~lr * g / |g| and float32 rounding noise in g alone decides
# its size (and even its sign), so those elements say nothing about the C implementation.
# The same restriction applies to the TOL_VALUE check of the stepped weights: some gradients
# are exactly zero in exact arithmetic -- the key bias (middle third of attn.qkv.bias) adds
# q.b_k to every score of a softmax row, which cancels -- so their float32 updates are
# +-lr of pure noise. Excluded elements are only checked against Adam's step bound instead:
# each AdamW step moves an element by at most ~lr (|m_hat|/sqrt(v_hat) <= 1.0014 for two
# steps with beta = 0.9/0.999, by Cauchy-Schwarz) plus the shared decay term.
TOL_UPDATE = 1e-3
GRAD_FLOOR = 1e-5  # an element counts for the update check if |g| > GRAD_FLOOR * max|g|
ADAM_STEP_BOUND = 1.01  # per-step |update| / lr bound used for the excluded elements

OPTIM = {"lr": 5e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.05}
STEPS = 2

CONFIGS = [
    # name, model config, batch size, label smoothing, clip norm, storage, config in file
    dict(name="A", cfg=dict(img_size=8, in_chans=1, patch=4, dim=16, depth=2, heads=2,
                            mlp_dim=32, num_classes=5, mean=[0.3], std=[0.4]),
         batch=6, label_smoothing=0.0, clip_norm=0.0, dtype="F32", with_config=True),
    dict(name="B", cfg=dict(img_size=12, in_chans=3, patch=4, dim=24, depth=3, heads=3,
                            mlp_dim=40, num_classes=7, mean=[0.485, 0.456, 0.406],
                            std=[0.229, 0.224, 0.225]),
         batch=5, label_smoothing=0.1, clip_norm=0.05, dtype="F32", with_config=True),
    # A plain timm-style file: no __metadata__, heads on the command line, mean=std=0.5.
    dict(name="C", cfg=dict(img_size=8, in_chans=1, patch=4, dim=16, depth=2, heads=2,
                            mlp_dim=32, num_classes=5, mean=[0.5], std=[0.5]),
         batch=6, label_smoothing=0.0, clip_norm=0.0, dtype="F32", with_config=False),
    # Half-precision checkpoints: the contract says readers widen F16 and BF16.
    dict(name="D", cfg=dict(img_size=6, in_chans=2, patch=3, dim=16, depth=1, heads=4,
                            mlp_dim=24, num_classes=3, mean=[0.5, 0.4], std=[0.3, 0.2]),
         batch=3, label_smoothing=0.2, clip_norm=0.0, dtype="F16", with_config=True),
    dict(name="E", cfg=dict(img_size=6, in_chans=2, patch=3, dim=16, depth=1, heads=4,
                            mlp_dim=24, num_classes=3, mean=[0.5, 0.4], std=[0.3, 0.2]),
         batch=3, label_smoothing=0.0, clip_norm=0.0, dtype="BF16", with_config=True),
]


# MoE cases (docs/MOE.md): tiny models, C side in training mode (noise for learned routing
# unless route_noise is 0, capacity for token-learned). Router weights are spread (logit std
# 3 over items, see spread_routers) so top-k margins are wide; a draw whose smallest margin is
# under MARGIN_MIN is redrawn (seed + 1000).
MOE_MODEL = dict(img_size=8, in_chans=1, patch=4, dim=12, depth=3, heads=3, mlp_dim=20,
                 num_classes=5, mean=[0.3], std=[0.4])
MARGIN_MIN = 1e-3
MOE_ATTEMPTS = 5


def moe_case(name, routing, experts, top_k, layers, batch=4, label_smoothing=0.0,
             clip_norm=0.0, superclass_of=None, superclass_lambda=0.0, aux_weight=0.0,
             capacity_ratio=0.0, route_noise=1, need_drops=False):
    cfg = dict(MOE_MODEL, routing=routing, experts=experts, top_k=top_k, moe_layers=layers)
    if superclass_of is not None:
        cfg["superclass_of"] = superclass_of
    return dict(name=name, cfg=cfg, batch=batch, label_smoothing=label_smoothing,
                clip_norm=clip_norm, dtype="F32", with_config=True,
                moe=dict(superclass_lambda=superclass_lambda, aux_weight=aux_weight,
                         capacity_ratio=capacity_ratio, route_noise=route_noise,
                         router_logit_std=3.0, need_drops=need_drops))


MOE_CONFIGS = [
    # 3 images, 4 experts, k = 1: at least one expert gets no image (exact-zero gradients)
    moe_case("S1", "image-superclass", 4, 1, 1, batch=3, label_smoothing=0.1,
             superclass_of=[0, 1, 2, 3, 1], superclass_lambda=0.3),
    moe_case("S2", "image-superclass", 3, 2, 2, clip_norm=1.0,
             superclass_of=[0, 1, 2, 0, 1], superclass_lambda=0.5),
    # the aux weight is raised from the default 0.01 so the aux gradients are not lost in
    # the gate gradients of the router weight
    moe_case("IL", "image-learned", 4, 2, 1, aux_weight=0.1),
    moe_case("IL0", "image-learned", 3, 1, 2, aux_weight=0.1, route_noise=0),
    # 20 tokens, capacity ceil(0.8 * 1 * 20 / 3) = 6 per expert: some tokens are dropped
    moe_case("TL1", "token-learned", 3, 1, 2, aux_weight=0.1, capacity_ratio=0.8,
             need_drops=True),
    moe_case("TL2", "token-learned", 3, 2, 2, label_smoothing=0.1, aux_weight=0.1),
    # k = 2 with capacity ceil(0.85 * 2 * 20 / 3) = 12: drops, and choice-major filling keeps
    # a different set than item-major filling would (need_drops checks both)
    moe_case("TL3", "token-learned", 3, 2, 2, aux_weight=0.1, capacity_ratio=0.85,
             need_drops=True),
]


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(what)
            print(f"FAIL {what}")
        return ok


# ---------------------------------------------------------------------------------------------
# Model construction and the float64 reference
# ---------------------------------------------------------------------------------------------

def init_random(model, seed):
    """Random but well-scaled weights: matrices N(0, 1/fan_in) so activations stay O(1) and
    attention is far from uniform; LayerNorm weights 1 + 0.1 N; biases, cls/pos 0.1 N."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * n)
            elif name.endswith(".weight"):
                fan_in = p[0].numel()
                p.copy_(n / math.sqrt(fan_in))
            else:  # biases, cls_token, pos_embed
                p.copy_(0.1 * n)


def storage_round(model, dtype):
    """Round the weights to what the checkpoint stores, so both sides start identical."""
    tdt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(tdt).to(torch.float64))


def reference(model, x, y, label_smoothing, clip_norm, moe=None, noise=None):
    """Logits, loss (and its parts), grads at the initial weights, then STEPS AdamW steps
    (torch semantics). MoE models run in training mode with the C side's router `noise` (one
    [n, E] tensor per router, or None) and `moe`'s capacity ratio / loss weights; every step
    reuses the same noise, as parity_dump does. ref["routes"][step] keeps each forward's
    routing decisions."""
    params = dict(model.named_parameters())
    init = {k: v.detach().clone() for k, v in params.items()}
    opt = torch.optim.AdamW(vit_torch.adamw_param_groups(model, OPTIM["weight_decay"]),
                            lr=OPTIM["lr"], betas=(OPTIM["beta1"], OPTIM["beta2"]),
                            eps=OPTIM["eps"])
    ref = {"init": init, "grads": [], "steps": [], "norms": [], "routes": []}
    moe = moe or {}
    model.train()
    for step in range(STEPS):
        opt.zero_grad()
        logits = model(x, noise=noise, capacity_ratio=moe.get("capacity_ratio", 0.0))
        ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        router, aux = vit_torch.routing_losses(model, y, moe.get("superclass_lambda", 0.0),
                                               moe.get("aux_weight", 0.0))
        loss = ce + router + aux
        loss.backward()
        ref["routes"].append(list(model.routes))
        if step == 0:
            ref["logits"] = logits.detach().clone()
            ref["loss"] = loss.detach().reshape(1).clone()
            ref["loss_parts"] = torch.stack([ce, router, aux]).detach().clone()
        ref["grads"].append({k: v.grad.detach().clone() for k, v in params.items()})
        norm = torch.sqrt(sum((v.grad ** 2).sum() for v in params.values())).item()
        ref["norms"].append(norm)
        if clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(list(params.values()), clip_norm)
        opt.step()
        ref["steps"].append({k: v.detach().clone() for k, v in params.items()})
    return ref


def routing_margin(route):
    """Smallest gap, over all items, between consecutive entries of the top k+1 noisy router
    logits (z + eps; softmax is monotone, so this orders p): the choices, their order (which
    capacity filling reads) and the load loss's threshold index all stay put under any
    perturbation smaller than this."""
    noisy = route.z if route.noise is None else route.z + route.noise
    top = torch.sort(noisy.detach(), dim=-1, descending=True).values
    m = min(route.top_k + 1, top.shape[1])
    if m < 2:
        return math.inf
    return float((top[:, :m - 1] - top[:, 1:m]).min())


def rel_err(c, r):
    """max|c - r| / max|r| (max|c - r| when r is all zero)."""
    scale = float(np.max(np.abs(r))) if r.size else 0.0
    diff = float(np.max(np.abs(c - r))) if r.size else 0.0
    return diff / scale if scale > 0 else diff


def meta_number(v):
    """Decimal string for the batch metadata; exact "0" for zero (= feature off)."""
    return "0" if v == 0 else repr(float(v)) if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------------------------
# Python-side self checks (the reference must be right before it can judge the C side)
# ---------------------------------------------------------------------------------------------

def check_safetensors_roundtrip(res, tmp):
    rng = np.random.default_rng(1)
    t = {"f32": rng.standard_normal((3, 4)).astype(np.float32),
         "f64": rng.standard_normal((2,)).astype(np.float64),
         "i64": np.arange(-3, 4, dtype=np.int64),
         "u8": np.arange(0, 250, 7, dtype=np.uint8).reshape(-1, 1),
         "scalar": np.float32(2.5).reshape(())}
    path = os.path.join(tmp, "roundtrip.safetensors")
    safetensors_io.save(path, t, {"config": '{"a": 1}'})
    with open(path, "rb") as f:
        hlen = int.from_bytes(f.read(8), "little")
    res.check(hlen % 8 == 0, f"safetensors header length {hlen} is not a multiple of 8")
    back, meta = safetensors_io.load(path)
    res.check(meta == {"config": '{"a": 1}'}, f"safetensors metadata round trip gave {meta}")
    res.check(back["f64"].dtype == np.float32, "save did not store float64 as F32")
    for k, v in t.items():
        want = v.astype(np.float32) if v.dtype.kind == "f" else v
        ok = (back[k].shape == want.shape and back[k].dtype == want.dtype
              and np.array_equal(back[k], want))
        res.check(ok, f"safetensors round trip of '{k}' changed it: {back[k]!r} vs {want!r}")
    # Half precision against torch's own conversions (an independent implementation).
    x = rng.standard_normal(1000).astype(np.float32) * 3
    for fd, tdt in (("F16", torch.float16), ("BF16", torch.bfloat16)):
        safetensors_io.save(path, {"x": x}, float_dtype=fd)
        back, _ = safetensors_io.load(path)
        want = torch.from_numpy(x).to(tdt).to(torch.float32).numpy()
        res.check(back["x"].dtype == np.float32 and np.array_equal(back["x"], want),
                  f"safetensors {fd} save/widen differs from torch's {tdt} rounding")
    # A truncated file must be rejected, not read as garbage.
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-4])
    try:
        safetensors_io.load(path)
        res.check(False, "safetensors load accepted a truncated file")
    except ValueError:
        res.check(True, "")


def check_attention_layout(res):
    """Our q|k|v row split and per-head slicing vs torch.nn.MultiheadAttention, whose packed
    in_proj uses the same layout as timm's qkv (rows q, k, v; heads contiguous)."""
    torch.manual_seed(2)
    d, h = 12, 3
    ours = vit_torch.Attention(d, h).double()
    mha = torch.nn.MultiheadAttention(d, h, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(ours.qkv.weight)
        mha.in_proj_bias.copy_(ours.qkv.bias)
        mha.out_proj.weight.copy_(ours.proj.weight)
        mha.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 5, d, dtype=torch.float64)
    want, _ = mha(x, x, x, need_weights=False)
    err = (ours(x) - want).abs().max().item()
    res.check(err < 1e-12, f"Attention differs from nn.MultiheadAttention by {err:.3g}")


def check_autograd(res):
    """gradcheck the whole float64 model on a tiny config (w.r.t. the input), and finite
    differences of the loss w.r.t. a few parameter elements of every tensor."""
    cfg = dict(img_size=4, in_chans=2, patch=2, dim=4, depth=1, heads=2, mlp_dim=6,
               num_classes=3)
    model = vit_torch.ViT(cfg).double()
    init_random(model, 3)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2])
    ok = torch.autograd.gradcheck(lambda inp: model(inp), (x,), eps=1e-6, atol=1e-6,
                                  raise_exception=False)
    res.check(ok, "torch.autograd.gradcheck of the float64 ViT w.r.t. its input failed")
    x = x.detach()

    def loss_fn():
        return F.cross_entropy(model(x), y, label_smoothing=0.1)
    model.zero_grad()
    loss_fn().backward()
    worst = 0.0
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            for _ in range(2):
                i = int(torch.randint(p.numel(), (1,), generator=g))
                flat = p.view(-1)
                old = flat[i].item()
                flat[i] = old + 1e-6
                up = loss_fn().item()
                flat[i] = old - 1e-6
                down = loss_fn().item()
                flat[i] = old
                fd = (up - down) / 2e-6
                worst = max(worst, abs(fd - p.grad.view(-1)[i].item()))
    res.check(worst < 1e-7, f"autograd vs finite differences differ by {worst:.3g}")


def check_configless_inference(res, tmp):
    """load_checkpoint on a file without config must rebuild the same sizes from shapes."""
    cfg = vit_torch.complete_config(CONFIGS[1]["cfg"])
    model = vit_torch.ViT(cfg).double()
    path = os.path.join(tmp, "noconfig.safetensors")
    vit_torch.save_checkpoint(path, model, cfg, with_config=False)
    _, got = vit_torch.load_checkpoint(path, heads=cfg["heads"])
    keys = ("img_size", "in_chans", "patch", "dim", "depth", "heads", "mlp_dim",
            "num_classes")
    bad = {k: (got[k], cfg[k]) for k in keys if got[k] != cfg[k]}
    res.check(not bad, f"config inferred from shapes differs (got, want): {bad}")
    res.check(got["mean"] == [0.5] * 3 and got["std"] == [0.5] * 3,
              f"configless mean/std should be 0.5 per channel, got {got['mean']}/{got['std']}")


def check_moe_reference(res, tmp):
    """The MoE pieces of the reference against hand-worked cases and finite differences."""
    # top-k tie rule: equal scores go to the lower expert index
    got = vit_torch.top_k_experts(torch.tensor([[1.0, 2.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]],
                                               dtype=torch.float64), 2).tolist()
    res.check(got == [[1, 2], [0, 1]], f"top_k_experts tie rule gave {got}, want "
                                       f"[[1, 2], [0, 1]]")
    # capacity: choice-major, item order. capacity 2: items 0, 1 fill expert 0 with their
    # first choices, item 2's first choice is dropped; all second choices fit.
    keep = vit_torch.capacity_keep(torch.tensor([[0, 1], [0, 2], [0, 1], [2, 1]]), 3, 2)
    want = [[True, True], [True, True], [False, True], [True, False]]
    res.check(keep.tolist() == want, f"capacity_keep gave {keep.tolist()}, want {want}")
    res.check(vit_torch.expert_capacity(1.05, 2, 20, 3) == 14,
              "expert_capacity(1.05, k 2, n 20, E 3) != ceil(14.0000..) = 14")
    # CV^2 and the load loss by hand on a 2-item, 3-expert case
    z = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.5, 0.1]], dtype=torch.float64)
    eps = torch.tensor([[0.1, 0.3, 0.0], [0.0, -0.2, 0.4]], dtype=torch.float64)
    sigma = 0.5
    # k = 2: noisy rows [1.1, 0.3, -1.0] and [0.2, 0.3, 0.5] -> eta = 0.3 and 0.3
    phi = lambda a: 0.5 * math.erfc(-a / math.sqrt(2))  # noqa: E731
    load = [sum(1 - phi((eta - float(z[i, e])) / sigma) for i, eta in ((0, 0.3), (1, 0.3)))
            for e in range(3)]
    mu = sum(load) / 3
    want = sum((v - mu) ** 2 for v in load) / 3 / mu ** 2
    got = float(vit_torch.load_loss(z, eps, 2, sigma))
    res.check(abs(got - want) < 1e-12, f"load_loss {got} != hand value {want}")
    # gradients of the aux losses (eta's path included) against finite differences
    zz = z.clone().requires_grad_(True)
    ok = torch.autograd.gradcheck(lambda t: vit_torch.load_loss(t, eps, 2, sigma), (zz,),
                                  eps=1e-6, atol=1e-7, raise_exception=False)
    res.check(ok, "gradcheck of load_loss (through eta) failed")
    ok = torch.autograd.gradcheck(lambda t: vit_torch.importance_loss(torch.softmax(t, -1)),
                                  (zz,), eps=1e-6, atol=1e-7, raise_exception=False)
    res.check(ok, "gradcheck of importance_loss failed")
    # the dense masked MoE against a per-item loop over the chosen, kept experts
    torch.manual_seed(5)
    mlp = vit_torch.MoeMlp(6, 8, 3, 2, token_router=True).double().train()
    u = torch.randn(2, 3, 6, dtype=torch.float64)
    nz = 0.3 * torch.randn(6, 3, dtype=torch.float64)
    out = mlp(u, noise=nz, capacity_ratio=0.5)  # capacity ceil(0.5*2*6/3) = 2 per expert
    r = mlp.last_route
    rows = u.reshape(6, 6)
    want = torch.zeros(6, 6, dtype=torch.float64)
    for i in range(6):
        for j in range(2):
            e = int(r.choices[i, j])
            if r.keep[i, j]:
                want[i] += r.p[i, e] * mlp.experts[e](rows[i:i + 1])[0]
    err = (out.reshape(6, 6) - want).abs().max().item()
    res.check(err < 1e-12 and int((~r.keep).sum()) > 0 and r.routed_count().max() <= 2,
              f"MoeMlp differs from the per-item loop by {err:.3g} (or capacity 2 was not "
              f"exercised/respected: counts {r.routed_count().tolist()})")
    # the whole MoE model: autograd against finite differences, every routing mode
    for routing in ("image-superclass", "image-learned", "token-learned"):
        cfg = dict(img_size=4, in_chans=1, patch=2, dim=4, depth=2, heads=2, mlp_dim=6,
                   num_classes=3, routing=routing, experts=3, top_k=2, moe_layers=1,
                   superclass_of=[0, 1, 2])
        model = vit_torch.ViT(cfg).double()
        init_random(model, 6)
        x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
        y = torch.tensor([0, 2])
        n = 2 if routing != "token-learned" else 2 * 5
        noise = None if routing == "image-superclass" else [
            torch.randn(n, 3, dtype=torch.float64) / 3]

        def loss_fn():
            logits = model(x, noise=noise, capacity_ratio=0.9)
            a, b = vit_torch.routing_losses(model, y, 0.3, 0.1)
            return F.cross_entropy(logits, y) + a + b
        model.zero_grad()
        loss_fn().backward()
        worst = 0.0
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if not pname.endswith("router.weight"):
                    continue
                for i in range(p.numel()):
                    flat = p.view(-1)
                    old = flat[i].item()
                    flat[i] = old + 1e-6
                    up = loss_fn().item()
                    flat[i] = old - 1e-6
                    down = loss_fn().item()
                    flat[i] = old
                    worst = max(worst, abs((up - down) / 2e-6 - p.grad.view(-1)[i].item()))
        res.check(worst < 1e-7, f"{routing}: router gradient vs finite differences differ by "
                                f"{worst:.3g}")
    # load_checkpoint round trip of an MoE model, and a clear error without config
    cfg = vit_torch.complete_config(MOE_CONFIGS[4]["cfg"])
    model = vit_torch.ViT(cfg).double()
    path = os.path.join(tmp, "moe.safetensors")
    vit_torch.save_checkpoint(path, model, cfg)
    back, got_cfg = vit_torch.load_checkpoint(path)
    res.check(got_cfg["routing"] == "token-learned" and "blocks.2.mlp.router.weight"
              in back.state_dict(), "MoE checkpoint did not load back as token-learned")
    vit_torch.save_checkpoint(path, model, cfg, with_config=False)
    try:
        vit_torch.load_checkpoint(path, heads=cfg["heads"])
        res.check(False, "an MoE checkpoint without config loaded; it must be refused")
    except NotImplementedError:
        res.check(True, "")


# ---------------------------------------------------------------------------------------------
# Parity against the C tool
# ---------------------------------------------------------------------------------------------

def vit_config_tokens(cfg):
    """T = 1 + N tokens per image (class token + patches)."""
    return 1 + (cfg["img_size"] // cfg["patch"]) ** 2


def moe_metadata(moe):
    """The batch file's optional MoE metadata (parity_dump reads it; docs/MOE.md)."""
    return {"superclass_lambda": meta_number(moe["superclass_lambda"]),
            "aux_weight": meta_number(moe["aux_weight"]),
            "capacity_ratio": meta_number(moe["capacity_ratio"]),
            "route_noise": str(int(moe["route_noise"]))}


def item_major_keep(route, experts, moe):
    """The keep mask a wrong, item-major capacity filling (all choices of item 0, then item
    1, ...) would give; a case where it equals the choice-major one cannot tell them apart."""
    n, k = route.choices.shape
    cap = vit_torch.expert_capacity(moe["capacity_ratio"], k, n, experts)
    keep = torch.ones(n, k, dtype=torch.bool)
    count = [0] * experts
    for i in range(n):
        for r in range(k):
            e = int(route.choices[i, r])
            if cap is not None and count[e] >= cap:
                keep[i, r] = False
            elif cap is not None:
                count[e] += 1
    return keep


def router_linears(model):
    """The router nn.Linear modules in the order they run (per-image: one; token: per block)."""
    if model.cfg["routing"] in vit_torch.PER_IMAGE:
        return [model.router]
    return [blk.mlp.router for blk in model.blocks[model.first_moe:]]


def spread_routers(model, x, logit_std):
    """Re-draws each router's weights so its logits vary across items: the rows are made
    orthogonal to the mean router input (which is common to all images/tokens and would
    otherwise send nearly every item to the same expert), then scaled so the logits have
    standard deviation `logit_std` over items and experts. Wide logits give wide top-k
    margins, so float32 (C) vs float64 (reference) rounding cannot flip a routing decision.
    Routers are processed in order, since a later router's inputs depend on earlier ones."""
    captured = []
    for lin in router_linears(model):
        hook = lin.register_forward_pre_hook(lambda mod, inp: captured.append(inp[0]))
        captured.clear()
        with torch.no_grad():
            model.eval()
            model(x)
            model.train()
            hook.remove()
            inp = captured[0].reshape(-1, captured[0].shape[-1])
            mu = inp.mean(dim=0)
            mu = mu / mu.norm()
            w = lin.weight - (lin.weight @ mu)[:, None] * mu[None, :]
            z = inp @ w.t()
            lin.weight.copy_(w * (logit_std / z.std()))


def block_routes(cfg, routes):
    """{MoE block index: the Routing its experts followed}."""
    first = cfg["depth"] - cfg["moe_layers"]
    if cfg["routing"] == "token-learned":
        return {first + i: r for i, r in enumerate(routes)}
    return {first + i: routes[0] for i in range(cfg["moe_layers"])}


def run_tool(res, name, argv):
    """Runs parity_dump; returns its output tensors, or None after recording the failure."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        res.check(False, f"config {name}: {' '.join(argv)} ran over 120 s")
        return None
    if not res.check(proc.returncode == 0,
                     f"config {name}: {' '.join(argv)} exited {proc.returncode}:\n"
                     f"{proc.stdout}{proc.stderr}"):
        return None
    try:
        got, _ = safetensors_io.load(argv[3])
    except (OSError, ValueError) as e:
        res.check(False, f"config {name}: cannot read the tool's output {argv[3]}: {e}")
        return None
    return got


def run_config(res, spec, tool, tmp, seed, stats):
    """One parity case. Returns "retry" (nothing recorded) when an MoE draw is unusable: a
    routing decision within MARGIN_MIN of a tie, or no dropped token where the case needs
    drops; the caller then draws again with another seed."""
    name = spec["name"]
    moe = spec.get("moe")
    cfg = vit_torch.complete_config(spec["cfg"])
    model = vit_torch.ViT(cfg).double()
    init_random(model, seed)
    rng = np.random.default_rng(seed)
    b, c, s, k = spec["batch"], cfg["in_chans"], cfg["img_size"], cfg["num_classes"]
    images = rng.integers(0, 256, size=(b, c, s, s)).astype(np.float32)
    labels = rng.integers(0, k, size=(b,)).astype(np.float32)
    if moe:
        spread_routers(model, vit_torch.preprocess(images, cfg), moe["router_logit_std"])
    storage_round(model, spec["dtype"])
    ckpt = os.path.join(tmp, f"{name}_model.safetensors")
    vit_torch.save_checkpoint(ckpt, model, cfg, with_config=spec["with_config"],
                              float_dtype=spec["dtype"])
    batch = os.path.join(tmp, f"{name}_batch.safetensors")
    meta = {"label_smoothing": meta_number(spec["label_smoothing"]),
            "clip_norm": meta_number(spec["clip_norm"]), "steps": str(STEPS)}
    meta.update({key: meta_number(v) for key, v in OPTIM.items()})
    if moe:
        meta.update(moe_metadata(moe))
    safetensors_io.save(batch, {"images": images, "labels": labels}, meta)

    # The C side runs first: learned routing draws its router noise there, and the reference
    # reuses exactly that noise.
    heads = cfg["heads"] if not spec["with_config"] else None
    out = os.path.join(tmp, f"{name}_out.safetensors")
    argv = [tool, ckpt, batch, out] + ([str(cfg["heads"])] if heads is not None else [])
    got = run_tool(res, name, argv)
    if got is None:
        return "done"

    # The reference reads the checkpoint back through load_checkpoint, so it starts from
    # exactly the stored (rounded) weights and exercises the loader too.
    ref_model, ref_cfg = vit_torch.load_checkpoint(ckpt, heads=heads)
    x = vit_torch.preprocess(images, ref_cfg)
    y = torch.as_tensor(labels.astype(np.int64))
    noise = None
    n_routers = ref_model.n_routers()
    if moe:
        e = cfg["experts"]
        n_items = b if cfg["routing"] in vit_torch.PER_IMAGE else b * vit_config_tokens(cfg)
        noisy = moe["route_noise"] and cfg["routing"] in ("image-learned", "token-learned")
        rn = got.get("route_noise")
        if not res.check(rn is not None and list(rn.shape) == [n_routers, n_items, e],
                         f"config {name}: route_noise is "
                         f"{None if rn is None else list(rn.shape)}, expected "
                         f"[{n_routers}, {n_items}, {e}]"):
            return "done"
        if noisy:
            # sigma = 1/E (docs/MOE.md); a loose sanity bound, the parity below is the test
            sd, sigma = float(rn.std()), vit_torch.noise_sigma(e)
            res.check(0.5 * sigma < sd < 2 * sigma,
                      f"config {name}: route_noise std {sd:.3g} is far from sigma = 1/E = "
                      f"{sigma:.3g}")
            noise = [torch.from_numpy(rn[i].astype(np.float64)) for i in range(n_routers)]
        else:
            res.check(not np.any(rn != 0), f"config {name}: routing {cfg['routing']} with "
                                           f"route_noise {moe['route_noise']} must use no "
                                           f"noise, but the C side's noise is non-zero")
    ref = reference(ref_model, x, y, spec["label_smoothing"], spec["clip_norm"], moe, noise)

    zero_expected = set()  # expert tensors whose gradient must be exactly zero on both sides
    if moe:
        margin = min(routing_margin(r) for routes in ref["routes"] for r in routes)
        if margin < MARGIN_MIN:
            print(f"config {name} (seed {seed}): a routing decision is within {margin:.2g} "
                  f"of a tie (< {MARGIN_MIN:g}); drawing another model")
            return "retry"
        # drops in the last block touch only patch tokens' outputs, which never reach the
        # loss; the drops and their order must show in an earlier block
        inner = [r for blk, r in block_routes(cfg, ref["routes"][0]).items()
                 if blk < cfg["depth"] - 1]
        dropped = int(sum(int((~r.keep).sum()) for r in inner))
        order_matters = any(not torch.equal(r.keep, item_major_keep(r, cfg["experts"], moe))
                            for r in inner)
        if moe.get("need_drops") and (dropped == 0 or (cfg["top_k"] > 1 and not
                                                        order_matters)):
            print(f"config {name} (seed {seed}): capacity dropped no token (or the same "
                  f"ones item-major filling would); drawing another")
            return "retry"
        t = vit_config_tokens(cfg)
        for blk, route in block_routes(cfg, ref["routes"][0]).items():
            live = torch.ones(route.keep.shape[0], dtype=torch.bool)
            if blk == cfg["depth"] - 1 and cfg["routing"] == "token-learned":
                # the last block's outputs reach the loss only through the class tokens (the
                # head reads token 0), so only experts holding a class token get a gradient
                live = torch.arange(route.keep.shape[0]) % t == 0
            used = route.choices[route.keep & live[:, None]]
            for ex in range(cfg["experts"]):
                if not bool((used == ex).any()):
                    zero_expected.update(f"blocks.{blk}.mlp.experts.{ex}.{layer}.{part}"
                                         for layer in ("fc1", "fc2")
                                         for part in ("weight", "bias"))

    title = (f"config {name}: img {s} C {c} patch {cfg['patch']} dim {cfg['dim']} depth "
             f"{cfg['depth']} heads {cfg['heads']} mlp {cfg['mlp_dim']} K {k} B {b} "
             f"ls {spec['label_smoothing']} clip {spec['clip_norm']} {spec['dtype']} "
             f"{'config in file' if spec['with_config'] else 'no config, heads on argv'}")
    print(title)
    if moe:
        print(f"  routing {cfg['routing']} E {cfg['experts']} k {cfg['top_k']} L "
              f"{cfg['moe_layers']} superclass_of {cfg.get('superclass_of')} lambda "
              f"{moe['superclass_lambda']} aux {moe['aux_weight']} capacity "
              f"{moe['capacity_ratio']} noise {moe['route_noise']} (seed {seed})")
        for i, r in enumerate(ref["routes"][0]):
            print(f"  router {i}: items per expert {r.routed_count().tolist()}, dropped "
                  f"{int((~r.keep).sum())} of {r.keep.numel()} choices")
        print(f"  smallest top-k margin over both steps {margin:.3g}; experts with no item "
              f"that reaches the loss: {len(zero_expected) // 4}")
        stats["unused_experts"] += len(zero_expected) // 4
        if cfg["routing"] == "token-learned" and moe["capacity_ratio"] > 0:
            cap32 = vit_torch.expert_capacity(float(np.float32(moe["capacity_ratio"])),
                                              cfg["top_k"], n_items, cfg["experts"])
            cap64 = vit_torch.expert_capacity(moe["capacity_ratio"], cfg["top_k"], n_items,
                                              cfg["experts"])
            res.check(cap32 == cap64, f"config {name}: capacity {cap64} changes to {cap32} "
                                      f"when the ratio is rounded to float32; pick a ratio "
                                      f"whose ratio*k*n/E is not this close to an integer")
        if moe.get("need_drops"):
            res.check(dropped > 0, f"config {name}: no token was dropped before the last "
                                   f"block")
            if cfg["top_k"] > 1:
                res.check(order_matters, f"config {name}: item-major capacity filling would "
                                         f"drop the same choices; the order is not tested")
        parts = ref["loss_parts"]
        if cfg["routing"] == "image-superclass":
            res.check(parts[1] > 0 and parts[2] == 0, f"config {name}: reference loss parts "
                                                      f"{parts.tolist()}: want router > 0, "
                                                      f"aux = 0")
        else:
            res.check(parts[1] == 0 and parts[2] > 0, f"config {name}: reference loss parts "
                                                      f"{parts.tolist()}: want router = 0, "
                                                      f"aux > 0")
    if spec["clip_norm"] > 0:
        # Clipping must actually happen, or this config would not test it.
        res.check(all(n > spec["clip_norm"] for n in ref["norms"]),
                  f"config {name}: unclipped grad norms {ref['norms']} do not all exceed "
                  f"clip_norm {spec['clip_norm']}; clipping would not be exercised")
    print(f"  reference loss {ref['loss'].item():.6f} (CE, router, aux "
          + ", ".join(f"{v:.6g}" for v in ref["loss_parts"].tolist()) + "), grad norms "
          + ", ".join(f"{n:.4g}" for n in ref["norms"]))

    worst = stats.setdefault("worst", {}).setdefault(cfg["routing"], {})

    def note(kind, err):
        worst[kind] = max(worst.get(kind, 0.0), err)

    def compare(key, want, tol, label, mask=None, base=None, kind=None):
        """Cell text for the table; records pass/fail. With `mask`, the difference is taken
        over the masked elements only; with `base` too, the update (value - base) is
        compared, relative to the masked reference update."""
        if key not in got:
            res.check(False, f"config {name}: output lacks tensor '{key}'")
            return "missing!"
        cval = got[key].astype(np.float64)
        want = want.numpy() if torch.is_tensor(want) else want
        if cval.shape != want.shape:
            res.check(False, f"config {name}: '{key}' has shape {list(cval.shape)}, "
                             f"expected {list(want.shape)}")
            return "shape!"
        if base is not None:
            cval, want = cval - base, want - base
        if mask is None:
            err = rel_err(cval, want)
        else:
            scale = np.max(np.abs(want[mask] if base is not None else want))
            err = float(np.max(np.abs(cval - want)[mask])) / scale
        ok = err <= tol
        res.check(ok, f"config {name}: {label} '{key}' relative error {err:.3g} > {tol:g}")
        note(kind or label, err)
        return f"{err:8.1e}{' ' if ok else '!'}"

    print(f"  {'tensor':34s} {'value':>9s}")
    print(f"  {'logits':34s} {compare('logits', ref['logits'], TOL_VALUE, 'value')}")
    print(f"  {'loss':34s} {compare('loss', ref['loss'], TOL_VALUE, 'value')}")
    # each part on its own scale: a small router/aux part would hide inside the total
    got_parts = got.get("loss_parts")
    cells = []
    for i, part in enumerate(("CE", "router", "aux")):
        key = f"loss_parts[{i}]"
        if got_parts is None or got_parts.shape != (3,):
            res.check(False, f"config {name}: output lacks loss_parts [3]")
            break
        got[key] = got_parts[i:i + 1]
        cells.append(f"{part} {compare(key, ref['loss_parts'][i:i + 1], TOL_VALUE, 'value')}")
    print(f"  {'loss parts':34s} " + " ".join(cells))
    print(f"  {'parameter':34s} {'grad':>9s} " + " ".join(
        f"{'step%d' % (i + 1):>9s} {'upd%d' % (i + 1):>9s}" for i in range(STEPS)))
    excluded = []
    for pname, p0 in ref["init"].items():
        g0 = ref["grads"][0][pname].numpy()
        cells = []
        if pname in zero_expected:
            # an expert no item reached: its gradient is exactly zero, here and in C (which
            # must not even read it; docs/MOE.md "Sparse execution")
            cg = got.get(f"grad.{pname}")
            ok_ref = res.check(not np.any(g0 != 0), f"config {name}: reference gradient of "
                                                    f"unrouted '{pname}' is not zero")
            ok_c = res.check(cg is not None and not np.any(cg != 0),
                             f"config {name}: C gradient of '{pname}' is not exactly zero, "
                             f"but no item was routed to that expert")
            cells.append("  exact0 " if ok_ref and ok_c else "nonzero!")
        elif not res.check(np.any(g0 != 0), f"config {name}: reference gradient of '{pname}' "
                                            f"is all zero; the check would be vacuous"):
            cells.append("zero!")
        else:
            cells.append(compare(f"grad.{pname}", g0, TOL_VALUE, "gradient"))
            if pname.endswith("router.weight"):
                cg = got.get(f"grad.{pname}")
                res.check(cg is not None and np.any(cg != 0),
                          f"config {name}: C gradient of '{pname}' is all zero")
        base = p0.numpy()
        mask = np.ones(base.shape, dtype=bool)
        all_zero = True  # reference gradient exactly zero in every step so far: pure decay
        for i in range(STEPS):
            gi = np.abs(ref["grads"][i][pname].numpy())
            if np.any(gi != 0):  # (an all-zero step leaves Adam's moments alone)
                all_zero = False
                mask &= gi > GRAD_FLOOR * gi.max()
            key = f"step{i + 1}.{pname}"
            want = ref["steps"][i][pname].numpy()
            if all_zero:
                # Adam's moments stay 0, so only the decoupled weight decay moves it
                cells.append(compare(key, want, TOL_VALUE, f"weights after step {i + 1}"))
                cells.append(compare(key, want, TOL_UPDATE, f"update of step {i + 1}",
                                     base=base))
                continue
            if not mask.any():
                cells += ["   n/a   "] * 2
                continue
            cells.append(compare(key, want, TOL_VALUE, f"weights after step {i + 1}", mask))
            cells.append(compare(key, want, TOL_UPDATE, f"update of step {i + 1}", mask, base))
            if key in got and got[key].shape == want.shape and not mask.all():
                # Noise-driven elements: both sides' Adam moves are bounded by ~lr per step.
                diff = float(np.max(np.abs(got[key].astype(np.float64) - want)[~mask]))
                bound = 2 * (i + 1) * ADAM_STEP_BOUND * OPTIM["lr"]
                res.check(diff <= bound, f"config {name}: '{key}' elements with |grad| <= "
                                         f"{GRAD_FLOOR:g} max|grad| moved {diff:.3g} away from "
                                         f"the reference, more than Adam's bound {bound:.3g}")
        if not mask.all() and not all_zero:
            excluded.append(f"{pname} {int((~mask).sum())}/{mask.size}")
        print(f"  {pname:34s} " + " ".join(cells))
    if excluded:
        print("  near-zero-gradient elements left to the Adam bound check: "
              + ", ".join(excluded))
    return "done"


def find_tool(build):
    for root in (os.getcwd(), REPO):
        path = os.path.join(root, build, TOOL)
        if os.path.isfile(path):
            return path
    return os.path.join(build, TOOL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build", help="build directory (default: build)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary files")
    ap.add_argument("--only", default="", help="comma-separated config names to run "
                    "(default: all; e.g. TL1,S2)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    torch.set_num_threads(1)
    res = Results()
    tmp = tempfile.mkdtemp(prefix="mvmoe_parity_")
    try:
        check_safetensors_roundtrip(res, tmp)
        check_attention_layout(res)
        check_autograd(res)
        check_configless_inference(res, tmp)
        check_moe_reference(res, tmp)
        print(f"python-side self checks: {res.passed} passed, {res.failed} failed")
        tool = find_tool(args.build)
        stats = {"unused_experts": 0}
        if res.check(os.path.isfile(tool) and os.access(tool, os.X_OK),
                     f"C tool {tool} not found or not executable; run `make` (or `make "
                     f"{args.build}/{TOOL}`) first"):
            for i, spec in enumerate(CONFIGS):
                if not only or spec["name"] in only:
                    run_config(res, spec, tool, tmp, 100 + i, stats)
            for i, spec in enumerate(MOE_CONFIGS):
                if only and spec["name"] not in only:
                    continue
                for attempt in range(MOE_ATTEMPTS):
                    if run_config(res, spec, tool, tmp, 200 + i + 1000 * attempt,
                                  stats) != "retry":
                        break
                else:
                    res.check(False, f"config {spec['name']}: {MOE_ATTEMPTS} draws all had a "
                                     f"routing decision within {MARGIN_MIN:g} of a tie (or "
                                     f"no drop where one is needed)")
            if not only or only & {"S1"}:
                # S1 is built so that some expert gets no image: the exact-zero path ran
                res.check(stats["unused_experts"] > 0, "no MoE case had an expert without "
                                                       "items; the zero-gradient check never ran")
            print("worst relative errors per routing mode:")
            for routing, kinds in stats.get("worst", {}).items():
                print(f"  {routing:17s} " + ", ".join(f"{kind} {err:.2e}"
                                                      for kind, err in kinds.items()))
    finally:
        if args.keep:
            print(f"kept files in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if res.failures:
        print(f"{len(res.failures)} failing check(s); first: {res.failures[0].splitlines()[0]}")
    print(f"{res.passed} passed, {res.failed} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
