#!/usr/bin/env bash
# The safetensors interop round trips of issue 8 (spec/interop/): Python's safetensors writes every flame dtype,
# flame loads it (to DEVICE) and writes it back, flame writes its own file and a model's state_dict, and Python
# checks values bit for bit and loads the state_dict into the same architecture in PyTorch (strict) with the
# same outputs. Then DLPack both ways between libflame's C API (ctypes) and PyTorch, without copies
# (spec/interop/dlpack_torch.py; FLAME_LIB, default libflame.so beside FLAME_LUA). Needs a python with torch and
# safetensors.
#   scripts/interop.sh [cpu|cuda]       PYTHON (default python3), FLAME_LUA (default build-cpu/flame-lua),
#                                       INTEROP_DIR (default a fresh temporary folder, kept for inspection)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
device=${1:-cpu}
py=${PYTHON:-python3}
lua=${FLAME_LUA:-$here/build-cpu/flame-lua}
dir=${INTEROP_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/flame-interop.XXXXXX")}
mkdir -p "$dir"
echo "interop on $device in $dir ($($py -c 'import torch, safetensors; print("torch", torch.__version__, "safetensors", safetensors.__version__)'))"
"$py" spec/interop/py_write.py "$dir"
"$lua" spec/interop/flame_side.lua "$dir" "$device"
"$py" spec/interop/py_check.py "$dir"
"$py" spec/interop/dlpack_torch.py "${FLAME_LIB:-$(dirname "$lua")/libflame.so}" "$device"
