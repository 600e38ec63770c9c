-- flame.profile(fn, ...): where a step's time goes. Runs fn(...) with the op profiler on (src/core/profile.c:
-- every kernel dispatch syncs the device and is charged the time until the next one, backward kernels under
-- their node's name), then returns a report: a list of {name, seconds, calls, share} sorted by time, with
-- :print(n) for the top n rows. Options: {device = "cuda"} (the device synchronised at the end). The syncs make
-- the run slower than normal; the shares are what to read.
local flame = ...

local Report = {}
Report.__index = Report

function Report:print(n, out)
  out = out or io.stdout
  out:write(string.format("%-56s %10s %8s %7s\n", "op (backward node/op)", "ms", "calls", "share"))
  for i = 1, math.min(n or 25, #self) do
    local e = self[i]
    out:write(string.format("%-56s %10.3f %8d %6.1f%%\n", e.name:sub(1, 56), e.seconds * 1e3, e.calls, e.share * 100))
  end
  out:write(string.format("%-56s %10.3f\n", "total", self.total * 1e3))
end

function flame.profile(fn, opts, ...)
  if type(fn) ~= "function" then error("profile: expected a function, got " .. type(fn), 2) end
  if opts ~= nil and type(opts) ~= "table" then error("profile: options must be a table, got " .. type(opts), 2) end
  local dev = opts and opts.device or (flame.cuda.is_available() and "cuda" or "cpu")
  flame._profile_start()
  local ok, err = pcall(fn, ...)
  local rows = flame._profile_stop(dev)
  if not ok then error(err, 0) end
  local total = 0
  for _, e in ipairs(rows) do total = total + e.seconds end
  for _, e in ipairs(rows) do e.share = total > 0 and e.seconds / total or 0 end
  table.sort(rows, function(a, b) return a.seconds > b.seconds end)
  rows.total = total
  return setmetatable(rows, Report)
end
