-- The interop model (its PyTorch twin is Net in spec/interop/py_check.py; change both together): every module
-- kind whose state_dict names matter, nested through Sequential and ModuleList, and a persistent buffer.
local flame = require "flame"
local nn = flame.nn

local Block = nn.Module:extend("Block")
function Block:__init()
  self.norm = nn.LayerNorm(32)
  self.attn = nn.MultiheadAttention(32, 4, {batch_first = true})
  self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
end

local Net = nn.Module:extend("Net")
function Net:__init()
  self.embed = nn.Embedding(16, 32, {padding_idx = 1})
  self.blocks = nn.ModuleList({Block(), Block()})
  self.head = nn.Linear(32, 5)
  self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, {padding = 1}), nn.GroupNorm(2, 8), nn.SiLU(),
    nn.Conv2d(8, 4, 3, {stride = 2, padding_mode = "reflect", padding = 1}), nn.Identity())
  self:register_buffer("scale", flame.tensor({0.5, 2.0, 1.0, -1.0, 3.0}))
  -- Perturb the default init (zero biases, unit norm weights) so that every entry is checked.
  flame.no_grad(function()
    for _, p in ipairs(self:parameters()) do p:add_(flame.randn(p.shape, {device = p.device}) * 0.1) end
  end)
end

function Net:forward(ids, img)
  local h = self.embed(ids)
  for _, b in ipairs(self.blocks) do
    local x = b.norm(h)
    h = h + b.attn(x, x, x)
    h = h + b.mlp(h)
  end
  return self.head(h) * self.scale, self.conv(img)
end

return Net
