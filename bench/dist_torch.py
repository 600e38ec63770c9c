"""The PyTorch side of bench/dist.lua, run under torch.distributed.run (python3 -m torch.distributed.run
--nproc_per_node 2 bench/dist_torch.py): the same case names, NCCL, rank 0 prints the JSON lines."""
import json, os, time

import torch
import torch.distributed as dist
import torch.nn.functional as F


def main():
    dist.init_process_group("nccl")
    r = dist.get_rank()
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", r)))
    torch.cuda.set_device(dev)

    def median_time(fn, iters, reps):
        fn(); torch.cuda.synchronize(); dist.barrier()
        ts = []
        for _ in range(reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            torch.cuda.synchronize()
            ts.append((time.perf_counter() - t0) / iters)
        ts.sort()
        return ts[(len(ts) - 1) // 2]

    def report(name, t):
        if r == 0:
            print(json.dumps({"name": name, "family": "dist", "torch_s": t}), flush=True)

    buf = torch.ones(128 * 1024 * 1024, dtype=torch.bfloat16, device=dev)
    report("all_reduce 256 MB bf16 (2 ranks)", median_time(lambda: dist.all_reduce(buf), 10, 5))
    del buf

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096), torch.nn.GELU(),
                              torch.nn.Linear(4096, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 1024)).to(dev)
    ddp = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index])
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-4)
    x, y = torch.randn(64, 1024, device=dev), torch.randn(64, 1024, device=dev)

    def step():
        opt.zero_grad()
        F.mse_loss(ddp(x), y).backward()
        opt.step()
    report("ddp step f32 mlp 1024-4096x3-1024 b64 (2 ranks)", median_time(step, 10, 5))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
