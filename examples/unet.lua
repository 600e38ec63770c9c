-- A small class-conditional UNet for diffusion, built from flame.nn (the DDPM / ADM layout, scaled down):
--   * residual blocks: GroupNorm, SiLU, 3x3 conv, the embedding added per channel, GroupNorm, SiLU, dropout, 3x3 conv
--     (zero-initialised, so each block starts as the identity), a 1x1 conv on the skip when the width changes;
--   * self-attention blocks (flame.nn.MultiheadAttention over the H*W positions) at the resolutions listed in
--     `attn_res`;
--   * a sinusoidal timestep embedding through a two-layer MLP;
--   * a class embedding with one extra row, the null class (`num_classes + 1`), which training draws with
--     probability p (label dropout) and classifier-free guidance uses as the unconditional input.
--   local UNet = dofile("examples/unet.lua")
--   local net = UNet({in_channels = 1, channels = 64, mults = {1, 2, 2}, num_res_blocks = 2, attn_res = {8},
--                     num_classes = 10, image_size = 32})
--   local out = net(x, t, labels)   -- x [B, C, H, W], t [B] (timesteps, any float dtype), labels [B] i64 1-based
local flame = require "flame"
local nn, F = flame.nn, flame.F

local M = {}

-- The sinusoidal embedding of diffusion timesteps (diffusers' get_timestep_embedding with flip_sin_to_cos and
-- downscale_freq_shift = 0, as its UNet2DModel uses): [cos(t w_k), sin(t w_k)], w_k = 10000^(-k / half).
function M.timestep_embedding(t, dim)
  local half = dim // 2
  local k = flame.arange(0, half, 1, {device = t.device})
  local freqs = (k * (-math.log(10000) / half)):exp()
  local args = t:float():unsqueeze(2) * freqs:unsqueeze(1)
  return flame.cat({args:cos(), args:sin()}, 2)
end

local function zero_(m)
  flame.no_grad(function()
    m.weight:zero_()
    if m.bias then m.bias:zero_() end
  end)
  return m
end

