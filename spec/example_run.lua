-- What the specs of the example scripts share (spec/train_example_spec.lua, spec/score_example_spec.lua): running
-- examples/<script> through the flame-lua binary ($FLAME_LUA) and finding Fashion-MNIST.
local M = {}

M.exe = os.getenv("FLAME_LUA") or "build/flame-lua"

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

function M.slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function M.shquote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

function M.have_data()
  local env = os.getenv("FLAME_DATASETS")
  return (env and M.exists(env .. "/fashion-mnist/train-images-idx3-ubyte.gz"))
    or M.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
end

-- run(script, args, launcher): runs examples/<script> with the arguments on 2 threads, through flame-lua's
-- launcher when `launcher` lists its options (e.g. {"--nproc", "1"}); returns stdout, stderr, exit status.
function M.run(script, args, launcher)
  local out, err = os.tmpname(), os.tmpname()
  local words = {M.shquote(M.exe)}
  for _, a in ipairs(launcher or {}) do words[#words + 1] = M.shquote(a) end
  words[#words + 1] = "examples/" .. script
  for _, a in ipairs(args) do words[#words + 1] = M.shquote(a) end
  local p = assert(io.popen("FLAME_NUM_THREADS=2 " .. table.concat(words, " ") .. " >" .. M.shquote(out) .. " 2>" ..
    M.shquote(err) .. "; echo $?"))
  local status = tonumber(p:read("a"):match("%d+"))
  p:close()
  local o, e = M.slurp(out), M.slurp(err)
  os.remove(out); os.remove(err)
  return o, e, status
end

-- specs(it, pending) -> spec(name, fn, needs_data): an `it` that is pending without the binary or (unless
-- needs_data == false) the data. busted's it and pending live in the spec file's environment: pass them.
function M.specs(it, pending)
  return function(name, fn, needs_data)
    it(name, function()
      if not M.exists(M.exe) then return pending(M.exe .. " not built (set FLAME_LUA)") end
      if needs_data ~= false and not M.have_data() then return pending("no Fashion-MNIST (dataset-fashion-mnist)") end
      fn()
    end)
  end
end

return M
