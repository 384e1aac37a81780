#!/usr/bin/env bash
# Regenerates the seed corpora fuzz/corpus/NAME/ of the libFuzzer harnesses: small valid (and a
# few nearly valid) inputs of each format, in the input layout each harness documents at its
# top. The files are committed (tests/regressions/test_fuzz_replay.c replays them in the
# default suite); rerun this only when a format or a harness's input layout changes.
# Needs python3 and a C compiler with libjpeg (the JPEG seeds). Usage: bash fuzz/make_corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=fuzz/corpus
rm -rf "$OUT"
mkdir -p "$OUT"/{safetensors,idx,cifar,image,config_json,supermap,args}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O1 -o "$tmp/corpus_jpeg" fuzz/corpus_jpeg.c -ljpeg
"$tmp/corpus_jpeg" "$OUT/image"

python3 - "$OUT" <<'PY'
import gzip, json, os, struct, sys, zlib

out = sys.argv[1]
SEP = b"\n--MVFZ-PART--\n"

def put(sub, name, data):
    with open(os.path.join(out, sub, name), "wb") as f:
        f.write(data)

# ---------------------------------------------------------------- safetensors / checkpoints
def st_bytes(tensors, meta=None, dtype="F32"):
    """tensors: list of (name, shape, values); values packed as dtype."""
    header, blobs, off = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, shape, vals in tensors:
        if dtype == "F32":
            b = struct.pack("<%df" % len(vals), *vals)
        elif dtype == "F16":
            b = struct.pack("<%de" % len(vals), *vals)
        elif dtype == "BF16":
            b = b"".join(struct.pack("<f", v)[2:] for v in vals)
        elif dtype == "F64":
            b = struct.pack("<%dd" % len(vals), *vals)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)

