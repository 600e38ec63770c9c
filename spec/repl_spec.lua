-- The REPL's interactive features, in a terminal: spec/tools/pty_drive.py runs flame-lua in a pseudo-terminal
-- (CI has none) and types into it: help(x) and ?x, tab completion (readline), a trailing ';', %time, tensors
-- wrapped at the terminal's width, Ctrl-C at the prompt and during a running loop. The parts that need no
-- terminal are also checked through a pipe. Pending when flame-lua or python3 is missing.
local exe = os.getenv("FLAME_LUA") or "build/flame-lua"
local DRIVER = "spec/tools/pty_drive.py"
local fx = require "fixtures.print"

local function shquote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function have_python()
  local p = io.popen("python3 -c 'import pty' 2>/dev/null && echo yes")
  local ok = p:read("a"):match("yes")
  p:close()
  return ok ~= nil
end

-- Runs flame-lua in a terminal of the given width through the actions (see pty_drive.py); returns the
-- transcript and whether every expect matched.
local function terminal(cols, actions)
  -- (without the sanitizer run's preloaded ASan runtime: the driver and its shell are not ours to check)
  local words = {"env", "-u", "LD_PRELOAD", "python3", DRIVER, "--cols", tostring(cols), "--timeout", "10", "--", shquote(exe), ":::"}
  for _, a in ipairs(actions) do words[#words + 1] = shquote(a) end
  local p = assert(io.popen(table.concat(words, " ") .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)\n$"))
  return out:gsub("rc=%d+\n$", ""), rc == 0
end

-- Runs "flame-lua -i" on piped input; returns stdout (without the banner) and stderr.
local function pipe(input, env)
  local inp, out, err = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(inp, "wb"))
  f:write(input)
  f:close()
  os.execute((env or "") .. " " .. shquote(exe) .. " -i <" .. inp .. " >" .. out .. " 2>" .. err)
  local function slurp(path)
    local h = assert(io.open(path, "rb"))
    local s = h:read("a")
    h:close()
    os.remove(path)
    return s
  end
  os.remove(inp)
  return (slurp(out):gsub("^FLAME%-Lua [^\n]*\n", "")), slurp(err)
end

local PROMPT = "flame> $"  -- expects are Python regular expressions

local function fixture(name)
  for _, case in ipairs(fx) do if case.name == name then return case end end
  error("no print fixture " .. name)
end

-- The tensor printed in a transcript, with flame's dtype/device tail dropped (as print_spec compares).
local function printed_tensor(out)
  local s = assert(out:match("\n(tensor%(.-%))\n"), "no tensor in: " .. out)
  return (s:gsub(", dtype=[^)]*%)$", ")"))
end

describe("REPL", function()
  local ready = exists(exe)
  local tty = ready and have_python()

  local function spec(name, fn, needs_tty)
    it(name, function()
      if not ready then return pending(exe .. " not built (set FLAME_LUA)") end
      if needs_tty and not tty then return pending("python3 with the pty module is needed") end
      fn()
    end)
  end

  describe("through a pipe", function()
    spec("prints nothing for a line ending in ';'", function()
      local out, err = pipe("1 + 1;\nx = 2;\nx\nx * 3 ;  \nlocal y = 4;\n")
      assert.are.equal("2\n", out)
      assert.are.equal("", err)
    end)

    spec("%time toggles timing of each command and times one", function()
      local out, err = pipe("%time\n1 + 1\nx = 1\n%time\n2 + 2\n%time 3 + 3\n4\n")
      assert.are.equal("", err)
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.are.equal(9, #lines, out)
      assert.are.equal("timing on", lines[1])
      assert.are.equal("2", lines[2])
      assert.truthy(lines[3]:match("^Wall time: [%d.]+ [mu]?s$"), lines[3])
      assert.truthy(lines[4]:match("^Wall time: "), lines[4])  -- a statement is timed too
      assert.are.equal("timing off", lines[5])
      assert.are.equal("4", lines[6])
      assert.are.equal("6", lines[7])
      assert.truthy(lines[8]:match("^Wall time: "), lines[8])
      assert.are.equal("4", lines[9])
    end)

    spec("?x and help(x) print the help line; errors in ?x are reported", function()
      local out, err = pipe("?flame.F.relu\nhelp(flame.F.relu)\nt = flame.zeros(2)\n? t.grad\n?t:matmul\n")
      assert.are.equal("flame.F.relu(x)\n  max(x, 0)\nflame.F.relu(x)\n  max(x, 0)\n"
        .. "Tensor.grad\n  the accumulated gradient, or nil (settable)\n"
        .. "Tensor:matmul(u)\n  matrix product (1-D, 2-D, batched with broadcast batch dims)\n", out)
      assert.are.equal("", err)
    end)

    spec("keeps a user's global help", function()
      local out = pipe("help = function() return 'mine' end\nhelp()\n")
      assert.are.equal("mine\n", out)
    end)

    spec("wraps tensors at $COLUMNS when the output is no terminal", function()
      local out = pipe("flame.arange(0, 30):float()\n", "COLUMNS=40")
      assert.are.equal(fixture("vector_40").repr, printed_tensor("\n" .. out))
      -- a linewidth set by the user wins
      out = pipe("flame.set_printoptions({linewidth = 80});\nflame.arange(0, 30):float()\n", "COLUMNS=40")
      assert.are.equal(fixture("vector_whole_80").repr, printed_tensor("\n" .. out))
    end)

    spec("a script prints at PyTorch's 80 whatever $COLUMNS says", function()
      local p = assert(io.popen("COLUMNS=40 " .. shquote(exe) .. " -e 'print(flame.arange(0, 30):float())'"))
      local out = p:read("a")
      p:close()
      assert.are.equal(fixture("vector_whole_80").repr, printed_tensor("\n" .. out))
    end)
  end)

  describe("in a terminal", function()
    spec("prints help for ?x", function()
      local out, ok = terminal(80, {"expect:" .. PROMPT, "send:?flame.optim.SGD\n", "expect:" .. PROMPT})
      assert.is_true(ok, out)
      assert.truthy(out:find("flame> ?flame.optim.SGD\nflame.optim.SGD(params, {lr, momentum", 1, true), out)
    end, true)

    spec("completes tensor properties, module fields and methods, flame.F. and flame.nn.", function()
      local out, ok = terminal(80, {
        "expect:" .. PROMPT,
        "send:x = flame.zeros(2, 3)\n", "expect:" .. PROMPT,
        "send:x.sha\t\n", "expect:\n{2, 3}\nflame> $",
        "send:x.requires_g\t\n", "expect:\nfalse\nflame> $",
        "send:m = flame.nn.Linear(2, 3)\n", "expect:" .. PROMPT,
        "send:m.wei\t.shape\n", "expect:\n{3, 2}\nflame> $",
        "send:#m:paramet\t", "expect:#m:parameters$", "send:()\n", "expect:\n2\nflame> $",
        "send:opt = flame.optim.SGD(m:parameters(), {lr = 0.1})\n", "expect:" .. PROMPT,
        "send:opt:zero\t()\n", "expect:" .. PROMPT,  -- a method found through SGD's __index chain
        "send:flame.nn.Lin\t == nil\n", "expect:\nfalse\nflame> $",
        "send:flame.optim.lr_scheduler.cos\t == nil\n", "expect:\nfalse\nflame> $",
        "send:flame.F.conv_transpose\t", "sleep:0.2", "send:\t",
        "expect:flame\\.F\\.conv_transpose1d +flame\\.F\\.conv_transpose2d +flame\\.F\\.conv_transpose3d\nflame> flame\\.F\\.conv_transpose$",
        "send:\x03", "expect:" .. PROMPT,
        "send:x.\t", "sleep:0.2", "send:\t", "expect:y or n", "send:y", "sleep:0.3", "send:\x03", "expect:" .. PROMPT,
      })
      assert.is_true(ok, out)
      assert.truthy(out:find("flame> x.shape\n", 1, true), out)
      assert.truthy(out:find("flame> m.weight.shape\n", 1, true), out)
      assert.truthy(out:find("flame> #m:parameters()\n2\n", 1, true), out)
      assert.truthy(out:find("flame> opt:zero_grad()\nflame> ", 1, true), out)
      assert.truthy(out:find("flame> flame.nn.Linear == nil\n", 1, true), out)
      assert.truthy(out:find("flame> flame.optim.lr_scheduler.cosine_with_warmup == nil\n", 1, true), out)
      -- the listing of a tensor's fields has properties and methods
      for _, k in ipairs({"x.dtype", "x.device", "x.grad", "x.requires_grad", "x.is_leaf", "x.matmul"}) do
        assert.truthy(out:find(k .. " ", 1, true) or out:find(k .. "\n", 1, true), k .. " not listed in: " .. out) -- (a last column's ends the line)
      end
    end, true)

    spec("prints nothing after ';' and times with %time", function()
      local out, ok = terminal(80, {
        "expect:" .. PROMPT, "send:flame.ones(2);\n", "expect:" .. PROMPT,
        "send:%time flame.ones(2):sum()\n", "expect:Wall time: [\\d.]+ [mu]?s\nflame> $",
      })
      assert.is_true(ok, out)
      assert.truthy(out:find("flame> flame.ones(2);\nflame> %time", 1, true), out)
      assert.truthy(out:find("tensor(2., dtype=f32, device=cpu)\nWall time", 1, true), out)
    end, true)

    spec("wraps tensors at the terminal's width", function()
      for _, case in ipairs({{40, "vector_40"}, {80, "matrix_80"}}) do
        local expr = case[2] == "vector_40" and "flame.arange(0, 30):float()" or "flame.arange(0, 40):float():view(2, 20)"
        local out, ok = terminal(case[1], {"expect:" .. PROMPT, "send:" .. expr .. "\n", "expect:" .. PROMPT})
        assert.is_true(ok, out)
        assert.are.equal(fixture(case[2]).repr, printed_tensor(out))
      end
    end, true)

    spec("Ctrl-C clears the line and the pending chunk, and interrupts a running loop", function()
      local out, ok = terminal(80, {
        "expect:" .. PROMPT,
        -- (the expects before each Ctrl-C make sure what was typed has been read: the terminal discards
        -- unread input on Ctrl-C)
        "send:1 + ", "expect:1 \\+ $", "send:\x03", "expect:\\^C\nflame> $",
        "send:for i = 1, 2 do\n", "expect:   \\.\\.> $", "send:\x03", "expect:\\^C\nflame> $",
        "send:2 + 2\n", "expect:\n4\nflame> $",
        "send:print('start') while true do end\n", "expect:start\n$", "send:\x03", "expect:interrupted!.*flame> $",
        "send:n = 0; while true do n = n + 1; if n == 1000 then print('go') end end\n", "expect:go\n$", "send:\x03",
        "expect:interrupted!.*flame> $",
        "send:print('alive', n > 0)\n", "expect:alive\ttrue\nflame> $",
      })
      assert.is_true(ok, out)
      assert.truthy(out:find("flame> 1 + ^C\nflame> for i = 1, 2 do\n   ..> ^C\nflame> 2 + 2\n4\n", 1, true), out)
      -- (the hook may fire inside print, a C function: then the message has no position)
      assert.truthy(out:find("flame> print%('start'%) while true do end\nstart\n%^C[^\n]*interrupted!\nstack traceback:\n"), out)
      assert.falsy(out:find("unexpected symbol", 1, true), out)
    end, true)
  end)
end)
