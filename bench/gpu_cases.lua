-- The GPU benchmark cases, shared by bench/gpu.lua (flame) and, through
-- `flame-lua bench/gpu_cases.lua --json`, by bench/gpu_torch.py (PyTorch), so
-- both sides time exactly the same list.
return {
  {name = "copy f32 256M (device bandwidth)", op = "clone", shape = {256 * 1024 * 1024}, dtype = "f32", bytes = 2 * 4 * 256 * 1024 * 1024},
  {name = "sum f32 256M (CUB)", op = "sum", shape = {256 * 1024 * 1024}, dtype = "f32", bytes = 4 * 256 * 1024 * 1024},
  {name = "mean dims (2,3) of [64,512,64,64]", op = "mean", dims = {3, 4}, shape = {64, 512, 64, 64}, dtype = "f32", bytes = 4 * 64 * 512 * 64 * 64},
  {name = "mean dims (0,2) of [64,512,64,64]", op = "mean", dims = {1, 3}, shape = {64, 512, 64, 64}, dtype = "f32", bytes = 4 * 64 * 512 * 64 * 64},
  {name = "cast f32->bf16 256M", op = "cast", to = "bf16", shape = {256 * 1024 * 1024}, dtype = "f32", bytes = 6 * 256 * 1024 * 1024},
  {name = "cast bf16->f32 256M", op = "cast", to = "f32", shape = {256 * 1024 * 1024}, dtype = "bf16", bytes = 6 * 256 * 1024 * 1024},
  {name = "cast f16->f32 256M", op = "cast", to = "f32", shape = {256 * 1024 * 1024}, dtype = "f16", bytes = 6 * 256 * 1024 * 1024},
  {name = "add [8192,4096]+[4096]", op = "badd", shape = {8192, 4096}, shape2 = {4096}, dtype = "f32", bytes = 8 * 8192 * 4096},
  {name = "matmul f32 8192^3", op = "matmul", shape = {8192, 8192}, shape2 = {8192, 8192}, dtype = "f32", flops = 2 * 8192 ^ 3},
  {name = "matmul bf16 8192^3", op = "matmul", shape = {8192, 8192}, shape2 = {8192, 8192}, dtype = "bf16", flops = 2 * 8192 ^ 3},
  {name = "bmm bf16 64x512^3", op = "matmul", shape = {64, 512, 512}, shape2 = {64, 512, 512}, dtype = "bf16", flops = 2 * 64 * 512 ^ 3},
  {name = "bmm bf16 4096x64^3", op = "matmul", shape = {4096, 64, 64}, shape2 = {4096, 64, 64}, dtype = "bf16", flops = 2 * 4096 * 64 ^ 3},
  {name = "add f32 64 elements (call to return)", op = "small_add", shape = {64}, dtype = "f32", host = true},
}
