-- The Fashion-MNIST classifier of examples/classify.lua, whose penultimate features examples/score.lua uses for a
-- Fréchet distance (an FID whose feature net we train ourselves). Input: [B, 1, 32, 32] in [-1, 1], the form
-- examples/train.lua feeds its UNet. Three stages of 3x3 conv, GroupNorm, SiLU and 2x2 max-pool (32 -> 64 -> 128
-- channels, 32x32 -> 4x4), then Linear 2048 -> 128 and SiLU (the features), dropout and Linear 128 -> 10.
--   local Net = dofile("examples/classifier_net.lua")
--   local net = Net()              -- or Net({features = 128, num_classes = 10, dropout = 0.3})
--   local logits = net(x)          -- [B, 10]
--   local f = net:features(x)      -- [B, 128]
local flame = require "flame"
local nn, F = flame.nn, flame.F

local Net = nn.Module:extend("FashionClassifier")

local DEFAULTS = {in_channels = 1, widths = {32, 64, 128}, image_size = 32, features = 128, num_classes = 10,
                  dropout = 0.3, groups = 8}

function Net:__init(opts)
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do
    if DEFAULTS[k] == nil then error("classifier_net: unknown option '" .. tostring(k) .. "'", 3) end
    o[k] = v
  end
  self.config = o
  local convs, norms, c = {}, {}, o.in_channels
  for i, w in ipairs(o.widths) do
    convs[i], norms[i] = nn.Conv2d(c, w, 3, {padding = 1}), nn.GroupNorm(o.groups, w)
    c = w
  end
  local side = o.image_size >> #o.widths
  self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
  self.fc = nn.Linear(c * side * side, o.features)
  self.dropout = nn.Dropout(o.dropout)
  self.head = nn.Linear(o.features, o.num_classes)
end

-- The penultimate layer: [B, features], what the Fréchet distance compares.
function Net:features(x)
  local h = x
  for i, conv in ipairs(self.convs) do h = F.max_pool2d(self.norms[i](conv(h)):silu(), 2) end
  return self.fc(h:reshape(h:size(1), -1)):silu()
end

function Net:forward(x) return self.head(self.dropout(self:features(x))) end

return Net
