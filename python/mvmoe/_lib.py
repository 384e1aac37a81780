"""Finds and loads libmvmoe.so and declares the C functions the package calls (ctypes).

Where the library comes from, first found wins:
  1. the environment variable MVMOE_LIB (a path to libmvmoe.so or libmvmoe.so.0);
  2. the installed copy: `make install` writes _installed.py beside this file with the path of
     $(LIBDIR)/libmvmoe.so.0 relative to the package folder (so DESTDIR staging keeps working);
  3. the build tree this file sits in (python/mvmoe/../../build/libmvmoe.so: `make lib`);
  4. the system's loader path (libmvmoe.so.0, e.g. after `make install PREFIX=/usr` + ldconfig).
"""
import ctypes
import ctypes.util
import os

SONAME = "libmvmoe.so.0"
_here = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    env = os.environ.get("MVMOE_LIB")
    if env:
        return [("MVMOE_LIB", env)]  # asked for explicitly: nothing else is tried
    out = []
    try:
        from . import _installed  # written by `make install`
        out.append(("installed", os.path.normpath(os.path.join(_here, _installed.LIBRARY))))
    except ImportError:
        pass
    out.append(("build tree", os.path.normpath(os.path.join(_here, "..", "..", "build", "libmvmoe.so"))))
    out.append(("loader path", SONAME))
    return out


def _load():
    tried = []
    for where, path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{where}: {path} (absent)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"{where}: {path} ({e})")
    raise ImportError("mvmoe: cannot load the C library libmvmoe.so; tried " + "; ".join(tried) +
                      ". Build it with `make lib`, install it with `make install`, or set "
                      "MVMOE_LIB to its path.")


lib, path = _load()
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


class LoadOptions(ctypes.Structure):
    """mvmoe_load_options of include/mvmoe.h."""
    _fields_ = [("img_size", ctypes.c_int), ("heads", ctypes.c_int),
                ("in_chans_mean_std", ctypes.c_int), ("mean", ctypes.c_float * 4),
                ("std", ctypes.c_float * 4), ("adaptive_k", ctypes.c_float)]


_P, _S, _I, _D = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_double


def _declare(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


version = _declare("mvmoe_version", _S)
status_name = _declare("mvmoe_status_name", _S, _I)
last_error = _declare("mvmoe_last_error", _S)
set_threads = _declare("mvmoe_set_threads", None, _I)
model_load = _declare("mvmoe_model_load", _I, ctypes.POINTER(_P), _S, ctypes.POINTER(LoadOptions))
model_save = _declare("mvmoe_model_save", _I, _P, _S)
model_free = _declare("mvmoe_model_free", None, _P)
model_config = _declare("mvmoe_model_config", _P, _P)
config_to_json = _declare("mvmoe_config_to_json", _I, _P, ctypes.POINTER(_P))
config_flops = _declare("mvmoe_config_flops", _D, _P)
config_num_params = _declare("mvmoe_config_num_params", ctypes.c_size_t, _P)
config_active_params = _declare("mvmoe_config_active_params", ctypes.c_size_t, _P)
config_tokens = _declare("mvmoe_config_tokens", _I, _P)
model_predict = _declare("mvmoe_model_predict", _I, _P, _P, _I, _P, _P)
free = libc.free
free.restype, free.argtypes = None, [_P]