def vit_tensors(c):
    """Tensor list of a model with config c, in the contract's names (layout.c order)."""
    D, H, K, P, C = c["dim"], c["mlp_dim"], c["num_classes"], c["patch"], c["in_chans"]
    T = 1 + (c["img_size"] // P) ** 2
    E, L = c.get("experts", 0), c.get("moe_layers", 0)
    routing = c.get("routing", "dense")
    t, k = [], [0]
    def add(name, *shape):
        n = 1
        for s in shape:
            n *= s
        vals = [((k[0] + i) % 7 - 3) * 0.01 for i in range(n)]
        k[0] += 1
        t.append((name, list(shape), vals))
    add("patch_embed.proj.weight", D, C, P, P); add("patch_embed.proj.bias", D)
    add("cls_token", 1, 1, D); add("pos_embed", 1, T, D)
    for i in range(c["depth"]):
        b = "blocks.%d." % i
        add(b + "norm1.weight", D); add(b + "norm1.bias", D)
        add(b + "attn.qkv.weight", 3 * D, D); add(b + "attn.qkv.bias", 3 * D)
        add(b + "attn.proj.weight", D, D); add(b + "attn.proj.bias", D)
        add(b + "norm2.weight", D); add(b + "norm2.bias", D)
        moe = routing != "dense" and i >= c["depth"] - L
        if moe and routing == "token-learned":
            add(b + "mlp.router.weight", E, D)
        if moe:
            for e in range(E):
                x = b + "mlp.experts.%d." % e
                add(x + "fc1.weight", H, D); add(x + "fc1.bias", H)
                add(x + "fc2.weight", D, H); add(x + "fc2.bias", D)
        else:
            add(b + "mlp.fc1.weight", H, D); add(b + "mlp.fc1.bias", H)
            add(b + "mlp.fc2.weight", D, H); add(b + "mlp.fc2.bias", D)
    if routing in ("image-superclass", "image-learned"):
        add("router.weight", E, D)
    add("norm.weight", D); add("norm.bias", D); add("head.weight", K, D); add("head.bias", K)
    return t

base = {"img_size": 4, "in_chans": 1, "patch": 2, "dim": 4, "depth": 2, "heads": 2,
        "mlp_dim": 4, "num_classes": 3, "routing": "dense", "experts": 0, "top_k": 1,
        "moe_layers": 0, "mean": [0.5], "std": [0.25]}
def ckpt(c, dtype="F32", with_config=True, extra_meta=None):
    meta = {"format": "mvmoe-0.1"}
    if with_config:
        meta["config"] = json.dumps(c)
    if extra_meta:
        meta.update(extra_meta)
    return st_bytes(vit_tensors(c), meta, dtype)

put("safetensors", "dense_f32", ckpt(base))
put("safetensors", "dense_f16", ckpt(base, "F16"))
put("safetensors", "dense_bf16", ckpt(base, "BF16"))
put("safetensors", "dense_f64", ckpt(base, "F64"))
put("safetensors", "timm_noconfig", ckpt(base, with_config=False))
named = dict(base, class_names=["a", "b", "c"], superclass_of=[0, 1, 0])
put("safetensors", "dense_names", ckpt(named))
put("safetensors", "moe_image_superclass",
    ckpt(dict(base, routing="image-superclass", experts=2, top_k=1, moe_layers=1,
              superclass_of=[0, 1, 1])))
put("safetensors", "moe_image_learned",
    ckpt(dict(base, routing="image-learned", experts=3, top_k=2, moe_layers=1)))
put("safetensors", "moe_token_learned",
    ckpt(dict(base, routing="token-learned", experts=2, top_k=1, moe_layers=2)))
rgb = dict(base, in_chans=3, img_size=6, patch=3, mean=[0.4, 0.5, 0.6], std=[0.2, 0.3, 0.4])
put("safetensors", "dense_rgb", ckpt(rgb))
put("safetensors", "empty", st_bytes([]))
put("safetensors", "meta_only", st_bytes([], {"a": "b"}))
hdr = {"x": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
       "y": {"dtype": "I64", "shape": [1], "data_offsets": [3, 11]},
       "z": {"dtype": "BOOL", "shape": [0, 2], "data_offsets": [11, 11]},
       "w": {"dtype": "I32", "shape": [], "data_offsets": [11, 15]}}
h = json.dumps(hdr).encode()
put("safetensors", "misc_dtypes", struct.pack("<Q", len(h)) + h + bytes(range(15)))

# ---------------------------------------------------------------- IDX (flag byte + parts)
def idx_images(n, r, c):
    return struct.pack(">IIII", 0x803, n, r, c) + bytes((i * 29) % 256 for i in range(n * r * c))
def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)
imgs, labs = idx_images(3, 4, 5), idx_labels([0, 2, 1])
names = b"zero\nTwo\r\none \n\n"
put("idx", "plain", bytes([0x00]) + imgs + SEP + labs)
put("idx", "plain_names_cap1", bytes([0x10 | 0x40]) + imgs + SEP + labs + SEP + names)
put("idx", "gz_raw", bytes([0x01 | 0x04]) + gzip.compress(imgs, mtime=0) + SEP + gzip.compress(labs, mtime=0))
put("idx", "gz_ours_test", bytes([0x02 | 0x08 | 0x20]) + imgs + SEP + labs)
put("idx", "alt_names_cap3", bytes([0x03 | 0x0C | 0x80]) + imgs + SEP + labs)
put("idx", "labels_11", bytes([0x00]) + idx_images(2, 1, 1) + SEP + idx_labels([10, 3]))

# ---------------------------------------------------------------- CIFAR (flag byte + parts)
def rec10(label, seed):
    return bytes([label]) + bytes((seed * 7 + i) % 256 for i in range(3072))
def rec100(coarse, fine, seed):
    return bytes([coarse, fine]) + bytes((seed * 5 + i) % 256 for i in range(3072))
five = SEP.join(rec10(i % 10, i) for i in range(5))
put("cifar", "c10_train", bytes([0x00]) + five)
put("cifar", "c10_test_sub_names", bytes([0x02 | 0x04 | 0x08]) + rec10(3, 1) + rec10(9, 2) + SEP +
    b"\n".join(b"class%d" % i for i in range(10)) + b"\n\n")
put("cifar", "c100_train_cap2", bytes([0x01 | 0x80]) + rec100(4, 30, 1) + rec100(4, 30, 2) + rec100(19, 99, 3))
put("cifar", "c100_test_sub_coarse", bytes([0x01 | 0x02 | 0x04 | 0x08 | 0x10]) + rec100(0, 0, 4) + SEP +
    b"\n".join(b"fine%d" % i for i in range(100)) + SEP +
    b"\n".join(b"coarse%d" % i for i in range(20)))

