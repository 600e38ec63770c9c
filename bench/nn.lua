-- Times the NN-op cases of bench/nn/*.lua through flame on CUDA, one JSON line
-- per case; bench/nn_torch.py times the same names with PyTorch and
-- bench/nn_ratio.py joins them. Usage: flame-lua bench/nn.lua [family ...]
-- A family file returns a list of cases:
--   {name = "layer_norm fwd+bwd f32 [8192,1024]", target = 1.0,
--    setup = function(flame) ... return fn end}
-- (optional flops = the case's floating-point operations: nn_ratio.py then prints TFLOP/s too; optional
-- against = another case's name and against_target: nn_ratio.py also prints flame's time of that case over this
-- one's, the target a flame path has against another flame path, e.g. varlen against its dense equivalent)
-- setup builds the inputs on "cuda" (seeded) and returns the function to time;
-- a fwd+bwd case runs the forward and backward inside fn.
local flame = require "flame"

local median_time = dofile("bench/timing.lua")

local families = {...}
if #families == 0 then
  for f in io.popen("ls bench/nn/*.lua 2>/dev/null"):lines() do families[#families + 1] = f:match("([%w_]+)%.lua$") end
end
for _, fam in ipairs(families) do
  for _, c in ipairs(dofile("bench/nn/" .. fam .. ".lua")) do
    flame.manual_seed(0)
    local ok, fn = pcall(c.setup, flame)
    local line
    if ok then
      local ok2, t = pcall(median_time, fn, c.iters or 10, c.reps or 7)
      if ok2 then
        line = string.format('{"name": %q, "family": %q, "target": %s, "flame_s": %.9g%s}', c.name, fam, c.target or "null", t,
          (c.flops and string.format(', "flops": %.17g', c.flops) or "") ..
          (c.against and string.format(', "against": %q, "against_target": %s', c.against, c.against_target or "null") or ""))
      else line = string.format('{"name": %q, "family": %q, "error": %q}', c.name, fam, tostring(t)) end
    else
      line = string.format('{"name": %q, "family": %q, "error": %q}', c.name, fam, tostring(fn))
    end
    print(line)
    io.stdout:flush()
    fn = nil
    collectgarbage(); collectgarbage()
    flame.cuda.empty_cache()
  end
end
