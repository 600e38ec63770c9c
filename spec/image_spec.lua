-- flame.image: PNG save/load round trips, files written by PIL (spec/fixtures/gen_image.py), JPEG, resizing,
-- grid (torchvision's make_grid layout, hand-computed), and the error messages.
local H = require "spec.helper"
local flame = H.flame
local fixtures = dofile("spec/fixtures/image.lua")
local dir = "spec/fixtures/images/"
local tmp = os.tmpname()
os.remove(tmp)
local function tmpfile(name) return tmp .. "_" .. name end

-- the 8-bit quantisation of x (values in [0, 1]) as save does it, back in [0, 1]
local function quantised(x)
  return (x:double():clamp(0, 1) * 255 + 0.5):floor() / 255
end

local function bytes(t) -- [C, H, W] in [0, 1] -> flat integer list
  local out = {}
  for k, v in ipairs(H.flat((t:double() * 255):round():cpu():totable())) do out[k] = math.tointeger(v) end
  return out
end

describe("image.save and image.load (PNG)", function()
  for _, c in ipairs({1, 2, 3, 4}) do
    it("round-trips " .. c .. " channels to the 8-bit quantisation", function()
      flame.manual_seed(c)
      local x = flame.rand(c, 5, 7, {device = H.device}) * 1.2 - 0.1 -- a little outside [0, 1]: clamped
      local p = tmpfile("rt" .. c .. ".png")
      flame.image.save(p, x)
      local y = flame.image.load(p)
      os.remove(p)
      assert.are.same({c, 5, 7}, y.shape)
      assert.are.equal("f32", y.dtype)
      assert.are.same(bytes(quantised(x:cpu())), bytes(y))
    end)
  end

  it("saves [H, W] as gray and maps range -1,1", function()
    local x = flame.tensor({{-1, 0, 1}, {-0.5, 0.5, 2}}, {device = H.device, dtype = "f64"})
    local p = tmpfile("gray.png")
    flame.image.save(p, x, {range = "-1,1"})
    local y = flame.image.load(p)
    os.remove(p)
    assert.are.same({1, 2, 3}, y.shape)
    -- (x + 1) / 2 * 255 + 0.5 truncated: 0, 128, 255, 64, 191, 255
    assert.are.same({0, 128, 255, 64, 191, 255}, bytes(y))
  end)

  it("auto range picks -1,1 only when a value is negative", function()
    local p = tmpfile("auto.png")
    flame.image.save(p, flame.tensor({{0.5, 1}}, {device = H.device, dtype = "f32"}), {range = "auto"})
    assert.are.same({128, 255}, bytes(flame.image.load(p)))
    flame.image.save(p, flame.tensor({{-1, 0}}, {device = H.device, dtype = "f32"}), {range = "auto"})
    assert.are.same({0, 128}, bytes(flame.image.load(p)))
    os.remove(p)
  end)

  it("takes bf16 and f16 tensors", function()
    for _, dt in ipairs({"bf16", "f16"}) do
      local x = flame.tensor({{{0, 0.25, 0.5, 1}}}, {device = H.device, dtype = dt})
      local p = tmpfile(dt .. ".png")
      flame.image.save(p, x)
      assert.are.same({0, 64, 128, 255}, bytes(flame.image.load(p)))
      os.remove(p)
    end
  end)

  it("replaces an existing file and leaves no temporary file", function()
    local p = tmpfile("over.png")
    flame.image.save(p, flame.zeros(1, 2, 2))
    flame.image.save(p, flame.ones(1, 3, 3))
    assert.are.same({1, 3, 3}, flame.image.load(p).shape)
    os.remove(p)
    local dirpart, base = p:match("^(.*)/([^/]*)$")
    for _, e in ipairs(flame.data._listdir(dirpart)) do
      assert.is_nil(e.name:find(base .. ".tmp.", 1, true), "temporary file left: " .. e.name)
    end
  end)

  for _, name in ipairs({"gray.png", "rgb.png", "rgba.png", "palette.png"}) do
    it("loads " .. name .. " (written by PIL) with PIL's pixels", function()
      local f = fixtures[name]
      local y = flame.image.load(dir .. name)
      assert.are.same({f.c, f.h, f.w}, y.shape)
      assert.are.same(f.px, bytes(y))
    end)
  end

  it("converts channels on request", function()
    local rgb = flame.image.load(dir .. "gray.png", {channels = 3})
    assert.are.same({3, 5, 7}, rgb.shape)
    H.close(rgb[1], rgb[3], {atol = 0, rtol = 0})
    assert.are.same(fixtures["gray.png"].px, bytes(rgb[2]:unsqueeze(1)))
    -- dropping alpha drops it (as PIL's convert("RGB")), without compositing onto a background
    local f = fixtures["rgba.png"]
    local rgb3 = flame.image.load(dir .. "rgba.png", {channels = 3})
    assert.are.same({table.unpack(f.px, 1, 3 * f.h * f.w)}, bytes(rgb3))
    local rgba = flame.image.load(dir .. "rgb.png", {channels = 4})
    assert.are.same({4, 4, 6}, rgba.shape)
    assert.are.equal(1, rgba[4]:min():item())
  end)
end)

describe("image.load (JPEG)", function()
  local test = flame.image.formats().jpeg and it or pending
  test("decodes PIL's JPEG with PIL's pixels (within 1/255: one libjpeg family, any version)", function()
    for _, name in ipairs({"smooth.jpg", "gray.jpg"}) do
      local f = fixtures[name]
      local y = flame.image.load(dir .. name)
      assert.are.same({f.c, f.h, f.w}, y.shape)
      local want = flame.tensor(f.px, {dtype = "f64"}):view(f.c, f.h, f.w) / 255
      H.close(y:double(), want, {atol = 1.01 / 255, rtol = 0})
    end
  end)
  test("converts a gray JPEG to RGB and RGBA", function()
    assert.are.same({3, 16, 16}, flame.image.load(dir .. "gray.jpg", {channels = 3}).shape)
    assert.are.same({4, 16, 16}, flame.image.load(dir .. "gray.jpg", {channels = 4}).shape)
    assert.are.same({2, 16, 16}, flame.image.load(dir .. "gray.jpg", {channels = 2}).shape)
  end)
end)

describe("image.load size", function()
  it("shrinks by area averaging", function()
    local x = flame.tensor({{{0, 1, 2, 3}, {4, 5, 6, 7}}}):div(255)
    local p = tmpfile("area.png")
    flame.image.save(p, x)
    local y = flame.image.load(p, {size = {1, 2}})
    os.remove(p)
    H.close(y:double() * 255, flame.tensor({{{2.5, 4.5}}}, {dtype = "f64"}), {atol = 1e-4})
  end)
  it("grows bilinearly (align_corners false)", function()
    local x = flame.tensor({{{0, 1}}}, {dtype = "f32"})
    local p = tmpfile("up.png")
    flame.image.save(p, x)
    local y = flame.image.load(p, {size = {1, 4}})
    os.remove(p)
    H.close(y:double(), flame.tensor({{{0, 0.25, 0.75, 1}}}, {dtype = "f64"}), {atol = 1e-6})
    assert.are.same({1, 1, 1}, flame.image.load(dir .. "gray.png", {size = 1}).shape)
  end)
end)

describe("image.grid", function()
  -- make_grid: xmaps = min(nrow, B), ymaps = ceil(B / xmaps), [C, ymaps (H + p) + p, xmaps (W + p) + p]
  it("lays out a batch as torchvision's make_grid", function()
    local b = flame.arange(1, 6, {device = H.device}):float():view(5, 1, 1, 1):expand(5, 3, 2, 2):contiguous()
    local g = flame.image.grid(b, {nrow = 2, padding = 1, pad_value = -1})
    assert.are.same({3, 10, 7}, g.shape)
    local want = {}
    for r = 1, 10 do
      want[r] = {}
      for c = 1, 7 do want[r][c] = -1 end
    end
    for k = 1, 5 do
      local y, x = (k - 1) // 2, (k - 1) % 2
      for dr = 0, 1 do
        for dc = 0, 1 do want[y * 3 + 1 + dr + 1][x * 3 + 1 + dc + 1] = k end
      end
    end
    for c = 1, 3 do H.close(g[c], flame.tensor(want), {atol = 0, rtol = 0}) end
  end)

  it("takes a list, repeats one channel to three, default nrow 8 and padding 2", function()
    local imgs = {}
    for k = 1, 9 do imgs[k] = flame.full({1, 3, 4}, k, {device = H.device}) end
    local g = flame.image.grid(imgs)
    assert.are.same({3, 2 * 5 + 2, 8 * 6 + 2}, g.shape)
    assert.are.equal(9, g[2][8][3]:item())   -- image 9: row 2, column 1 -> rows 8..10, cols 3..6
    assert.are.equal(0, g[1][7][3]:item())   -- padding between the rows
    assert.are.equal(0, g[3][12][50]:item()) -- the empty cells of the last row
  end)

  it("returns a single image without padding", function()
    assert.are.same({3, 4, 5}, flame.image.grid(flame.rand(4, 5)).shape)
    assert.are.same({3, 4, 5}, flame.image.grid({flame.rand(3, 4, 5)}).shape)
  end)
end)

describe("image errors", function()
  it("save", function()
    H.errors(function() flame.image.save(tmpfile("e.png"), flame.zeros(5, 2, 2)) end,
             "image.save: needs 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels, got shape [5, 2, 2]")
    H.errors(function() flame.image.save(tmpfile("e.png"), flame.zeros(1, 1, 2, 2)) end,
             "image.save: needs [C, H, W] or [H, W], got shape [1, 1, 2, 2]")
    H.errors(function() flame.image.save(tmpfile("e.png"), flame.zeros(2, 2, {dtype = "i64"})) end,
             "image.save: needs a float tensor, got i64")
    H.errors(function() flame.image.save(tmpfile("e.png"), flame.zeros(0, 2)) end,
             "image.save: height and width must be in 1..1000000, got shape [0, 2]")
    H.errors(function() flame.image.save(tmpfile("e.png"), {}) end, "image.save: needs a tensor, got a table")
    H.errors(function() flame.image.save(tmpfile("e.png"), flame.zeros(2, 2), {range = "0,255"}) end,
             "image.save: range must be \"0,1\", \"-1,1\" or \"auto\", got 0,255")
    H.errors(function() flame.image.save(tmpfile("e.png"), flame.zeros(2, 2), {rnage = "0,1"}) end,
             "image.save: unknown option 'rnage'")
    H.errors(function() flame.image.save("/nonexistent-dir/x.png", flame.zeros(2, 2)) end,
             "image.save: cannot create a temporary file beside /nonexistent-dir/x.png")
  end)
  it("load", function()
    H.errors(function() flame.image.load("/nonexistent.png") end, "image.load: cannot open /nonexistent.png")
    H.errors(function() flame.image.load("spec/image_spec.lua") end,
             "image.load: spec/image_spec.lua is neither PNG nor JPEG")
    local p = tmpfile("trunc.png")
    local src = io.open(dir .. "rgb.png", "rb"):read("a")
    local f = io.open(p, "wb")
    f:write(src:sub(1, 60))
    f:close()
    H.errors(function() flame.image.load(p) end, "image.load: " .. p .. ": bad PNG data")
    os.remove(p)
    H.errors(function() flame.image.load(dir .. "rgb.png", {channels = 5}) end,
             "image.load: channels must be 1, 2, 3 or 4, got 5")
    H.errors(function() flame.image.load(dir .. "rgb.png", {size = 0}) end,
             "image.load: size must be a positive integer or {height, width}")
    H.errors(function() flame.image.load(dir .. "rgb.png", {resize = 4}) end, "image.load: unknown option 'resize'")
  end)
  local jpeg_test = flame.image.formats().jpeg and it or pending
  jpeg_test("load of a truncated JPEG", function()
    local p = tmpfile("trunc.jpg")
    local src = io.open(dir .. "smooth.jpg", "rb"):read("a")
    local f = io.open(p, "wb")
    f:write(src:sub(1, 20))
    f:close()
    H.errors(function() flame.image.load(p) end, "image.load: " .. p .. ": bad JPEG data")
    os.remove(p)
  end)
  it("grid", function()
    H.errors(function() flame.image.grid({}) end, "image.grid: needs at least one image")
    H.errors(function() flame.image.grid({flame.zeros(1, 2, 2), flame.zeros(1, 3, 2)}) end,
             "image.grid: image 2 has shape [1, 3, 2], image 1 has [1, 2, 2]")
    H.errors(function() flame.image.grid({flame.zeros(1, 2, 2), 3}) end, "image.grid: item 2 is a number, not a tensor")
    H.errors(function() flame.image.grid(flame.zeros(2)) end, "image.grid: needs [B, C, H, W], [C, H, W] or [H, W] images")
    H.errors(function() flame.image.grid(flame.zeros(2, 2), {nrow = 0}) end, "image.grid: nrow must be a positive integer")
    H.errors(function() flame.image.grid(flame.zeros(2, 2), {padding = -1}) end,
             "image.grid: padding must be a non-negative integer")
    H.errors(function() flame.image.grid("x") end, "image.grid: needs a tensor or a list of tensors, got a string")
  end)
end)
