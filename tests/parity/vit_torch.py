"""PyTorch reference of the mvmoe checkpoint contract (docs/CHECKPOINT_FORMAT.md; the binding contract is ../shared/CHECKPOINT_FORMAT.md beside a checkout).

Written from the contract text alone, so it can serve as an independent reference for the C
implementation: parameter names/shapes follow timm's VisionTransformer (the contract's table),
the forward pass follows the contract's "Forward pass" section. All four routings are
implemented; the Mixture-of-Experts parts (routers, top-k, capacity, the super-class and
importance/load losses) are written from docs/MOE.md, not from the C code. The MoE is computed
densely (every expert on every row, weighted by a combine matrix that is zero outside the
chosen, kept experts): a reference, not a fast path.

Usable both from the parity test and from later bench scripts:
    model, cfg = load_checkpoint("model.safetensors")           # config from __metadata__
    model, cfg = load_checkpoint("timm_vit.safetensors", heads=3)  # plain timm file
    logits = model(preprocess(images_uint8, cfg))                # inference (no noise/capacity)
Training-mode MoE (docs/MOE.md): `model.train()`, then
    logits = model(x, noise=eps_per_router, capacity_ratio=1.05)
    router_loss, aux_loss = routing_losses(model, labels, superclass_lambda=0.3, aux_weight=0.01)
where `eps_per_router` is a list with one [n_items, E] tensor per router (per-image routing: one
router over the B images; token-learned: one per MoE block over its B*T tokens, b-major) and
`model.routes` holds what each router decided in the last forward.
"""
import json
import math
import os
import sys
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402  (sibling module; tests are run as plain scripts)

LN_EPS = 1e-6  # contract: "LayerNorm eps 1e-6" (timm's ViT default as well)
ROUTINGS = ("dense", "image-superclass", "image-learned", "token-learned")
PER_IMAGE = ("image-superclass", "image-learned")  # one router for the whole model