-- GroupNorm with the largest group count that divides c and `groups` (the decoder's concatenated widths vary).
local function gcd(a, b) while b ~= 0 do a, b = b, a % b end return a end
local function norm(c, groups) return nn.GroupNorm(gcd(c, groups), c) end

local ResBlock = nn.Module:extend("ResBlock")
M.ResBlock = ResBlock
function ResBlock:__init(cin, cout, emb_dim, o)
  self.norm1 = norm(cin, o.groups)
  self.conv1 = nn.Conv2d(cin, cout, 3, {padding = 1})
  self.emb = nn.Linear(emb_dim, cout)
  self.norm2 = norm(cout, o.groups)
  self.dropout = nn.Dropout(o.dropout)
  self.conv2 = zero_(nn.Conv2d(cout, cout, 3, {padding = 1}))
  if cin ~= cout then self.skip = nn.Conv2d(cin, cout, 1) end
end
-- forward(x, emb, emb_silu?): emb_silu, when given, is emb:silu() (the UNet computes it once for all its blocks)
-- Without autograd (sampling, evaluation) the two adds go in place into h, a tensor this block made: one
-- temporary fewer each, the same sums (a + b is b + a).
function ResBlock:forward(x, emb, emb_silu)
  local h = self.conv1(self.norm1:forward_silu(x)) -- norm1(x):silu() in one pass for inference
  local e = self.emb(emb_silu or emb:silu())
  e = e:view(e:size(1), e:size(2), 1, 1)
  local in_place = not flame.is_grad_enabled()
  if in_place then h:add_(e) else h = h + e end
  h = self.conv2(self.dropout(self.norm2:forward_silu(h)))
  local s = self.skip and self.skip(x) or x
  if in_place then return h:add_(s) end
  return s + h
end

local AttnBlock = nn.Module:extend("AttnBlock")
M.AttnBlock = AttnBlock
function AttnBlock:__init(c, o)
  self.norm = norm(c, o.groups)
  self.attn = nn.MultiheadAttention(c, math.max(1, c // o.head_dim))
  zero_(self.attn.out_proj) -- the block starts as the identity
end
function AttnBlock:forward(x)
  local B, C, H, W = x:size(1), x:size(2), x:size(3), x:size(4)
  local h = self.norm(x):view(B, C, H * W):transpose(2, 3) -- [B, HW, C]
  h = self.attn(h, h, h)
  return x + h:transpose(2, 3):reshape(B, C, H, W)
end

local Down = nn.Module:extend("Downsample")
function Down:__init(c) self.conv = nn.Conv2d(c, c, 3, {stride = 2, padding = 1}) end
function Down:forward(x) return self.conv(x) end

local Up = nn.Module:extend("Upsample2x")
function Up:__init(c) self.conv = nn.Conv2d(c, c, 3, {padding = 1}) end
function Up:forward(x) return self.conv(F.interpolate(x, {scale_factor = 2, mode = "nearest"})) end

local DEFAULTS = {in_channels = 1, channels = 64, mults = {1, 2, 2}, num_res_blocks = 2, attn_res = {8},
                  num_classes = 10, image_size = 32, dropout = 0, groups = 32, head_dim = 64}

local UNet = nn.Module:extend("UNet")
M.UNet = UNet

-- UNet(opts): opts as DEFAULTS. num_classes = 0 makes an unconditional model (labels are ignored).
function UNet:__init(opts)
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do
    if DEFAULTS[k] == nil then error("UNet: unknown option '" .. tostring(k) .. "'", 3) end
    o[k] = v
  end
  local size = o.image_size
  if size % (2 ^ (#o.mults - 1)) ~= 0 then
    error(string.format("UNet: image_size %d is not divisible by 2^%d (%d levels)", size, #o.mults - 1, #o.mults), 3)
  end
  self.config = o
  local ch, emb_dim = o.channels, 4 * o.channels
  local attn_at = {}
  for _, r in ipairs(o.attn_res) do attn_at[r] = true end

  self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
  if o.num_classes > 0 then self.class_emb = nn.Embedding(o.num_classes + 1, emb_dim) end
  self.conv_in = nn.Conv2d(o.in_channels, ch, 3, {padding = 1})

  -- The encoder: per level num_res_blocks blocks (attention after each at the listed resolutions), then a strided
  -- conv except at the last level. `skips` records the width of every activation the decoder concatenates.
  local down, skips, c, res = {}, {ch}, ch, size
  for level, mult in ipairs(o.mults) do
    local cout = ch * mult
    for _ = 1, o.num_res_blocks do
      down[#down + 1] = ResBlock(c, cout, emb_dim, o)
      c = cout
      if attn_at[res] then down[#down + 1] = AttnBlock(c, o) end
      skips[#skips + 1] = c
    end
    if level < #o.mults then
      down[#down + 1] = Down(c)
      skips[#skips + 1] = c
      res = res // 2
    end
  end
  self.down = nn.ModuleList(down)
  self.mid = nn.ModuleList({ResBlock(c, c, emb_dim, o), AttnBlock(c, o), ResBlock(c, c, emb_dim, o)})

  -- The decoder mirrors it with one more block per level, each taking one skip.
  local up = {}
  for level = #o.mults, 1, -1 do
    local cout = ch * o.mults[level]
    for _ = 1, o.num_res_blocks + 1 do
      up[#up + 1] = ResBlock(c + table.remove(skips), cout, emb_dim, o)
      c = cout
      if attn_at[res] then up[#up + 1] = AttnBlock(c, o) end
    end
    if level > 1 then
      up[#up + 1] = Up(c)
      res = res * 2
    end
  end
  self.up = nn.ModuleList(up)
  self.norm_out = norm(c, o.groups)
  self.conv_out = zero_(nn.Conv2d(c, o.in_channels, 3, {padding = 1}))
end

local function run(m, h, emb, emb_silu)
  if getmetatable(m) == ResBlock then return m(h, emb, emb_silu) end
  return m(h)
end

-- forward(x [B, C, H, W], t [B], labels [B] i64 (1-based; num_classes + 1 is the null class)) -> [B, C, H, W]
function UNet:forward(x, t, labels)
  local emb = self.time_mlp(M.timestep_embedding(t, self.config.channels):to(x.dtype))
  if self.class_emb then
    if not labels then error("UNet: a class-conditional model needs labels (num_classes + 1 for none)", 2) end
    emb = emb + self.class_emb(labels)
  end
  local emb_silu = emb:silu() -- every block's embedding projection reads it
  local h = self.conv_in(x)
  local hs = {h}
  for _, m in ipairs(self.down) do
    h = run(m, h, emb, emb_silu)
    if getmetatable(m) ~= AttnBlock then hs[#hs + 1] = h else hs[#hs] = h end
  end
  for _, m in ipairs(self.mid) do h = run(m, h, emb, emb_silu) end
  for _, m in ipairs(self.up) do
    if getmetatable(m) == ResBlock then h = m(flame.cat({h, table.remove(hs)}, 2), emb, emb_silu)
    else h = m(h) end
  end
  return self.conv_out(self.norm_out:forward_silu(h))
end

-- Multiply-adds of one forward pass for one image, counted over convolutions, linears and attention matmuls
-- (norms and elementwise ops are memory-bound and left out). A training step costs about 3x this per image.
function UNet:macs()
  local o, total = self.config, 0
  local function conv(cin, cout, k, hw) total = total + cin * cout * k * k * hw end
  -- Count by walking the same structure with resolutions: rebuild the per-block resolution list.
  local res = o.image_size
  conv(o.in_channels, o.channels, 3, res * res)
  local function block(m, r)
    if getmetatable(m) == ResBlock then
      conv(m.conv1.in_channels, m.conv1.out_channels, 3, r * r)
      conv(m.conv2.in_channels, m.conv2.out_channels, 3, r * r)
      if m.skip then conv(m.skip.in_channels, m.skip.out_channels, 1, r * r) end
    elseif getmetatable(m) == AttnBlock then
      local c, n = m.attn.embed_dim, r * r
      total = total + 4 * n * c * c + 2 * n * n * c
    elseif getmetatable(m) == Down then
      conv(m.conv.in_channels, m.conv.out_channels, 3, (r // 2) * (r // 2))
      return r // 2
    else -- Up
      conv(m.conv.in_channels, m.conv.out_channels, 3, (2 * r) * (2 * r))
      return 2 * r
    end
    return r
  end
  for _, m in ipairs(self.down) do res = block(m, res) end
  for _, m in ipairs(self.mid) do res = block(m, res) end
  for _, m in ipairs(self.up) do res = block(m, res) end
  conv(self.conv_out.in_channels, o.in_channels, 3, res * res)
  return total
end

setmetatable(M, {__call = function(_, opts) return UNet(opts) end})
return M
