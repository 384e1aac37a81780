"""mvmoe for Python: run mvmoe checkpoints (ViTs and Mobile V-MoEs) from numpy, without PyTorch.

A thin ctypes layer over the C library libmvmoe.so (include/mvmoe.h): only the standard
library and numpy are needed. Where the library is found: mvmoe/_lib.py.

    import numpy as np, mvmoe
    m = mvmoe.Model("model.safetensors")
    m.info["config"]["routing"], m.info["classes"], m.info["flops"], m.info["params"]
    logits = m.predict(images)                  # uint8 [N, C, H, W] (or [N, H, W] if C = 1)
    logits, routes = m.predict(images, routes=True)  # MoE with per-image routing: [N, top_k]

Inputs: uint8 pixels as stored (0..255), or float32/float64 in [0, 1], which become uint8 as
round-half-to-even(x * 255) computed in float64 (the library runs on uint8 pixels, as the
checkpoints were trained; a float that is not a multiple of 1/255 loses that part). The
model then normalizes (x / 255 - mean) / std with the checkpoint's mean and std.

Failures of the library raise mvmoe.Error with its message; wrong shapes and dtypes raise
ValueError / TypeError before anything reaches C.
"""
import ctypes
import json
import os

import numpy as np

from . import _lib

__all__ = ["Model", "Error", "version", "set_threads", "library_path"]

# mvmoe_status codes (include/mvmoe.h)
OK, ERR_IO, ERR_FORMAT, ERR_NOMEM, ERR_INVALID, ERR_UNSUPPORTED, ERR_NUMERIC, ERR_INTERRUPTED = range(8)

__version__ = _lib.version().decode()
library_path = _lib.path


class Error(Exception):
    """A failure reported by the library: .code (an mvmoe_status, e.g. mvmoe.ERR_FORMAT),
    .status (its name, as mvmoe_status_name gives it) and .message (mvmoe_last_error: what
    failed, where, and what to do)."""

    def __init__(self, code, message):
        self.code = code
        self.status = _lib.status_name(code).decode()
        self.message = message
        super().__init__(f"{message} ({self.status})" if message else self.status)


def _check(code):
    if code != OK:
        raise Error(code, _lib.last_error().decode("utf-8", "replace"))


def version():
    """The version of the loaded C library, e.g. '0.1.0'."""
    return _lib.version().decode()


