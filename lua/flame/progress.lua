-- flame.progress(total, {desc, width, interval, file}): a progress bar for loops (a small tqdm).
--   local bar = flame.progress(steps, {desc = "train"})
--   for step = 1, steps do ...; bar:update(1, {loss = loss}) end
--   bar:close()
-- A line reads `train  45% [#########           ] 45/100 [00:03<00:04, 12.3 it/s] loss=0.1234`.
-- On a terminal the line is redrawn in place (\r) at most every `interval` seconds (default 0.1). Elsewhere (CI,
-- a log file) a plain line is printed when another tenth of the total is done or `interval` seconds (default 30)
-- have passed since the last line, and once at close. Output goes to `file` (default io.stderr, as tqdm's), so the
-- program's stdout stays as it was. Field values are numbers, strings or tensors; a tensor is read (:item(),
-- a device sync) only when a line is drawn, so passing the loss tensor each step costs nothing in between.
local flame = ...

local Progress = {}
Progress.__index = Progress
Progress.__name = "Progress"

local function clock_str(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s) -- whole seconds, truncated as tqdm does
  local h, m = s // 3600, s // 60 % 60
  if h > 0 then return string.format("%d:%02d:%02d", h, m, s % 60) end
  return string.format("%02d:%02d", m, s % 60)
end

local function field_str(v)
  if flame.is_tensor(v) then v = v:item() end
  if math.type(v) == "float" then return string.format("%.4g", v) end
  return tostring(v)
end

function flame.progress(total, opts)
  opts = flame.data._check_opts("progress", opts, {desc = true, width = true, interval = true, file = true,
                                                   tty = true, clock = true})
  if total ~= nil and (math.type(total) ~= "integer" or total < 0) then
    error("progress: total must be a non-negative integer or nil, got " .. tostring(total), 2)
  end
  local file = opts.file or io.stderr
  if io.type(file) ~= "file" then error("progress: file must be an open Lua file, got " .. tostring(file), 2) end
  local tty = opts.tty
  if tty == nil then tty = flame.data._isatty(file) end
  local width = opts.width or 30
  if math.type(width) ~= "integer" or width < 1 then
    error("progress: width must be a positive integer, got " .. tostring(width), 2)
  end
  local interval = opts.interval or (tty and 0.1 or 30)
  if type(interval) ~= "number" or interval < 0 then
    error("progress: interval must be a non-negative number of seconds, got " .. tostring(interval), 2)
  end
  local clock = opts.clock or flame.timer -- opts.clock: a function returning seconds (tests pass a fake one)
  local now = clock()
  return setmetatable({total = total, n = 0, desc = opts.desc, width = width, interval = interval, file = file,
                       tty = tty, clock = clock, start = now, last_draw = now, last_tenth = 0, fields = {},
                       closed = false}, Progress)
end

-- The line for the current state (without \r or newline).
function Progress:line()
  local elapsed = self.clock() - self.start
  local rate = elapsed > 0 and self.n / elapsed or nil
  local parts = {}
  if self.desc then parts[#parts + 1] = self.desc end
  local timing
  if self.total then
    local frac = self.total > 0 and math.min(self.n / self.total, 1) or 1
    local fill = math.floor(frac * self.width + 1e-9)
    parts[#parts + 1] = string.format("%3d%%", math.floor(frac * 100 + 1e-9))
    parts[#parts + 1] = "[" .. string.rep("#", fill) .. string.rep(" ", self.width - fill) .. "]"
    parts[#parts + 1] = string.format("%d/%d", self.n, self.total)
    local eta = rate and rate > 0 and (self.total - self.n) / rate or (self.n >= self.total and 0 or math.huge)
    timing = clock_str(elapsed) .. "<" .. clock_str(eta)
  else
    parts[#parts + 1] = tostring(self.n)
    timing = clock_str(elapsed)
  end
  parts[#parts + 1] = string.format("[%s, %s it/s]", timing, rate and string.format("%.2f", rate) or "?")
  local keys = {}
  for k in pairs(self.fields) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. field_str(self.fields[k]) end
  return table.concat(parts, " ")
end

function Progress:_draw(final)
  local s = self:line()
  if self.tty then
    self.file:write("\r", s, "\27[K", final and "\n" or "")
  else
    self.file:write(s, "\n")
  end
  self.file:flush()
  self.last_draw, self.drawn_n = self.clock(), self.n
end

-- update(n = 1, fields): n more steps done; fields (a table) replaces the shown fields.
function Progress:update(n, fields)
  if self.closed then error("progress: update after close", 2) end
  n = n or 1
  if math.type(n) ~= "integer" or n < 0 then error("progress: update needs a non-negative integer, got " .. tostring(n), 2) end
  if fields ~= nil and type(fields) ~= "table" then error("progress: fields must be a table, got a " .. type(fields), 2) end
  self.n = self.n + n
  if fields then self.fields = fields end
  local now = self.clock()
  local due = now - self.last_draw >= self.interval
  if not self.tty and self.total and self.total > 0 then
    local tenth = math.min(self.n * 10 // self.total, 10)
    if tenth > self.last_tenth then self.last_tenth, due = tenth, true end
  end
  if self.tty and self.total and self.n >= self.total then due = true end
  if due then self:_draw(false) end
end

-- print(...): a line of text above the bar (like tqdm.write), to stdout; the bar is redrawn below it on a TTY.
function Progress:print(...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  if self.tty and not self.closed then self.file:write("\r\27[K") self.file:flush() end
  io.stdout:write(table.concat(t, "\t", 1, t.n), "\n")
  io.stdout:flush()
  if self.tty and not self.closed then self:_draw(false) end
end

-- close(): the final line (ends the TTY line with a newline); later calls do nothing.
function Progress:close()
  if self.closed then return end
  if self.tty or self.drawn_n ~= self.n then self:_draw(true) end
  self.closed = true
end

Progress.__close = Progress.close -- `local bar <close> = flame.progress(n)` closes it on scope exit
