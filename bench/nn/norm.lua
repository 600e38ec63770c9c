-- Norm cases for bench/nn.lua (names match bench/nn/norm.py). fwd+bwd: the forward and autograd.grad of x,
-- weight and bias for a fixed upstream gradient (no .grad accumulation on either side).
local function case(name, target, dt, shape, op)
  return {name = name, target = target, setup = function(flame)
    local F = flame.F
    local o = {dtype = dt, device = "cuda"}
    local x = flame.randn(shape, o)
    local c = op == "group" and shape[2] or shape[#shape]
    local w, b = flame.randn({c}, o), flame.randn({c}, o)
    local g = flame.randn(shape, o)
    x.requires_grad, w.requires_grad, b.requires_grad = true, true, true
    if op == "layer" then
      return function() flame.autograd.grad(F.layer_norm(x, {c}, w, b), {x, w, b}, g) end
    elseif op == "rms" then
      return function() flame.autograd.grad(F.rms_norm(x, {c}, w), {x, w}, g) end
    end
    return function() flame.autograd.grad(F.group_norm(x, 32, w, b), {x, w, b}, g) end
  end}
end

return {
  case("layer_norm fwd+bwd f32 [8192,1024]", 1.0, "f32", {8192, 1024}, "layer"),
  case("layer_norm fwd+bwd bf16 [8192,1024]", 1.0, "bf16", {8192, 1024}, "layer"),
  case("group_norm fwd+bwd bf16 [32,256,64,64] g32", 1.0, "bf16", {32, 256, 64, 64}, "group"),
  case("rms_norm fwd+bwd bf16 [8192,1024]", nil, "bf16", {8192, 1024}, "rms"),
}