def set_threads(n):
    """Threads the library's kernels use (OpenMP); 0: all cores."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"threads must be an int >= 0, got {n!r}")
    _lib.set_threads(int(n))


def _path_bytes(path, what):
    if isinstance(path, bytes):
        return path
    try:
        return os.fsencode(path)
    except TypeError:
        raise TypeError(f"{what} must be a path (str, bytes or os.PathLike), got {type(path).__name__}") from None


class Model:
    """A checkpoint loaded by mvmoe_model_load: ours, or a plain timm ViT (then give heads,
    and mean/std if not 0.5). img_size > 0 runs it at another size (position embeddings
    resampled); adaptive_k > 0 (top-k >= 2 MoE) uses the 2nd..k-th experts only for images
    whose top router probability is below it."""

    def __init__(self, path, img_size=0, heads=0, mean=None, std=None, adaptive_k=0.0):
        self._m = None
        p = _path_bytes(path, "path")
        opts = None
        if img_size or heads or mean is not None or std is not None or adaptive_k:
            opts = _lib.LoadOptions()
            opts.img_size, opts.heads, opts.adaptive_k = int(img_size), int(heads), float(adaptive_k)
            if (mean is None) != (std is None):
                raise ValueError("give both mean and std, or neither")
            if mean is not None:
                mean, std = [float(v) for v in mean], [float(v) for v in std]
                if len(mean) != len(std) or not 1 <= len(mean) <= 4:
                    raise ValueError(f"mean and std need the same length, 1..4 (got {len(mean)}, {len(std)})")
                opts.in_chans_mean_std = len(mean)
                for i, (a, b) in enumerate(zip(mean, std)):
                    opts.mean[i], opts.std[i] = a, b
        handle = ctypes.c_void_p()
        _check(_lib.model_load(ctypes.byref(handle), p, ctypes.byref(opts) if opts else None))
        self._m = handle
        cfg = _lib.model_config(self._m)
        js = ctypes.c_void_p()
        _check(_lib.config_to_json(cfg, ctypes.byref(js)))
        try:
            config = json.loads(ctypes.string_at(js).decode("utf-8"))
        finally:
            _lib.free(js)
        self._info = {
            "config": config,
            "classes": config.get("class_names"),
            "routing": config["routing"],
            "flops": _lib.config_flops(cfg),
            "params": _lib.config_num_params(cfg),
            "active_params": _lib.config_active_params(cfg),
            "tokens": _lib.config_tokens(cfg),
        }
        self._shape = (config["in_chans"], config["img_size"], config["img_size"])
        self._K, self._k = config["num_classes"], max(config.get("top_k", 1), 1)

    @property
    def info(self):
        """config (the checkpoint's config object), classes (names or None), routing, flops
        (per image), params, active_params (per image), tokens (per image)."""
        return self._info

    def close(self):
        """Frees the model now (otherwise when the object is collected)."""
        if self._m is not None:
            _lib.model_free(self._m)
            self._m = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        c = self._info["config"] if self._m is not None else None
        if c is None:
            return "<mvmoe.Model (closed)>"
        return (f"<mvmoe.Model {c['depth']}x{c['dim']} {self._info['routing']} "
                f"{c['in_chans']}x{c['img_size']}x{c['img_size']} -> {c['num_classes']} classes>")

    def _alive(self):
        if self._m is None:
            raise ValueError("the model is closed")

    def _images(self, images):
        """images as a C-contiguous uint8 [N, C, S, S] array, or TypeError/ValueError."""
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
        C, S, _ = self._shape
        want = f"[N, {C}, {S}, {S}]" + (f" or [N, {S}, {S}]" if C == 1 else "")
        if images.ndim == 3 and C == 1:
            images = images[:, None, :, :]
        if images.ndim != 4 or images.shape[1:] != self._shape:
            raise ValueError(f"images must have shape {want}, got {list(images.shape)}")
        if images.shape[0] > 2**31 - 1:
            raise ValueError(f"at most {2**31 - 1} images per call, got {images.shape[0]}")
        if images.dtype == np.uint8:
            return np.ascontiguousarray(images)
        if images.dtype in (np.float32, np.float64):
            x = images.astype(np.float64)
            if not np.all(np.isfinite(x)) or (x.size and (x.min() < 0.0 or x.max() > 1.0)):
                raise ValueError("float images must be finite and in [0, 1]")
            return np.ascontiguousarray(np.rint(x * 255.0).astype(np.uint8))
        raise TypeError(f"images must be uint8 (0..255) or float32/float64 (0..1), got {images.dtype}")

    def predict(self, images, routes=False):
        """Logits float32 [N, classes] of images (see the module's doc for the formats).
        routes=True also returns each image's experts, int64 [N, top_k], most probable first
        (-1 where adaptive k dropped a choice): per-image routing only; a dense model or
        token-learned routing raises mvmoe.Error."""
        self._alive()
        x = self._images(images)
        n = x.shape[0]
        logits = np.empty((n, self._K), dtype=np.float32)
        r = np.empty((n, self._k), dtype=np.int32) if routes else None
        _check(_lib.model_predict(self._m, x.ctypes.data, n, logits.ctypes.data,
                                  r.ctypes.data if routes else None))
        return (logits, r.astype(np.int64)) if routes else logits

    def save(self, path):
        """Writes the weights and config as a safetensors checkpoint (atomically)."""
        self._alive()
        _check(_lib.model_save(self._m, _path_bytes(path, "path")))