class PatchEmbed(nn.Module):
    """Non-overlapping P x P patches -> D channels; a module so the key is patch_embed.proj.*"""

    def __init__(self, in_chans, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):  # [B, C, H, W] -> [B, N, D], patches in row-major order
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """softmax(q k^T / sqrt(D/heads)) v per head; qkv rows are q, then k, then v (contract)."""

    def __init__(self, dim, heads):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}; pick heads that "
                             f"divide dim")
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        # [B, T, 3D] -> [3, B, heads, T, hd]: the 3D rows split as (q|k|v), each as
        # (head 0 | head 1 | ...), exactly the contract's row layout.
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        out = scores.softmax(dim=-1) @ v                      # [B, heads, T, hd]
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    """Dense MLP fc1 -> exact (erf) GELU -> fc2."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # F.gelu default is the exact erf form


# ---------------------------------------------------------------------------------------------
# Mixture of Experts (docs/MOE.md)
# ---------------------------------------------------------------------------------------------

def noise_sigma(experts):
    """Std of V-MoE's router noise and of the load loss's "fresh noise": sigma = 1/E."""
    return 1.0 / experts


def expert_capacity(capacity_ratio, top_k, n_items, experts):
    """C = ceil(capacity_ratio * k * n / E) items per expert; None (no cap) for ratio <= 0."""
    if capacity_ratio is None or capacity_ratio <= 0:
        return None
    return int(math.ceil(capacity_ratio * top_k * n_items / experts))


def top_k_experts(scores, k):
    """[n, E] -> [n, k] expert indices, largest score first; ties go to the lower expert index
    (a stable descending sort keeps equal scores in index order)."""
    order = torch.sort(scores.detach(), dim=-1, descending=True, stable=True).indices
    return order[:, :k]


def capacity_keep(choices, experts, capacity):
    """[n, k] choices -> [n, k] bool: which choices fit in their expert. Filled choice-major
    (all first choices in item order, then all second choices, ...); a choice arriving when its
    expert already holds `capacity` items is dropped. capacity None: everything is kept."""
    n, k = choices.shape
    keep = torch.ones(n, k, dtype=torch.bool)
    if capacity is None:
        return keep
    count = [0] * experts
    for r in range(k):
        for i in range(n):
            e = int(choices[i, r])
            if count[e] < capacity:
                count[e] += 1
            else:
                keep[i, r] = False
    return keep


class Routing:
    """What one router decided for its n items: clean logits z [n, E], the noise eps [n, E]
    (None = none), p = softmax(z + eps), top-k choices [n, k] (most probable first), keep
    [n, k] (capacity), and the combine matrix [n, E] = p on kept chosen experts, else 0."""

    def __init__(self, z, noise, top_k, capacity=None):
        experts = z.shape[-1]
        self.z, self.noise, self.top_k = z, noise, top_k
        self.p = torch.softmax(z if noise is None else z + noise, dim=-1)
        self.choices = top_k_experts(self.p, top_k)       # S = top-k of p (docs/MOE.md)
        self.keep = capacity_keep(self.choices, experts, capacity)
        mask = torch.zeros_like(self.p)
        mask.scatter_(1, self.choices, self.keep.to(self.p.dtype))
        self.combine = self.p * mask                       # gates = p, not renormalized

    def routed_count(self):
        """[E] number of kept (item, expert) assignments per expert."""
        experts = self.p.shape[-1]
        return torch.bincount(self.choices[self.keep], minlength=experts)


def cv_squared(v):
    """CV(v)^2 = var(v) / mean(v)^2, population variance over the entries."""
    return v.var(unbiased=False) / v.mean() ** 2


def importance_loss(p):
    """V-MoE importance loss: imp_e = sum_i p_i[e]; CV(imp)^2."""
    return cv_squared(p.sum(dim=0))


def load_loss(z, noise, top_k, sigma):
    """V-MoE load loss: eta_i = k-th largest entry of z_i + eps_i; q_i[e] = 1 - Phi((eta_i -
    z_i[e]) / sigma); load_e = sum_i q_i[e]; CV(load)^2. eta is gathered from the noisy logits,
    so its gradient reaches the logit of the expert that sets the threshold."""
    noisy = z if noise is None else z + noise
    kth = top_k_experts(noisy, top_k)[:, top_k - 1:top_k]
    eta = noisy.gather(1, kth)
    q = torch.special.ndtr((z - eta) / sigma)  # = 1 - Phi((eta - z)/sigma), without the
    #                                              cancellation of 1 - (a number near 1)
    return cv_squared(q.sum(dim=0))


def superclass_loss(z, superclass_targets):
    """mean_b CE(z_b, s(y_b)) on the clean router logits, no smoothing (paper Sec. 3.2)."""
    return F.cross_entropy(z, superclass_targets)


class MoeMlp(nn.Module):
    """An MoE block's MLP: sum over the chosen experts e of p[e] * expert_e(u). Per-token
    routing owns its router (`blocks.i.mlp.router`, no bias); per-image routing gets the
    combine weights from the model-level router."""

    def __init__(self, dim, hidden, experts, top_k, token_router):
        super().__init__()
        self.experts = nn.ModuleList(Mlp(dim, hidden) for _ in range(experts))
        self.router = nn.Linear(dim, experts, bias=False) if token_router else None
        self.top_k = top_k
        self.last_route = None

    def forward(self, u, combine=None, noise=None, capacity_ratio=0.0):
        b, t, d = u.shape
        if self.router is not None:
            n, experts = b * t, len(self.experts)
            cap = (expert_capacity(capacity_ratio, self.top_k, n, experts)
                   if self.training else None)   # inference never drops
            self.last_route = Routing(self.router(u.reshape(n, d)), noise, self.top_k, cap)
            combine = self.last_route.combine.reshape(b, t, experts)
        elif combine is None:
            raise ValueError("per-image MoE block called without the router's combine weights")
        out = torch.zeros_like(u)
        for e, expert in enumerate(self.experts):
            out = out + combine[..., e:e + 1] * expert(u)  # zero weight: exactly zero gradient
        return out


class Block(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x)). `mlp` is any module."""

    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = mlp

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def forward_moe(self, x, combine=None, noise=None, capacity_ratio=0.0):
        """The same block with an MoeMlp, which takes the routing inputs."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x), combine, noise, capacity_ratio)


class ViT(nn.Module):
    # a TorchScript constant, so scripting a dense model never compiles the (plain Python)
    # MoE path: dense models stay scriptable, as bench/torch_bench.py wants
    moe: torch.jit.Final[bool]

    def __init__(self, cfg):
        super().__init__()
        cfg = complete_config(cfg)
        check_moe_config(cfg)
        self.cfg = cfg
        self.moe = cfg["routing"] != "dense"
        self.first_moe = cfg["depth"] - (cfg["moe_layers"] if cfg["routing"] != "dense" else 0)
        self.routes = []  # Routing per router, from the last forward
        d, p, img = cfg["dim"], cfg["patch"], cfg["img_size"]
        if img % p != 0:
            raise ValueError(f"img_size {img} is not a multiple of patch {p}")
        n = (img // p) ** 2
        self.patch_embed = PatchEmbed(cfg["in_chans"], p, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n, d))
        self.blocks = nn.ModuleList(
            Block(d, cfg["heads"], self._make_mlp(cfg, i)) for i in range(cfg["depth"]))
        self.norm = nn.LayerNorm(d, eps=LN_EPS)
        self.head = nn.Linear(d, cfg["num_classes"])
        if cfg["routing"] in PER_IMAGE:
            self.router = nn.Linear(d, cfg["experts"], bias=False)  # top-level `router.weight`

    @staticmethod
    def _make_mlp(cfg, block_index):
        """The MLP of block `block_index`: dense, or (the last `moe_layers` blocks of an MoE
        model) `MoeMlp` with experts under `blocks.i.mlp.experts.e`."""
        moe_from = cfg["depth"] - (cfg["moe_layers"] if cfg["routing"] != "dense" else 0)
        if block_index < moe_from:
            return Mlp(cfg["dim"], cfg["mlp_dim"])
        return MoeMlp(cfg["dim"], cfg["mlp_dim"], cfg["experts"], cfg["top_k"],
                      token_router=cfg["routing"] == "token-learned")

    def n_routers(self):
        cfg = self.cfg
        return 0 if cfg["routing"] == "dense" else (
            cfg["moe_layers"] if cfg["routing"] == "token-learned" else 1)

    def forward_features(self, x, noise: Optional[List[torch.Tensor]] = None,
                         capacity_ratio: float = 0.0):
        """x: preprocessed images [B, C, H, W] -> final-normed tokens [B, 1+N, D].
        noise: None, or one [n_items, E] tensor per router (training-mode learned routing
        only); capacity_ratio applies to token-learned routing in training mode only."""
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # class first
        x = x + self.pos_embed
        if self.moe:
            x = self._moe_blocks(x, noise, capacity_ratio)
        else:
            for blk in self.blocks:
                x = blk(x)
        return self.norm(x)

    def _moe_blocks(self, x, noise, capacity_ratio):
        """The blocks of an MoE model; fills self.routes (one Routing per router)."""
        cfg = self.cfg
        if noise is not None:
            if cfg["routing"] not in ("image-learned", "token-learned"):
                raise ValueError(f"router noise given for routing '{cfg['routing']}'; only "
                                 f"image-learned and token-learned routing are noisy")
            if not self.training:
                raise ValueError("router noise given in eval mode; inference uses none")
            if len(noise) != self.n_routers():
                raise ValueError(f"noise has {len(noise)} entries, the model has "
                                 f"{self.n_routers()} routers")
        self.routes = []
        combine = None
        for i, blk in enumerate(self.blocks):
            if i < self.first_moe:
                x = blk(x)
            elif cfg["routing"] == "token-learned":
                eps = noise[i - self.first_moe] if noise is not None else None
                x = blk.forward_moe(x, noise=eps, capacity_ratio=capacity_ratio)
                self.routes.append(blk.mlp.last_route)
            else:
                if i == self.first_moe:
                    # one router on the class-token row of the residual stream after the last
                    # dense block (unnormalized); its decision holds for every MoE block
                    route = Routing(self.router(x[:, 0]), noise[0] if noise is not None
                                    else None, cfg["top_k"])
                    self.routes.append(route)
                    combine = route.combine[:, None, :]  # all T tokens of image b alike
                x = blk.forward_moe(x, combine=combine)
        return x

    def forward(self, x, noise: Optional[List[torch.Tensor]] = None,
                capacity_ratio: float = 0.0):
        return self.head(self.forward_features(x, noise, capacity_ratio)[:, 0])


def preprocess(images, cfg, dtype=torch.float64):
    """Pixel values 0..255, [B, C, H, W] (numpy or tensor) -> (v/255 - mean[c]) / std[c]."""
    x = torch.as_tensor(np.asarray(images), dtype=dtype)
    c = x.shape[1]
    mean = torch.as_tensor(cfg["mean"], dtype=dtype).reshape(1, -1, 1, 1)
    std = torch.as_tensor(cfg["std"], dtype=dtype).reshape(1, -1, 1, 1)
    if mean.shape[1] != c or std.shape[1] != c:
        raise ValueError(f"images have {c} channels but config mean/std have "
                         f"{mean.shape[1]}/{std.shape[1]} entries")
    return (x / 255.0 - mean) / std


def complete_config(cfg):
    """Fill the contract's optional fields (routing/experts/...); check the required ones."""
    required = ("img_size", "in_chans", "patch", "dim", "depth", "heads", "mlp_dim",
                "num_classes")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise ValueError(f"config lacks {missing}; the contract requires all of {required}")
    out = dict(cfg)
    out.setdefault("routing", "dense")
    out.setdefault("experts", 0)
    out.setdefault("top_k", 1)
    out.setdefault("moe_layers", 0)
    out.setdefault("mean", [0.5] * cfg["in_chans"])
    out.setdefault("std", [0.5] * cfg["in_chans"])
    out.setdefault("class_names", [str(i) for i in range(cfg["num_classes"])])
    if out["routing"] not in ROUTINGS:
        raise ValueError(f"routing '{out['routing']}' is not one of {ROUTINGS}")
    return out


