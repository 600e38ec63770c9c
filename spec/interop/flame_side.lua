-- Interop step 2 (scripts/interop.sh), the flame side. Usage: flame-lua spec/interop/flame_side.lua DIR [device]
-- (a) loads DIR/py.safetensors to the device, writes each tensor as DIR/a_<name>.npy (bf16 widened to f32, which
--     is exact; NumPy has no bf16) and the whole table back as DIR/a_roundtrip.safetensors with its metadata;
-- (b) writes DIR/flame.safetensors: spec/interop/values.lua's tensors (the Python side rebuilds them from the same
--     formulas) and seeded random ones (a transposed, non-contiguous one among them), each random one also as
--     DIR/b_<name>.npy;
-- (c) builds spec/interop/model.lua's Net (seeded init, eval mode), writes its state_dict to DIR/model.safetensors
--     and the inputs and outputs of one forward to DIR/model_io.safetensors (ids 0-based there, for PyTorch).
local flame = require "flame"
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local dir, device = assert(arg[1], "usage: flame_side.lua DIR [device]"), arg[2] or "cpu"

local function npy(path, t) -- the reference copy goes through the host: only the safetensors paths are under test
  if t.dtype == "bf16" then t = t:float() end
  flame.save_npy(path, t:cpu())
end

-- (a)
local ts, meta = flame.load(dir .. "/py.safetensors", {device = device})
local n = 0
for name, t in pairs(ts) do
  assert(t.device:find(device, 1, true) == 1, name .. " loaded on " .. t.device .. ", not " .. device)
  npy(string.format("%s/a_%s.npy", dir, name), t)
  n = n + 1
end
flame.save(dir .. "/a_roundtrip.safetensors", ts, meta)
print(string.format("flame_side (a): loaded %d tensors on %s, metadata format=%s", n, device, tostring(meta.format)))

-- (b)
flame.manual_seed(7)
local out = dofile(here .. "/values.lua")(device)
local random = {
  r_f32 = flame.randn(17, 31, {device = device}),
  r_f32_t = flame.randn(6, 9, {device = device}):t(),
  r_f64 = flame.randn(4, 4, 4, {dtype = "f64", device = device}),
  r_bf16 = flame.randn(33, 3, {dtype = "bf16", device = device}),
  r_f16 = flame.randn(100, {dtype = "f16", device = device}),
  r_i64 = flame.randint(-1000000, 1000000, {7, 3}, {dtype = "i64", device = device}),
}
for name, t in pairs(random) do
  out[name] = t
  npy(string.format("%s/b_%s.npy", dir, name), t)
end
out.scalar = flame.tensor(2.5, {device = device})
flame.save(dir .. "/flame.safetensors", out, {writer = "flame", device = device})
print("flame_side (b): wrote flame.safetensors")

-- (c)
flame.manual_seed(3)
local Net = dofile(here .. "/model.lua")
local net = Net()
net:to(device)
net:eval()
local ids = flame.randint(1, 17, {2, 6}, {dtype = "i64", device = device}) -- 1-based
local img = flame.randn(2, 3, 8, 8, {device = device})
local y_tok, y_img = flame.no_grad(function() return net(ids, img) end)
flame.save(dir .. "/model.safetensors", net:state_dict())
flame.save(dir .. "/model_io.safetensors", {ids0 = ids - 1, img = img, y_tok = y_tok, y_img = y_img})
local keys = net:state_dict_keys()
print(string.format("flame_side (c): saved %d state_dict entries (%s ... %s)", #keys, keys[1], keys[#keys]))
