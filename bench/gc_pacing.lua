-- The collector's pacing for tensor memory (src/lua/lmemory.c) under a large Lua heap: the host time of a 32 MB
-- allocation dropped at once, as a script's temporaries are. A full collection walks all of Lua's heap, a minor
-- one only what is young, so with a 47 MB heap a full collection per due point costs milliseconds a call.
--   flame-lua bench/gc_pacing.lua [device]        (device: cpu or cuda; default cpu)
local device = arg and arg[1] or "cpu"
local big = {}
for i = 1, 300000 do big[i] = {i, tostring(i)} end -- an old heap, as a game's or an editor's state would be
collectgarbage(); collectgarbage()
local keep = flame.empty(8 * 1024 * 1024, {device = device}) -- 32 MB live
local n = 400
local t0 = flame.timer()
for _ = 1, n do local _ = flame.empty(8 * 1024 * 1024, {device = device}) end
print(string.format("%s: %.1f us per 32 MB allocation dropped at once (Lua heap %.0f KB, %.0f MB of tensors in use)",
  device, (flame.timer() - t0) / n * 1e6, collectgarbage("count"), flame.memory_stats(device).allocated / 2 ^ 20))
keep, big = nil, nil
