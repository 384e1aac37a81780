"""PyTorch reference of the mvmoe checkpoint contract (docs: /work/shared/CHECKPOINT_FORMAT.md).

Written from the contract text alone, so it can serve as an independent reference for the C
implementation: parameter names/shapes follow timm's VisionTransformer (the contract's table),
the forward pass follows the contract's "Forward pass" section. Only `routing == "dense"` is
implemented; the MLP of each block is built by `ViT._make_mlp`, so the MoE routing modes can
later replace it (expert lists under `blocks.i.mlp.experts.e`, per-token routers under
`blocks.i.mlp.router`, the per-image router as the top-level `router`) without touching the
attention path.

Usable both from the parity test and from later bench scripts:
    model, cfg = load_checkpoint("model.safetensors")           # config from __metadata__
    model, cfg = load_checkpoint("timm_vit.safetensors", heads=3)  # plain timm file
    logits = model(preprocess(images_uint8, cfg))
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402  (sibling module; tests are run as plain scripts)

LN_EPS = 1e-6  # contract: "LayerNorm eps 1e-6" (timm's ViT default as well)
ROUTINGS = ("dense", "image-superclass", "image-learned", "token-learned")


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


class ViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg = complete_config(cfg)
        if cfg["routing"] != "dense":
            # The MoE modes are part of the contract but not of this reference yet.
            raise NotImplementedError(f"routing '{cfg['routing']}' is not implemented in "
                                      f"vit_torch.py yet; only 'dense' is")
        self.cfg = cfg
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

    @staticmethod
    def _make_mlp(cfg, block_index):
        """The MLP of block `block_index`; the hook where MoE blocks (the last `moe_layers`
        blocks, per the contract) will be built once routing modes are added."""
        return Mlp(cfg["dim"], cfg["mlp_dim"])

    def forward_features(self, x):
        """x: preprocessed images [B, C, H, W] -> final-normed tokens [B, 1+N, D]."""
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # class first
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x):
        return self.head(self.forward_features(x)[:, 0])


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
    if any(k.startswith("blocks.") and ".mlp.experts." in k for k in tensors):
        raise NotImplementedError("MoE checkpoint without config: not supported here")
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
