-- Specs of the flame-lua executable: options, the arg table, exit statuses
-- and the REPL fed through a pipe (no terminal: no prompts, no readline).
-- The binary is $FLAME_LUA, default build/flame-lua; specs are pending when
-- it has not been built. Only plain io/os are used, so any Lua runs them.

local exe = os.getenv("FLAME_LUA") or "build/flame-lua"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function shquote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local temps = {}
local function tempfile(text)
  local path = os.tmpname()
  temps[#temps + 1] = path
  if text then write_file(path, text) end
  return path
end

-- Runs flame-lua with the given argument list and stdin text; returns
-- stdout, stderr and the exit status. The shell reports the status so that
-- this works the same under Lua 5.1 and 5.4 (os.execute differs).
local function run(args, input)
  local words = { shquote(exe) }
  for i, a in ipairs(args or {}) do words[i + 1] = shquote(a) end
  local inp, out, err = tempfile(input or ""), tempfile(), tempfile()
  local cmd = table.concat(words, " ") .. " <" .. shquote(inp) .. " >" .. shquote(out)
    .. " 2>" .. shquote(err) .. "; echo $?"
  local p = assert(io.popen(cmd, "r"))
  local status = tonumber(p:read("*a"):match("%d+"))
  p:close()
  return slurp(out), slurp(err), status
end

-- The banner that -i (which implies -v) prints before the REPL output.
local BANNER = "^FLAME%-Lua 0%.1 %(Lua 5%.4%.%d+%)\n"

-- REPL output after the banner.
local function repl(input, args)
  local a = { "-i" }
  for _, x in ipairs(args or {}) do a[#a + 1] = x end
  local out, err, status = run(a, input)
  assert.is_truthy(out:match(BANNER), "no banner in: " .. out)
  return out:gsub(BANNER, ""), err, status
end

describe("flame-lua", function()
  local built = exists(exe)

  -- every spec below needs the binary
  local function spec(name, fn)
    it(name, function()
      if not built then
        pending(exe .. " not built (set FLAME_LUA)")
        return
      end
      fn()
    end)
  end

  teardown(function()
    for _, path in ipairs(temps) do os.remove(path) end
  end)

  describe("scripts", function()
    spec("builds arg like lua5.4 and passes the arguments as ...", function()
      local script = tempfile([[
for i = -3, #arg do print(i, arg[i]) end
print(select("#", ...), ...)
]])
      local out, err, status = run({ "-e", "x=1", script, "a", "b c" })
      assert.are.equal(table.concat({
        "-3\t" .. exe,
        "-2\t-e",
        "-1\tx=1",
        "0\t" .. script,
        "1\ta",
        "2\tb c",
        "2\ta\tb c",
      }, "\n") .. "\n", out)
      assert.are.equal("", err)
      assert.are.equal(0, status)
    end)

    spec("gives the script name arg[0] and the interpreter arg[-1]", function()
      local script = tempfile("print(#arg, arg[0] == ..., arg[-1], arg[-2])\n")
      local out, _, status = run({ script, script })
      assert.are.equal("1\ttrue\t" .. exe .. "\tnil\n", out)
      assert.are.equal(0, status)
    end)

    spec("stops option handling at --", function()
      local script = tempfile("print(arg[-1], ...)\n")
      local out, _, status = run({ "--", script, "-v", "-e" })
      assert.are.equal("--\t-v\t-e\n", out)
      assert.are.equal(0, status)
    end)

    spec("preloads flame as a global and for require", function()
      local script = tempfile([[
local flame = require "flame"
print(type(flame), flame == _G.flame, package.preload.flame ~= nil)
]])
      local out, err, status = run({ script })
      assert.are.equal("table\ttrue\ttrue\n", out)
      assert.are.equal("", err)
      assert.are.equal(0, status)
    end)

    spec("exits 1 with the error and a traceback", function()
      local script = tempfile("local x = 1\nerror('boom')\n")
      local out, err, status = run({ script })
      assert.are.equal("", out)
      assert.are.equal(1, status)
      assert.are.equal("flame-lua: " .. script .. ":2: boom\nstack traceback:\n",
                       err:sub(1, #("flame-lua: " .. script .. ":2: boom\nstack traceback:\n")))
      assert.is_truthy(err:find("[C]: in function 'error'", 1, true))
      assert.is_truthy(err:find(script .. ":2: in main chunk", 1, true))
    end)

    spec("exits 1 with a message for a missing script", function()
      local out, err, status = run({ "/nonexistent/x.lua" })
      assert.are.equal("", out)
      assert.are.equal("flame-lua: cannot open /nonexistent/x.lua: No such file or directory\n", err)
      assert.are.equal(1, status)
    end)

    spec("reads the script from stdin for -", function()
      local out, err, status = run({ "-", "x", "y" }, "print('from stdin', arg[0], ...)\n")
      assert.are.equal("from stdin\t-\tx\ty\n", out)
      assert.are.equal("", err)
      assert.are.equal(0, status)
    end)

    spec("runs a piped stdin as a script when given no script", function()
      local out, _, status = run({}, "local t = {}\nfor i = 1, 3 do t[i] = i * i end\nprint(table.concat(t, ','))\n")
      assert.are.equal("1,4,9\n", out)
      assert.are.equal(0, status)
    end)

    spec("exits 1 when the stdin script fails", function()
      local out, err, status = run({}, "error('piped')\n")
      assert.are.equal("", out)
      assert.are.equal("flame-lua: stdin:1: piped\n", err:match("^[^\n]*\n"))
      assert.are.equal(1, status)
    end)
  end)

  describe("options", function()
    spec("-e runs strings in order", function()
      local out, err, status = run({ "-e", "x = 20", "-e", "print(x + 22)" })
      assert.are.equal("42\n", out)
      assert.are.equal("", err)
      assert.are.equal(0, status)
    end)

    spec("-e accepts the statement attached to the option", function()
      local out, _, status = run({ "-eprint('attached')" })
      assert.are.equal("attached\n", out)
      assert.are.equal(0, status)
    end)

    spec("-e errors exit 1 naming the command line", function()
      local out, err, status = run({ "-e", "error('bad')" })
      assert.are.equal("", out)
      assert.are.equal("flame-lua: (command line):1: bad\n", err:match("^[^\n]*\n"))
      assert.are.equal(1, status)
    end)

    spec("-v prints the version", function()
      local out, err, status = run({ "-v" })
      assert.is_truthy(out:match(BANNER .. "$"), out)
      assert.are.equal("", err)
      assert.are.equal(0, status)
    end)

    spec("-l requires a module into a global", function()
      local out, _, status = run({ "-l", "m=string", "-e", "print(m.rep('ab', 3))" })
      assert.are.equal("ababab\n", out)
      assert.are.equal(0, status)
    end)

    spec("-h prints the usage and exits 0", function()
      local out, err, status = run({ "-h" })
      assert.are.equal("usage: flame-lua [options] [script [args]]\n", out:match("^[^\n]*\n"))
      assert.is_truthy(out:find("  -e stat   execute string 'stat'\n", 1, true))
      assert.are.equal("", err)
      assert.are.equal(0, status)
    end)

    spec("an unknown option prints the usage and exits 1", function()
      local out, err, status = run({ "-z", "x.lua" })
      assert.are.equal("", out)
      assert.are.equal("flame-lua: unrecognized option '-z'\nusage: flame-lua [options] [script [args]]\n",
                       err:match("^[^\n]*\n[^\n]*\n"))
      assert.are.equal(1, status)
    end)

    spec("-e without its argument is an error", function()
      local _, err, status = run({ "-e" })
      assert.are.equal("flame-lua: '-e' needs argument\n", err:match("^[^\n]*\n"))
      assert.are.equal(1, status)
    end)
  end)

  describe("REPL", function()
    spec("prints the value of an expression", function()
      local out, err, status = repl("1+1\n")
      assert.are.equal("2\n", out)
      assert.are.equal("", err)
      assert.are.equal(0, status)
    end)

    spec("prints all results, and nothing for statements", function()
      local out = repl("x = 5\nlocal y = 1\nx, 'a', nil\n=x * 2\n")
      assert.are.equal("5\ta\tnil\n10\n", out)
    end)

    spec("reads multi-line definitions until they are complete", function()
      local out, err = repl("function sq(n)\n  local r = n * n\n  return r\nend\nsq(12)\n")
      assert.are.equal("144\n", out)
      assert.are.equal("", err)
    end)

    spec("prints an expression continued over several lines", function()
      local out, err = repl("math.max(\n  3,\n  9)\n")
      assert.are.equal("9\n", out)
      assert.are.equal("", err)
    end)

    spec("reports errors with a traceback and goes on", function()
      local out, err, status = repl("error('bad')\nprint('still here')\n")
      assert.are.equal("still here\n", out)
      assert.are.equal("stdin:1: bad\nstack traceback:\n", err:sub(1, #"stdin:1: bad\nstack traceback:\n"))
      assert.are.equal(0, status)
    end)

    spec("reports an incomplete chunk at end of input", function()
      local out, err, status = repl("for i = 1, 2 do\n  print(i)\n")
      assert.are.equal("", out)
      assert.are.equal("stdin:2: 'end' expected (to close 'for' at line 1) near <eof>\n", err)
      assert.are.equal(0, status)
    end)

    spec("runs after the script given with -i", function()
      local script = tempfile("g = 21\n")
      local out = repl("g * 2\n", { script })
      assert.are.equal("42\n", out)
    end)

    spec("prints short arrays of scalars inline, other tables as usual", function()
      local out = repl("flame.ones(2, 3).shape\n{1, 'a', true}\nsetmetatable({}, {})\n")
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.are.equal("{2, 3}", lines[1])
      assert.are.equal('{1, "a", true}', lines[2])
      assert.is_truthy(lines[3]:match("^table: "))
    end)

    spec("prints tensors PyTorch-like", function()
      local out = repl("flame.tensor({{1, 2}, {3, 4}}, {dtype = 'f32'})\n")
      assert.are.equal("tensor([[1., 2.],\n        [3., 4.]], dtype=f32, device=cpu)\n", out)
    end)

    spec("prints values through __tostring", function()
      local out = repl("setmetatable({}, {__tostring = function() return 'custom' end})\n")
      assert.are.equal("custom\n", out)
    end)
  end)
end)
