-- flame.utils.save_training_state / load_training_state: a run that saves after N steps, loads into fresh objects
-- and runs M more gives bit-identical weights, optimizer state, EMA and LR to N + M straight steps (the data and
-- dropout draw from the generator, so its state must come back too); values keep their Lua types; errors.
local H = require "helper"
local flame = H.flame
local nn = flame.nn
local optim = flame.optim
local U = flame.utils

local path = os.tmpname()
local EXACT = {atol = 0, rtol = 0}

-- A model with dropout (draws from the generator), AdamW, an EMA, a warmup-cosine schedule and a step count.
local function setup(seed)
  flame.manual_seed(seed)
  local model = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Dropout(0.2), nn.Linear(16, 3))
  model:to(H.device)
  local opt = optim.AdamW(model:parameters(), {lr = 3e-3, weight_decay = 0.05})
  local sched = optim.lr_scheduler.cosine_with_warmup(opt, {warmup_steps = 2, total_steps = 10})
  local ema = optim.EMA(model, 0.9, {warmup = true})
  return {model = model, optimizer = opt, scheduler = sched, ema = ema, step = 0}
end

local function train(s, n)
  for _ = 1, n do
    local x = flame.randn(8, 6, {device = H.device})
    local y = flame.randn(8, 3, {device = H.device})
    s.optimizer:zero_grad()
    flame.F.mse_loss(s.model(x), y):backward()
    s.optimizer:step()
    s.scheduler:step()
    s.ema:update()
    s.step = s.step + 1
  end
end

local function same_state(a, b)
  for name, p in a.model:named_parameters() do H.close(p, b.model[name] or b.model:state_dict()[name], EXACT, name) end
  local sa, sb = a.optimizer:state_dict().state, b.optimizer:state_dict().state
  for i, e in pairs(sa) do
    assert.are.equal(e.step, sb[i].step)
    H.close(e.exp_avg, sb[i].exp_avg, EXACT, "exp_avg " .. i)
    H.close(e.exp_avg_sq, sb[i].exp_avg_sq, EXACT, "exp_avg_sq " .. i)
  end
  for i, t in ipairs(a.ema.shadow_params) do H.close(t, b.ema.shadow_params[i], EXACT, "ema " .. i) end
  assert.are.same(a.scheduler:get_last_lr(), b.scheduler:get_last_lr())
  assert.are.equal(a.step, b.step)
end

describe("flame.utils training state", function()
  after_each(function() os.remove(path) end)

  it("resumes bit-exactly: N steps, save, load into fresh objects, M steps == N + M steps", function()
    local straight = setup(1)
    train(straight, 7)

    local first = setup(1)
    train(first, 4)
    U.save_training_state(path, {model = first.model, optimizer = first.optimizer, scheduler = first.scheduler,
      ema = first.ema, step = first.step, note = "run 1"})
    train(first, 2) -- the generator moves on; the load must bring it back

    local resumed = setup(99) -- other initial weights and generator state
    local saved = U.load_training_state(path, {model = resumed.model, optimizer = resumed.optimizer,
      scheduler = resumed.scheduler, ema = resumed.ema}, {device = H.device})
    resumed.step = saved.step
    assert.are.equal("run 1", saved.note)
    assert.are.equal(4, resumed.step)
    train(resumed, 3)
    same_state(straight, resumed)
  end)

  it("keeps Lua types: integers, floats (bit-exact, inf and nan), strings, booleans, integer keys, tensors", function()
    local t = H.t({{1.5, -2}, {0.25, 3}})
    U.save_training_state(path, {extra = {n = 3, x = 0.1, big = math.maxinteger, tiny = 5e-324, inf = -math.huge,
      nan = 0 / 0, s = 'quote " and\nnewline \1', yes = true, no = false, [1] = "one", [10] = {t, t}, empty = {}}})
    local got = U.load_training_state(path).extra
    assert.are.equal("integer", math.type(got.n)); assert.are.equal(3, got.n)
    assert.are.equal("float", math.type(got.x)); assert.are.equal(0.1, got.x)
    assert.are.equal(math.maxinteger, got.big)
    assert.are.equal(5e-324, got.tiny)
    assert.are.equal(-math.huge, got.inf)
    assert.is_true(got.nan ~= got.nan)
    assert.are.equal('quote " and\nnewline \1', got.s)
    assert.is_true(got.yes); assert.is_false(got.no)
    assert.are.equal("one", got[1])
    H.close(got[10][1], {{1.5, -2}, {0.25, 3}}, EXACT)
    H.close(got[10][2], {{1.5, -2}, {0.25, 3}}, EXACT)
    assert.are.same({}, got.empty)
    -- the tensors are readable by name with flame.load (and Python's safetensors)
    local ts = flame.load(path)
    assert.is_not_nil(ts["extra/10/1"])
    assert.is_not_nil(ts["extra/10/2"])
  end)

  it("names what it cannot save or load", function()
    H.errors(function() U.save_training_state(path, {f = print}) end, "save_training_state: f: cannot save a function")
    H.errors(function() U.save_training_state(path, {rng = 1}) end, "save_training_state: 'rng' is reserved")
    H.errors(function() U.save_training_state(path, {t = {[true] = 1}}) end,
      "save_training_state: t: keys must be strings or integers, got a boolean key")
    local loop = {}
    loop.self = loop
    H.errors(function() U.save_training_state(path, {loop = loop}) end, "save_training_state: loop/self: a table that contains itself")
    flame.save(path, {w = flame.zeros(2)})
    H.errors(function() U.load_training_state(path) end, "has no flame.training_state metadata (not a training state)")
    U.save_training_state(path, {step = 1})
    local s = setup(1)
    H.errors(function() U.load_training_state(path, {model = s.model}) end, "load_training_state: ", "has no entry 'model'")
  end)
end)