def check_moe_config(cfg):
    """The MoE fields must be consistent (docs/MOE.md; the C side validates the same way)."""
    r, e, k, layers, depth = (cfg["routing"], cfg["experts"], cfg["top_k"], cfg["moe_layers"],
                              cfg["depth"])
    if r == "dense":
        if e != 0 or layers != 0:
            raise ValueError(f"routing dense needs experts = 0 and moe_layers = 0 (got {e}, "
                             f"{layers})")
        return
    if e < 1 or not 1 <= k <= e:
        raise ValueError(f"routing {r}: need experts >= 1 and 1 <= top_k <= experts (got "
                         f"experts {e}, top_k {k})")
    if not 1 <= layers <= depth:
        raise ValueError(f"moe_layers {layers} must be in 1..depth ({depth})")
    if r in PER_IMAGE and layers >= depth:
        raise ValueError(f"per-image routing reads the class token after the last dense block, "
                         f"so moe_layers ({layers}) must be < depth ({depth})")
    sc = cfg.get("superclass_of")
    if sc is not None:
        if len(sc) != cfg["num_classes"] or any(not 0 <= int(s) < e for s in sc):
            raise ValueError(f"superclass_of must hold num_classes ({cfg['num_classes']}) "
                             f"entries in 0..{e - 1}, got {sc}")