# ---------------------------------------------------------------- PNG (file + output byte)
def png(w, h, color_type, depth, rows, plte=None, trns=None, interlace=0):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows)
    s = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, interlace))
    if plte:
        s += chunk(b"PLTE", plte)
    if trns:
        s += chunk(b"tRNS", trns)
    return s + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
put("image", "gray8.png", png(5, 3, 0, 8, [bytes(range(r * 5, r * 5 + 5)) for r in range(3)]) + b"\x02")
put("image", "rgb8.png", png(4, 4, 2, 8, [bytes((r * 40 + i * 9) % 256 for i in range(12)) for r in range(4)]) + b"\x03")
put("image", "rgba8.png", png(3, 5, 6, 8, [bytes((r * 30 + i * 7) % 256 for i in range(12)) for r in range(5)]) + b"\x05")
put("image", "rgb16.png", png(2, 2, 2, 16, [bytes(range(12)), bytes(range(12, 24))]) + b"\x07")
put("image", "palette.png", png(4, 2, 3, 8, [bytes([0, 1, 2, 1]), bytes([2, 2, 0, 1])],
                                  plte=bytes([255, 0, 0, 0, 255, 0, 0, 0, 255]), trns=bytes([128])) + b"\x01")
put("image", "gray1.png", png(8, 8, 0, 1, [bytes([0xA5]) for _ in range(8)]) + b"\x06")

# ---------------------------------------------------------------- config JSON
put("config_json", "dense", json.dumps(base).encode())
put("config_json", "names_super", json.dumps(named).encode())
put("config_json", "moe_token", json.dumps(dict(base, routing="token-learned", experts=4, top_k=2, moe_layers=2)).encode())
put("config_json", "moe_image_rgb", json.dumps(dict(rgb, routing="image-superclass", experts=2, moe_layers=1,
                                                   superclass_of=[1, 0, 1], class_names=["x", "y", "z"])).encode())
put("config_json", "scalar_mean", b'{"img_size":8,"in_chans":3,"patch":4,"dim":6,"depth":1,"heads":3,"mlp_dim":2,"num_classes":2,"mean":0.5,"std":0.5}')
put("config_json", "two_texts", json.dumps(named).encode() + SEP + json.dumps(dict(base, num_classes=5)).encode())

# ---------------------------------------------------------------- super-class maps (K-1 byte + file)
put("supermap", "json_k6", bytes([5]) + json.dumps({"experts": 2, "superclass_of": [0, 1, 0, 1, 1, 0],
                                                      "groups": [["a"], ["b"]]}).encode())
put("supermap", "text_k4", bytes([3]) + b"0 1\n2 0\n")
put("supermap", "text_bom_k3", bytes([2]) + b"\xef\xbb\xbf1 0\t1\n")
put("supermap", "json_k1", bytes([0]) + b'{"superclass_of":[0]}')

# ---------------------------------------------------------------- train argv (NUL-separated)
def argv(*a):
    return b"\0".join(x.encode() for x in a)
put("args", "basic", argv("--data", "d", "--out", "o.safetensors", "--epochs", "3", "--lr=1e-3", "--batch", "128"))
put("args", "resume_memory", argv("--data", "d", "--out", "o", "--resume", "--max-memory", "4G", "--threads", "0"))
put("args", "model_flags", argv("--data=x", "--out=y", "--dim", "64", "--heads", "4", "--randaug", "2,9",
                                "--seed", "18446744073709551615", "--routing", "image-learned", "--experts", "4"))
put("args", "size_first", argv("1.5TiB", "--data", "d", "--out", "o", "--min-lr", "2", "--lr", "1"))
put("args", "floats", argv("--data", "d", "--out", "o", "--drop-path", "0.1", "--mixup", "0.8", "--cutmix", "1.0",
                           "--label-smoothing", "0.1", "--warmup", "0.5", "--clip", "0", "--", "extra"))
PY
for d in "$OUT"/*/; do echo "$(basename "$d"): $(ls "$d" | wc -l) files, $(du -sk "$d" | cut -f1) KiB"; done
