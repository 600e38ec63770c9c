"""DLPack between flame's C API (libflame, through ctypes) and PyTorch, both ways, without copies (issue 11):
flame's tensor seen by torch.utils.dlpack.from_dlpack, and a torch tensor imported by fl_from_dlpack, each
checked for the same memory (data pointers), values, and writes seen on the other side.
Usage: python3 spec/interop/dlpack_torch.py LIBFLAME [cpu|cuda]    (scripts/interop.sh runs it)"""
import ctypes
import sys

import torch
import torch.utils.dlpack

F32, BF16 = 0, 3  # fl_dtype
CPU, CUDA = 0, 1  # fl_devtype


class Device(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("index", ctypes.c_int)]


class Opts(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("device", Device), ("requires_grad", ctypes.c_bool)]


def main():
    lib = ctypes.CDLL(sys.argv[1])
    where = sys.argv[2] if len(sys.argv) > 2 else "cpu"
    if not hasattr(lib, "fl_to_dlpack"):
        raise SystemExit("FAIL: %s was built without DLPack (no dlpack/dlpack.h: libdlpack-dev)" % sys.argv[1])
    dev = Device(CUDA if where == "cuda" else CPU, 0)
    P = ctypes.c_void_p
    lib.fl_last_error.restype = ctypes.c_char_p
    lib.fl_arange.argtypes = [ctypes.c_double, ctypes.c_double, ctypes.c_double, Opts, ctypes.POINTER(P)]
    lib.fl_to_dlpack.argtypes = [P, ctypes.POINTER(P)]
    lib.fl_from_dlpack.argtypes = [P, ctypes.POINTER(P)]
    lib.fl_tensor_data.argtypes = [P]
    lib.fl_tensor_data.restype = P
    lib.fl_to_doubles.argtypes = [P, ctypes.POINTER(ctypes.c_double)]
    lib.fl_fill_.argtypes = [P, ctypes.c_double]
    lib.fl_release.argtypes = [P]
    lib.fl_synchronize.argtypes = [Device]
    capi = ctypes.pythonapi
    capi.PyCapsule_New.restype = ctypes.py_object
    capi.PyCapsule_New.argtypes = [P, ctypes.c_char_p, P]
    capi.PyCapsule_GetPointer.restype = P
    capi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    capi.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]

    def ok(st, what):
        if st != 0:
            raise SystemExit("FAIL %s: %s" % (what, lib.fl_last_error().decode()))

    def values(t, n):
        out = (ctypes.c_double * n)()
        ok(lib.fl_to_doubles(t, out), "fl_to_doubles")
        return list(out)

    def check(cond, what):
        if not cond:
            raise SystemExit("FAIL " + what)
        print("ok   - " + what)

    # flame -> torch, in f32 and bf16
    for dt, tdt in ((F32, torch.float32), (BF16, torch.bfloat16)):
        t, m = P(), P()
        ok(lib.fl_arange(0, 6, 1, Opts(dt, dev, False), ctypes.byref(t)), "fl_arange")
        ok(lib.fl_to_dlpack(t, ctypes.byref(m)), "fl_to_dlpack")
        x = torch.utils.dlpack.from_dlpack(capi.PyCapsule_New(m, b"dltensor", None))
        check(x.dtype == tdt and x.device.type == where and x.data_ptr() == lib.fl_tensor_data(t),
              "flame -> torch (%s): the same %s memory" % (tdt, where))
        check(x.tolist() == [0, 1, 2, 3, 4, 5], "flame -> torch (%s): values" % tdt)
        x[0] = 42  # torch writes, flame reads
        if where == "cuda":
            torch.cuda.synchronize()
        check(values(t, 6)[0] == 42, "flame -> torch (%s): torch's write seen by flame" % tdt)
        lib.fl_release(t)  # torch's tensor still holds the memory
        check(x.tolist() == [42, 1, 2, 3, 4, 5], "flame -> torch (%s): alive after flame released it" % tdt)
        del x

    # torch -> flame
    y = torch.arange(4, dtype=torch.float32, device=where) * 2
    cap = torch.utils.dlpack.to_dlpack(y)
    u = P()
    ok(lib.fl_from_dlpack(capi.PyCapsule_GetPointer(cap, b"dltensor"), ctypes.byref(u)), "fl_from_dlpack")
    capi.PyCapsule_SetName(cap, b"used_dltensor")  # the protocol: flame owns it now and calls its deleter
    check(lib.fl_tensor_data(u) == y.data_ptr(), "torch -> flame: the same %s memory" % where)
    check(values(u, 4) == [0, 2, 4, 6], "torch -> flame: values")
    ok(lib.fl_fill_(u, 5), "fl_fill_")
    ok(lib.fl_synchronize(dev), "fl_synchronize")
    check(y.tolist() == [5, 5, 5, 5], "torch -> flame: flame's write seen by torch")
    lib.fl_release(u)  # runs torch's deleter: y keeps its own reference
    check(y.tolist() == [5, 5, 5, 5], "torch -> flame: torch's tensor alive after flame released it")
    print("dlpack interop ok on " + where)


main()
