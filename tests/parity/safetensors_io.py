"""Minimal safetensors reader/writer (numpy only) for the parity tests and bench scripts.

Format (https://github.com/huggingface/safetensors, "Format" section): an 8-byte
little-endian unsigned header length N, then N bytes of JSON mapping each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the header),
plus an optional "__metadata__" object of string -> string; then the raw little-endian bytes.
Written here without the `safetensors` package because Debian's python3 does not ship it.
"""
import json
import struct

import numpy as np

# safetensors dtype name -> numpy dtype ("<" = little-endian, as the format requires).
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {v: k for k, v in _DTYPES.items()}

# A header larger than this is certainly a corrupt length field, not a real file.
_MAX_HEADER = 100 * 1024 * 1024


def _bf16_to_f32(raw: bytes, shape) -> np.ndarray:
    # BF16 is the top 16 bits of an IEEE float32; widening is a left shift by 16.
    u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
    return (u16 << 16).view(np.float32).reshape(shape)


def load(path):
    """Read a safetensors file. Returns (dict name -> np.ndarray, metadata dict).

    F16 and BF16 tensors are widened to float32 (as the checkpoint contract asks of
    readers); every other dtype keeps its numpy equivalent. Raises ValueError with the file
    name and the offending value on a malformed file.
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: file is {len(data)} bytes, too short for a safetensors header")
    (hlen,) = struct.unpack("<Q", data[:8])
    if hlen > _MAX_HEADER or 8 + hlen > len(data):
        raise ValueError(f"{path}: header length {hlen} exceeds file size {len(data)}")
    try:
        header = json.loads(data[8:8 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: header is not valid JSON ({e})") from e
    body = memoryview(data)[8 + hlen:]
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, info in header.items():
        dtype = info.get("dtype")
        shape = tuple(int(s) for s in info.get("shape", []))
        begin, end = (int(o) for o in info.get("data_offsets", (0, -1)))
        if not 0 <= begin <= end <= len(body):
            raise ValueError(f"{path}: tensor '{name}' offsets [{begin}, {end}] outside data "
                             f"of {len(body)} bytes")
        raw = bytes(body[begin:end])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if dtype == "BF16":
            if len(raw) != 2 * count:
                raise ValueError(f"{path}: tensor '{name}' has {len(raw)} bytes, "
                                 f"expected {2 * count} for BF16 {list(shape)}")
            tensors[name] = _bf16_to_f32(raw, shape)
            continue
        if dtype not in _DTYPES:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype '{dtype}'")
        dt = _DTYPES[dtype]
        if len(raw) != dt.itemsize * count:
            raise ValueError(f"{path}: tensor '{name}' has {len(raw)} bytes, expected "
                             f"{dt.itemsize * count} for {dtype} {list(shape)}")
        arr = np.frombuffer(raw, dtype=dt).reshape(shape).copy()
        if dtype == "F16":
            arr = arr.astype(np.float32)
        tensors[name] = arr
    return tensors, metadata


def _f32_to_bf16(arr) -> np.ndarray:
    # Round to nearest even on the 16 dropped bits (what torch's .bfloat16() does for
    # finite values).
    u32 = np.ascontiguousarray(arr, dtype="<f4").view(np.uint32).astype(np.uint64)
    rounded = (u32 + 0x7FFF + ((u32 >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def save(path, tensors, metadata=None, float_dtype="F32"):
    """Write `tensors` (dict name -> array-like) as safetensors.

    Floating arrays are stored as `float_dtype` -- F32 by default (the contract's on-disk
    dtype); F16/BF16/F64 exist so tests can exercise a reader's widening. Integer/bool arrays
    keep their width. The header is padded with spaces to a multiple of 8 bytes so the data
    section is aligned (the reference implementation does the same). Metadata values must be
    strings, as the format requires.
    """
    if float_dtype not in ("F32", "F16", "BF16", "F64"):
        raise ValueError(f"save {path}: float_dtype '{float_dtype}' is not F32/F16/BF16/F64")
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        if arr.dtype.kind == "f" and float_dtype == "BF16":
            arr, dname = _f32_to_bf16(arr).reshape(arr.shape), "BF16"
        elif arr.dtype.kind == "f":
            arr = arr.astype(_DTYPES[float_dtype])
            dname = float_dtype
        else:
            arr = arr.astype(arr.dtype.newbyteorder("<"))
            dname = _NAMES.get(np.dtype(arr.dtype.str.lstrip("<>|=")))
            if dname is None:
                raise ValueError(f"save {path}: tensor '{name}' has unsupported dtype "
                                 f"{arr.dtype}")
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dname, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise ValueError(f"save {path}: metadata '{k}' must be a string, got "
                                 f"{type(v).__name__}")
        header["__metadata__"] = dict(metadata)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
