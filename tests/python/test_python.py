#!/usr/bin/env python3
"""The Python binding (python/mvmoe, ctypes + numpy, no PyTorch) over build/libmvmoe.so:

  - predict on tiny models trained here equals `mvmoe eval --logits` (same images, same
    checkpoint), for uint8 and for float inputs in [0, 1];
  - an image-learned top-2 MoE returns routes int64 [N, 2] of distinct experts in range, the
    same image alone or in a batch; token-learned routing and dense models refuse routes with
    mvmoe.Error (the library's status and message);
  - info matches `mvmoe info --json`; the version matches `mvmoe --version`; save/load keeps
    the logits;
  - hostile checkpoints (truncated, garbage, a header lying about its size, offsets past the
    end, a missing file, a folder) raise mvmoe.Error carrying the library's message, and the
    interpreter goes on;
  - wrong input types, shapes and values raise TypeError / ValueError.

Usage: test_python.py [--build BUILD]  (needs `make lib`: BUILD/libmvmoe.so)
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = "/usr/share/datasets/fashion-mnist"
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok:", what)
    else:
        failed += 1
        print("FAIL:", what)


def raises(exc, fn, what, says=None):
    try:
        fn()
    except exc as e:
        ok = says is None or says in str(e)
        check(ok, f"{what}: {type(e).__name__}: {e}")
        return e
    except Exception as e:  # the wrong kind
        check(False, f"{what}: raised {type(e).__name__}: {e}, expected {exc.__name__}")
        return None
    check(False, f"{what}: nothing raised, expected {exc.__name__}")
    return None


def main():
    build = sys.argv[sys.argv.index("--build") + 1] if "--build" in sys.argv else "build"
    build = os.path.join(ROOT, build) if not os.path.isabs(build) else build
    libpath = os.path.join(build, "libmvmoe.so")
    mv = os.path.join(build, "mvmoe")
    if not os.path.exists(libpath) or not os.path.exists(mv):
        print(f"skip: {libpath} or {mv} is not built (run `make lib BUILD=...`)")
        return 77
    try:
        import numpy as np
    except ImportError:
        print("skip: numpy is not installed (scripts/setup.sh installs python3-numpy)")
        return 77
    os.environ["MVMOE_LIB"] = libpath
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import mvmoe
    check(os.path.realpath(mvmoe.library_path) == os.path.realpath(libpath),
          f"MVMOE_LIB chose the library: {mvmoe.library_path}")
    out = subprocess.run([mv, "--version"], capture_output=True, text=True).stdout.split()
    check(out == ["mvmoe", mvmoe.version()] and mvmoe.__version__ == mvmoe.version(),
          f"version {mvmoe.version()} = mvmoe --version {out}")
    mvmoe.set_threads(2)

    T = tempfile.mkdtemp(prefix="mvmoe-py.")
    common = [mv, "train", "--preset", "vit-test-tiny", "--data", DATA, "--max-images", "256",
              "--batch", "32", "--epochs", "1", "--max-steps", "2", "--eval-every", "0", "--seed", "4"]
    models = {"dense": [], "moe": ["--routing", "image-learned", "--experts", "3", "--top-k", "2",
                                   "--moe-layers", "1"],
              "token": ["--routing", "token-learned", "--experts", "2", "--moe-layers", "1"]}
    for name, extra in models.items():
        r = subprocess.run(common + extra + ["--out", f"{T}/{name}.safetensors"],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"train {name} ({r.stderr.strip()[-300:]})")
        if r.returncode != 0:
            return 1

    # the first N test images, as mvmoe reads them (IDX, file order)
    N = 100
    with gzip.open(f"{DATA}/t10k-images-idx3-ubyte.gz") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        imgs = np.frombuffer(f.read(N * h * w), dtype=np.uint8).reshape(N, h, w)

    for name in ("dense", "moe", "token"):
        ck = f"{T}/{name}.safetensors"
        r = subprocess.run([mv, "eval", "--model", ck, "--data", DATA, "--max-images", str(N),
                            "--logits", f"{T}/{name}.f32"], capture_output=True, text=True)
        check(r.returncode == 0, f"{name}: mvmoe eval --logits ({r.stderr.strip()[-300:]})")
        ref = np.fromfile(f"{T}/{name}.f32", dtype="<f4")
        m = mvmoe.Model(ck)
        K = m.info["config"]["num_classes"]
        got = m.predict(imgs)
        check(got.dtype == np.float32 and got.shape == (N, K), f"{name}: logits float32 {got.shape}")
        ref = ref.reshape(N, K) if ref.size == N * K else None
        diff = float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref)))) if ref is not None else 1e9
        check(diff <= 1e-6, f"{name}: predict = mvmoe eval --logits (max rel diff {diff:.3g}, "
                            f"bit-identical: {ref is not None and np.array_equal(got, ref)})")
        check(float(np.std(got)) > 1e-4, f"{name}: logits vary (std {np.std(got):.3g})")
        same4 = np.array_equal(m.predict(imgs[:, None, :, :]), got)
        fl = m.predict(imgs.astype(np.float32) / np.float32(255))
        f64 = m.predict(imgs.astype(np.float64) / 255.0)
        check(same4 and np.array_equal(fl, got) and np.array_equal(f64, got),
              f"{name}: [N,1,H,W] and float32/float64 in [0,1] give the uint8 logits")
        check(m.predict(imgs[:0]).shape == (0, K), f"{name}: an empty batch gives [0, {K}]")
        info = json.loads(subprocess.run([mv, "info", ck, "--json"], capture_output=True, text=True).stdout)
        check(m.info["config"] == info["config"] and m.info["params"] == info["params"]
              and m.info["flops"] == info["flops"] and m.info["active_params"] == info["active_params"]
              and m.info["routing"] == info["config"]["routing"],
              f"{name}: info = mvmoe info --json ({m.info['routing']}, {m.info['params']} params)")
        check(m.info["classes"] is None or len(m.info["classes"]) == K, f"{name}: classes {m.info['classes']}")
        if name == "dense":
            e = raises(mvmoe.Error, lambda: m.predict(imgs, routes=True), "dense: routes refused", "dense")
            check(e is not None and e.code == mvmoe.ERR_INVALID and e.status == "invalid argument",
                  "dense: Error carries the status (invalid argument)")
            m.save(f"{T}/saved.safetensors")
            check(np.array_equal(mvmoe.Model(f"{T}/saved.safetensors").predict(imgs), got),
                  "save then load: same logits")
        if name == "token":
            e = raises(mvmoe.Error, lambda: m.predict(imgs, routes=True), "token-learned: routes refused",
                       "per token")
            check(e is not None and e.code == mvmoe.ERR_UNSUPPORTED, "token-learned: ERR_UNSUPPORTED")
        if name == "moe":
            lg, routes = m.predict(imgs, routes=True)
            check(np.array_equal(lg, got), "moe: logits with routes = without")
            check(routes.dtype == np.int64 and routes.shape == (N, 2), f"moe: routes int64 {routes.shape}")
            check(routes.min() >= 0 and routes.max() < 3 and np.all(routes[:, 0] != routes[:, 1]),
                  f"moe: routes in 0..2, two distinct experts per image (used: {sorted(set(routes.ravel()))})")
            _, one = m.predict(imgs[7:8], routes=True)
            check(np.array_equal(one[0], routes[7]), "moe: an image's routes alone = in the batch")
            # adaptive k: a second expert only where the top router probability is below P
            with mvmoe.Model(ck, adaptive_k=0.01) as ma:  # every top probability is above
                _, ra = ma.predict(imgs, routes=True)
                check(np.array_equal(ra[:, 0], routes[:, 0]) and np.all(ra[:, 1] == -1),
                      "moe: adaptive k 0.01 keeps the first choice, drops every second as -1")
            with mvmoe.Model(ck, adaptive_k=0.999) as ma:  # none is above
                check(np.array_equal(ma.predict(imgs, routes=True)[1], routes),
                      "moe: adaptive k 0.999 keeps both choices")
        m.close()
        raises(ValueError, lambda: m.predict(imgs), f"{name}: a closed model refuses", "closed")

    # wrong inputs: Python errors before C is reached
    m = mvmoe.Model(f"{T}/dense.safetensors")
    raises(TypeError, lambda: m.predict(imgs.tolist()), "a list instead of an array")
    raises(TypeError, lambda: m.predict(imgs.astype(np.int32)), "int32 images")
    raises(ValueError, lambda: m.predict(imgs[:, :20, :]), "wrong image size", "[N, 1, 28, 28]")
    raises(ValueError, lambda: m.predict(imgs[0]), "one image without the batch axis")
    raises(ValueError, lambda: m.predict(np.stack([imgs, imgs], 1)), "two channels for a 1-channel model")
    raises(ValueError, lambda: m.predict(imgs.astype(np.float32)), "floats above 1", "[0, 1]")
    bad = imgs.astype(np.float32) / 255
    bad[3, 4, 5] = np.nan
    raises(ValueError, lambda: m.predict(bad), "a NaN pixel", "finite")
    raises(TypeError, lambda: mvmoe.Model(42), "a path that is no path")
    raises(ValueError, lambda: mvmoe.Model(f"{T}/dense.safetensors", mean=[0.5]), "mean without std")
    m.close()

    # hostile checkpoints: mvmoe.Error with the library's message, the interpreter goes on
    good = open(f"{T}/dense.safetensors", "rb").read()
    hlen = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + hlen])
    name = next(k for k in header if k != "__metadata__")
    lying = dict(header)
    lying[name] = dict(header[name], data_offsets=[header[name]["data_offsets"][0], len(good) * 4])
    lying_json = json.dumps(lying).encode()
    rng = np.random.default_rng(3)
    cases = {
        "truncated": good[:len(good) // 2],
        "truncated header": good[:8 + hlen // 2],
        "garbage": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "empty": b"",
        "header size past the end": struct.pack("<Q", len(good) * 8) + good[8:],
        "header size 2^63": struct.pack("<Q", 1 << 63) + good[8:],
        "offsets past the end": struct.pack("<Q", len(lying_json)) + lying_json + good[8 + hlen:],
        "header not JSON": struct.pack("<Q", hlen) + b"\xff" * hlen + good[8 + hlen:],
    }
    for what, data in cases.items():
        p = f"{T}/hostile.safetensors"
        with open(p, "wb") as f:
            f.write(data)
        e = raises(mvmoe.Error, lambda: mvmoe.Model(p), f"hostile checkpoint ({what})")
        check(e is not None and e.message and e.code in (mvmoe.ERR_FORMAT, mvmoe.ERR_IO, mvmoe.ERR_NOMEM)
              and e.message in str(e), f"hostile checkpoint ({what}): status '{e and e.status}', a message")
    e = raises(mvmoe.Error, lambda: mvmoe.Model(f"{T}/absent.safetensors"), "a missing file", "absent.safetensors")
    check(e is not None and e.code == mvmoe.ERR_IO, "a missing file: ERR_IO")
    raises(mvmoe.Error, lambda: mvmoe.Model(T), "a folder")
    check(np.array_equal(mvmoe.Model(f"{T}/dense.safetensors").predict(imgs[:4]).shape, (4, 10)),
          "the library still works after the failures")

    subprocess.run(["rm", "-rf", T])
    print(f"test_python: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
