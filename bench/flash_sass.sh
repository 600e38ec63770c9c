#!/usr/bin/env bash
# Static SASS profile of the flash-attention kernels (no GPU): each variant of cuda/flash_attention.cu given (a file
# path; "." or nothing is the tree's own) is compiled alone to an sm_90 cubin with the CMake build's flags, then
# bench/flash_sass.py prints one table row per kernel: registers and spills (ptxas -v), instructions in all, in the
# main loop, and along its fast path (an interior tile: no mask, no dropout, no rescale) with that path's mix and
# static stall cycles, and the slow path's length. Before/after:
#   git show <commit>:cuda/flash_attention.cu > tmp_fa_before.cu; bench/flash_sass.sh tmp_fa_before.cu .
# FLASH_SASS_KERNELS: bf16 (default), f16 or all. FLASH_SASS_FLAGS: extra nvcc flags (-DFA_FWD_MT=1).
# FLASH_SASS_DROPOUT=on: each variant is compiled with p.dropout replaced by true in its device code (everything
# before set_dropout), so that a kernel which tests it at run time (main's before the DROP kernels) shows its dropout
# tile as its fast path, as the ",drop" rows (dropout kernels of their own) do anyway. Before/after of dropout runs:
#   FLASH_SASS_DROPOUT=on bench/flash_sass.sh tmp_fa_before.cu; bench/flash_sass.sh .
# FLASH_SASS_LIST=<kernel as in the table, e.g. 'fwd<bf16,128>'>: also writes that kernel's fast path, one
# instruction a line with its stall cycles, to /tmp/flash_sass_<variant>.path.
# A variant named *sm90*.cu (cuda/flash_fwd_sm90.cu, the Hopper forwards; "sm90" alone is the tree's) is compiled
# for sm_90a and gets a table of whole-function counts instead (registers, spills, HGMMA, ...): their tile loops are
# peeled. Against another branch's, with that branch's headers (a quoted include is found beside the file first):
#   mkdir /tmp/o && git archive <commit> cuda | tar -x -C /tmp/o; bench/flash_sass.sh /tmp/o/cuda/flash_fwd_sm90.cu sm90
# nvdisasm: on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin, or $NVDISASM (pip's nvidia-cuda-nvdisasm-cu13 has one).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
dis=${NVDISASM:-$(command -v nvdisasm || true)}
for d in "${CUDA_HOME:-/usr/local/cuda}/bin" /usr/local/cuda/bin; do
  [ -z "$dis" ] && [ -x "$d/nvdisasm" ] && dis=$d/nvdisasm
done
[ -n "$dis" ] || { echo "flash_sass: no nvdisasm (set NVDISASM=...; pip install nvidia-cuda-nvdisasm-cu13 has one)"; exit 1; }
[ $# -eq 0 ] && set -- .
tmp=${TMPDIR:-/tmp}/flash_sass.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
status=0
for variant in "$@"; do
  file=$variant arch=sm_90
  [ "$variant" = . ] && file=cuda/flash_attention.cu
  [ "$variant" = sm90 ] && file=cuda/flash_fwd_sm90.cu
  name=$(basename "$variant" .cu | tr -c 'A-Za-z0-9_-' '_')
  [ "$variant" = . ] && name=tree
  [ "$variant" = sm90 ] && name=tree_sm90
  case $(basename "$file") in *sm90*) arch=sm_90a ;; esac
  echo "=== $variant${FLASH_SASS_DROPOUT:+ (dropout $FLASH_SASS_DROPOUT)}"
  [ -f "$file" ] || { echo "no $file"; status=1; continue; }
  if [ "${FLASH_SASS_DROPOUT:-}" = on ]; then # (a copy beside the file: its quoted includes are found there first)
    folded=$(dirname "$file")/.flash_sass_dropout_$$_$(basename "$file")
    python3 -c 'import sys; s = open(sys.argv[1]).read(); i = s.find("void set_dropout(");
i = len(s) if i < 0 else i; open(sys.argv[2], "w").write(s[:i].replace("p.dropout", "true") + s[i:])' "$file" "$folded"
    file=$folded
  fi
  # (its headers are all found through -I, so a variant anywhere in the tree compiles as the tree's own file does)
  if ! "$nvcc" -cubin -arch=$arch -O3 -DNDEBUG -std=c++17 --expt-relaxed-constexpr ${FLASH_SASS_FLAGS:-} \
      -Iinclude -Isrc/core -Icuda -Xptxas -v "$file" -o "$tmp/$name.cubin" 2>"$tmp/$name.log"; then
    grep -v "^ptxas info\|^    [0-9]* bytes stack" "$tmp/$name.log" | head -20
    status=1
  else
    "$dis" -hex "$tmp/$name.cubin" >"$tmp/$name.sass" &&
      python3 bench/flash_sass.py "$tmp/$name.sass" "$tmp/$name.log" "${FLASH_SASS_KERNELS:-bf16}" \
        ${FLASH_SASS_LIST:+--list "$FLASH_SASS_LIST" "/tmp/flash_sass_$name.path"} || status=1
  fi
  [ "${FLASH_SASS_DROPOUT:-}" = on ] && rm -f "$folded"
done
exit $status
