-- bench/unet_torch.py (the PyTorch twin of examples/unet.lua that bench/nn/unet.py times) has flame's
-- architecture: the default preset's state dict loads into it strictly with the same parameter count, and a small
-- UNet (random weights, f64) gives flame's output. Runs bench/unet_twin_check.py with a Python that has torch and
-- safetensors ($FLAME_TORCH_PYTHON, else /work/venv-diffusers/bin/python); pending without one.
local H = require "helper"
local flame = H.flame
local lib = dofile("examples/diffusion_lib.lua")

local function python()
  for _, p in ipairs({os.getenv("FLAME_TORCH_PYTHON") or "/work/venv-diffusers/bin/python"}) do
    if os.execute(p .. " -c 'import torch, safetensors' >/dev/null 2>&1") then return p end
  end
end

describe("bench/unet_torch.py, the PyTorch twin of examples/unet.lua", function()
  it("loads flame's state dict strictly and computes the same forward", function()
    local py = python()
    if not py then return pending("no Python with torch and safetensors (set FLAME_TORCH_PYTHON)") end
    flame.manual_seed(5)
    local tensors = {}
    for k, v in pairs(lib.model(lib.PRESETS.default, 1, 10):state_dict()) do tensors["default/" .. k] = v end
    local small = lib.unet.UNet({in_channels = 1, channels = 32, mults = {1, 2}, num_res_blocks = 1, attn_res = {8},
      num_classes = 10, image_size = 16, head_dim = 16}):to("f64")
    flame.no_grad(function() -- no zero-initialised layers: every weight takes part
      for _, p in ipairs(small:parameters()) do p:copy_(flame.randn(p.shape, {dtype = "f64"}) * 0.2) end
    end)
    small:eval()
    for k, v in pairs(small:state_dict()) do tensors["small/" .. k] = v end
    local x, t = flame.randn(3, 1, 16, 16, {dtype = "f64"}), flame.tensor({3, 500, 999}, {dtype = "f64"})
    local labels = flame.tensor({1, 7, 11}, {dtype = "i64"})
    tensors.x, tensors.t, tensors.labels, tensors.out = x, t, labels, small(x, t, labels)
    local path = os.tmpname()
    flame.save(path, tensors)
    local p = io.popen(py .. " bench/unet_twin_check.py " .. path .. " 2>&1")
    local out = p:read("a")
    local ok = p:close()
    os.remove(path)
    assert.is_true(ok, out)
    local n = tonumber(out:match("^ok (%d+) "))
    assert.are.equal(lib.model(lib.PRESETS.default, 1, 10):num_parameters(), n, out)
  end)
end)