def routing_losses(model, labels, superclass_lambda=0.3, aux_weight=0.01):
    """(router_loss, aux_loss) of the last forward (docs/MOE.md "Losses"):
    image-superclass: lambda * mean_b CE(z_b, superclass_of[y_b]) (0 without a map);
    learned routing: aux_weight * sum over routers of (L_imp + L_load)."""
    cfg = model.cfg
    zero = torch.zeros((), dtype=next(model.parameters()).dtype)
    router, aux = zero, zero
    if cfg["routing"] == "image-superclass":
        if cfg.get("superclass_of") is not None:
            sc = torch.as_tensor(cfg["superclass_of"], dtype=torch.long)
            router = superclass_lambda * superclass_loss(model.routes[0].z, sc[labels])
    elif cfg["routing"] in ("image-learned", "token-learned"):
        sigma = noise_sigma(cfg["experts"])
        for r in model.routes:
            aux = aux + importance_loss(r.p) + load_loss(r.z, r.noise, r.top_k, sigma)
        aux = aux_weight * aux
    return router, aux


def config_from_shapes(tensors, heads, mean=None, std=None):
    """Config of a plain timm checkpoint (no __metadata__ config): every size comes from the
    shapes except `heads`, `mean`, `std`, which the caller supplies (contract, "File")."""
    if heads is None:
        raise ValueError("checkpoint has no __metadata__ config; pass heads= (the number of "
                         "attention heads) explicitly")
    w = tensors["patch_embed.proj.weight"]  # [D, C, P, P]
    d, c, p = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
    n = int(tensors["pos_embed"].shape[1]) - 1
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"pos_embed has {n} patch positions, not a square number")
    depth = 0
    while f"blocks.{depth}.norm1.weight" in tensors:
        depth += 1
    if "router.weight" in tensors or any(k.startswith("blocks.") and ".mlp.experts." in k
                                         for k in tensors):
        raise NotImplementedError("MoE checkpoint without __metadata__ config: the routing "
                                  "mode (and super-class map) cannot be inferred from shapes; "
                                  "add the contract's config JSON to the file")
    return complete_config({
        "img_size": side * p, "in_chans": c, "patch": p, "dim": d, "depth": depth,
        "heads": int(heads), "mlp_dim": int(tensors["blocks.0.mlp.fc1.weight"].shape[0]),
        "num_classes": int(tensors["head.weight"].shape[0]),
        "mean": list(mean) if mean is not None else [0.5] * c,
        "std": list(std) if std is not None else [0.5] * c,
    })


