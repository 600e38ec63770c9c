-- The checkpoint-load case of issue 8 on the flame side: flame.load of a 2 GiB bf16 safetensors file to cuda
-- (64 tensors of [4096, 4096]), the file in the page cache (written first, one warm-up load), median of a few
-- loads. One JSON line in bench/nn.lua's format; bench/io_torch.py times safetensors.torch.load_file(device=
-- "cuda") on the same file, and bench/nn_ratio.py joins the two:
--   flame-lua bench/io.lua > io.jsonl && python3 bench/io_torch.py > io_torch.jsonl
--   python3 bench/nn_ratio.py io.jsonl io_torch.jsonl
-- FLAME_BENCH_FILE (default /tmp/flame_bench_2g.safetensors) is kept between runs; bench/io_torch.py reuses it.
local flame = require "flame"
local median_time = dofile("bench/timing.lua")

local path = os.getenv("FLAME_BENCH_FILE") or "/tmp/flame_bench_2g.safetensors"
local name = "load 2 GiB bf16 safetensors to cuda"
local ok, err = pcall(function()
  local f = io.open(path, "rb")
  if f then f:close() else
    flame.manual_seed(0)
    local ts = {}
    for i = 1, 64 do ts[string.format("layers.%d.weight", i - 1)] = flame.randn(4096, 4096, {dtype = "bf16", device = "cuda"}) end
    flame.save(path, ts)
    ts = nil
    collectgarbage(); collectgarbage()
    flame.cuda.empty_cache()
  end
  local function load()
    local ts = flame.load(path, {device = "cuda"})
    ts = nil
    collectgarbage(); collectgarbage() -- the 2 GiB go back to the cache allocator for the next load
  end
  return median_time(load, 1, 5)
end)
if ok then print(string.format('{"name": %q, "family": "io", "target": 1.0, "flame_s": %.9g}', name, err))
else print(string.format('{"name": %q, "family": "io", "error": %q}', name, tostring(err))) end
