-- flame.image: load (PNG, JPEG), save (PNG) and grid (torchvision's make_grid). The codecs are libpng and
-- libjpeg-turbo, called from src/lua/limage.c; this file holds the options, resizing and the grid layout.
local flame = ...
local image = flame.image
local check_opts, shape_str = flame.data._check_opts, flame.data._shape_str

-- load(path, {size, channels}) -> [C, H, W] f32 in [0, 1] on the CPU. channels (1 gray, 2 gray+alpha, 3 RGB,
-- 4 RGBA) converts through the decoder; by default the file's own count. size (n or {h, w}) resizes: when neither
-- side grows, by area averaging (F.adaptive_avg_pool2d, PyTorch's interpolate mode "area"); otherwise bilinearly
-- (F.interpolate, align_corners false, no antialiasing).
function image.load(path, opts)
  opts = check_opts("image.load", opts, {size = true, channels = true})
  if type(path) ~= "string" then error("image.load: path must be a string, got a " .. type(path), 2) end
  local c = opts.channels
  if c ~= nil and (math.type(c) ~= "integer" or c < 1 or c > 4) then
    error("image.load: channels must be 1, 2, 3 or 4, got " .. tostring(c), 2)
  end
  local ok, t = pcall(image._load, path, c)
  if not ok then error(t, 2) end
  local size = opts.size
  if size == nil then return t end
  local h, w
  if type(size) == "number" then h, w = size, size
  elseif type(size) == "table" then h, w = size[1], size[2] end
  if math.type(h) ~= "integer" or math.type(w) ~= "integer" or h < 1 or w < 1 then
    error("image.load: size must be a positive integer or {height, width}, got " .. tostring(size), 2)
  end
  local H, W = t.shape[2], t.shape[3]
  if h == H and w == W then return t end
  local x = t:unsqueeze(1)
  if h <= H and w <= W then x = flame.F.adaptive_avg_pool2d(x, {h, w})
  else x = flame.F.interpolate(x, {size = {h, w}, mode = "bilinear", align_corners = false}):clamp(0, 1) end
  return x:squeeze(1)
end

local ranges = {["0,1"] = 0, ["-1,1"] = 1}

-- save(path, t, {range = "0,1" | "-1,1" | "auto"}): PNG from [C, H, W] (C = 1, 2, 3, 4) or [H, W], any float
-- dtype, any device. Values are mapped from range to [0, 255], clamped and rounded (x * 255 + 0.5 truncated, as
-- torchvision's save_image). "auto" takes "-1,1" when some value is below 0, else "0,1". Written atomically
-- (temporary file in the same folder, fsync, rename).
function image.save(path, t, opts)
  opts = check_opts("image.save", opts, {range = true})
  if type(path) ~= "string" then error("image.save: path must be a string, got a " .. type(path), 2) end
  if not flame.is_tensor(t) then error("image.save: needs a tensor, got a " .. type(t), 2) end
  local r = opts.range or "0,1"
  if r == "auto" then
    r = (t:numel() > 0 and t:detach():min():item() < 0) and "-1,1" or "0,1"
  end
  if ranges[r] == nil then
    error("image.save: range must be \"0,1\", \"-1,1\" or \"auto\", got " .. tostring(opts.range), 2)
  end
  local ok, err = pcall(image._save_png, path, t, ranges[r])
  if not ok then error(err, 2) end
end

-- grid(list_or_batch, {nrow = 8, padding = 2, pad_value = 0}): torchvision.utils.make_grid's layout. A list of
-- [C, H, W] tensors (equal shapes) or a [B, C, H, W] batch; [H, W] and [C, H, W] alone are a batch of one. One
-- channel is repeated to three. A batch of one is returned as it is (no padding), as make_grid does. Otherwise
-- the grid is [C, ymaps * (H + p) + p, xmaps * (W + p) + p] with xmaps = min(nrow, B), ymaps = ceil(B / xmaps),
-- filled with pad_value, image k at row (k - 1) // xmaps and column (k - 1) % xmaps.
function image.grid(x, opts)
  opts = check_opts("image.grid", opts, {nrow = true, padding = true, pad_value = true})
  local nrow, padding, pad_value = opts.nrow or 8, opts.padding or 2, opts.pad_value or 0
  if math.type(nrow) ~= "integer" or nrow < 1 then
    error("image.grid: nrow must be a positive integer, got " .. tostring(nrow), 2)
  end
  if math.type(padding) ~= "integer" or padding < 0 then
    error("image.grid: padding must be a non-negative integer, got " .. tostring(padding), 2)
  end
  if type(pad_value) ~= "number" then error("image.grid: pad_value must be a number, got a " .. type(pad_value), 2) end
  local t
  if flame.is_tensor(x) then t = x
  elseif type(x) == "table" then
    if #x == 0 then error("image.grid: needs at least one image", 2) end
    for k, v in ipairs(x) do
      if not flame.is_tensor(v) then error(string.format("image.grid: item %d is a %s, not a tensor", k, type(v)), 2) end
      if shape_str(v) ~= shape_str(x[1]) then
        error(string.format("image.grid: image %d has shape %s, image 1 has %s", k, shape_str(v),
                            shape_str(x[1])), 2)
      end
    end
    t = flame.stack(x, 1)
  else
    error("image.grid: needs a tensor or a list of tensors, got a " .. type(x), 2)
  end
  local nd = t:dim()
  if nd == 2 then t = t:unsqueeze(1) nd = 3 end
  if nd == 3 then
    if t.shape[1] == 1 then t = flame.cat({t, t, t}, 1) end
    t = t:unsqueeze(1)
  elseif nd == 4 then
    if t.shape[2] == 1 then t = flame.cat({t, t, t}, 2) end
  else
    error("image.grid: needs [B, C, H, W], [C, H, W] or [H, W] images, got shape " .. shape_str(t), 2)
  end
  local B = t.shape[1]
  if B == 1 then return t:squeeze(1) end
  local C, H, W = t.shape[2], t.shape[3] + padding, t.shape[4] + padding
  local xmaps = math.min(nrow, B)
  local ymaps = (B + xmaps - 1) // xmaps
  local g = flame.full({C, H * ymaps + padding, W * xmaps + padding}, pad_value, {dtype = t.dtype, device = t.device})
  flame.no_grad(function()
    for k = 1, B do
      local y, xx = (k - 1) // xmaps, (k - 1) % xmaps
      g:narrow(2, y * H + padding + 1, H - padding):narrow(3, xx * W + padding + 1, W - padding):copy_(t[k])
    end
  end)
  return g
end
