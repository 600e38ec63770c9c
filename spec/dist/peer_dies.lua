-- Run by scripts/gpu-dist.sh as two plain processes (no launcher, which would stop rank 0 itself): rank 1 exits
-- right after init; rank 0's collectives must end in a clear error within FLAME_DIST_TIMEOUT, not hang.
local D = flame.distributed
D.init({timeout = 60})
if D.get_rank() == 1 then os.exit(3) end
local ok, err = pcall(function()
  for _ = 1, 50 do D.all_reduce(flame.ones(1 << 20, {device = D.device()})) end
  D.barrier()
end)
print(ok and "NO ERROR: rank 0 did not notice its peer's death" or ("peer error: " .. tostring(err)))
os.exit(ok and 1 or 0)