def load_checkpoint(path, heads=None, dtype=torch.float64):
    """Load a contract checkpoint -> (model in `dtype`, cfg). Uses __metadata__["config"]
    when present; otherwise infers the config from the shapes with `heads` from the caller
    and mean = std = 0.5 per channel."""
    tensors, meta = safetensors_io.load(path)
    if "config" in meta:
        cfg = complete_config(json.loads(meta["config"]))
        if heads is not None and int(heads) != cfg["heads"]:
            raise ValueError(f"{path}: heads={heads} given but the file's config says "
                             f"{cfg['heads']}")
    else:
        cfg = config_from_shapes(tensors, heads)
    model = ViT(cfg).to(dtype)
    state = {k: torch.as_tensor(v.astype(np.float64)) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)  # strict: names/shapes must match the contract
    return model, cfg


def save_checkpoint(path, model, cfg=None, with_config=True, float_dtype="F32"):
    """Write `model` as a contract checkpoint (F32 by default); cfg goes to __metadata__."""
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(complete_config(cfg or model.cfg))} if with_config else None
    safetensors_io.save(path, tensors, meta, float_dtype=float_dtype)


def decays(name):
    """Weight decay applies to `*.weight` tensors that are not norms (so not to biases,
    LayerNorms, pos_embed, cls_token) -- the project's AdamW grouping."""
    return name.endswith(".weight") and "norm" not in name


def adamw_param_groups(model, weight_decay):
    """Two torch.optim param groups implementing `decays`."""
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if decays(n)], "weight_decay": weight_decay},
            {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0}]
