-- Training-step cases of issue 8 (names match bench/nn/train.py): one whole step per timed call, the model, batch
-- and dtype as PyTorch's eager twin.
--   mlp: 64 -> 256 -> 256 -> 64 with GELU, MSE loss against a fixed target, AdamW; f32.
--   transformer block: pre-norm (LayerNorm, qkv Linear, scaled_dot_product_attention with 16 heads, out
--   projection, residual; LayerNorm, Linear 1024 -> 4096, GELU, Linear 4096 -> 1024, residual) on [8, 1024,
--   1024]; f32 parameters, the forward under flame.autocast("bf16"), the backward from a fixed upstream gradient
--   outside it (as torch.autocast is used), AdamW on the f32 parameters.
local function mlp_step(flame)
  local nn, F = flame.nn, flame.F
  local model = nn.Sequential(nn.Linear(64, 256, {device = "cuda"}), nn.GELU(), nn.Linear(256, 256, {device = "cuda"}),
    nn.GELU(), nn.Linear(256, 64, {device = "cuda"}))
  local opt = flame.optim.AdamW(model:parameters(), {lr = 1e-3})
  local x = flame.randn(128, 64, {device = "cuda"})
  local y = flame.randn(128, 64, {device = "cuda"})
  return function()
    opt:zero_grad()
    F.mse_loss(model(x), y):backward()
    opt:step()
  end
end

local function block_class(flame)
  local nn, F = flame.nn, flame.F
  local Block = nn.Module:extend("Block")
  function Block:__init(E, H, FF)
    local o = {device = "cuda"}
    self.heads = H
    self.ln1, self.qkv, self.proj = nn.LayerNorm(E, o), nn.Linear(E, 3 * E, o), nn.Linear(E, E, o)
    self.ln2, self.fc1, self.fc2 = nn.LayerNorm(E, o), nn.Linear(E, FF, o), nn.Linear(FF, E, o)
  end
  function Block:forward(x)
    local B, S, E = x:size(1), x:size(2), x:size(3)
    local H = self.heads
    local qkv = self.qkv(self.ln1(x)):reshape(B, S, 3, H, E // H):permute(3, 1, 4, 2, 5) -- [3, B, H, S, D]
    local a = F.scaled_dot_product_attention(qkv[1], qkv[2], qkv[3])
    x = x + self.proj(a:transpose(2, 3):reshape(B, S, E))
    return x + self.fc2(self.fc1(self.ln2(x)):gelu())
  end
  return Block
end

local function block_step(flame)
  local Block = block_class(flame)
  local model = Block(1024, 16, 4096)
  local opt = flame.optim.AdamW(model:parameters(), {lr = 1e-4})
  local x = flame.randn(8, 1024, 1024, {device = "cuda"})
  local g = flame.randn(8, 1024, 1024, {device = "cuda"})
  return function()
    opt:zero_grad()
    local y = flame.autocast("bf16", function() return model(x) end)
    y:backward(g)
    opt:step()
  end
end

return {
  {name = "mlp train step f32 b128", target = 1.0, iters = 50, setup = mlp_step},
  {name = "transformer block bf16 autocast [8,1024,1024]", target = 1.0, iters = 5, setup = block_step},
}
