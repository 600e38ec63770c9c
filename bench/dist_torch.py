"""The PyTorch side of bench/dist.lua, run under torch.distributed.run (python3 -m torch.distributed.run
--nproc_per_node 2 bench/dist_torch.py): the same case names, NCCL, PyTorch's DistributedDataParallel with its
defaults (25 MB buckets), bench/torch_timing.py's clock after a barrier; rank 0 prints the JSON lines."""
import json, os, sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(here, "nn")]
from torch_timing import median_time  # noqa: E402


def main():
    torch.backends.cuda.matmul.allow_tf32 = False  # flame's default: full f32 (as bench/nn_torch.py)
    torch.backends.cudnn.allow_tf32 = False
    dist.init_process_group("nccl")
    r, W = dist.get_rank(), dist.get_world_size()
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", r)))
    torch.cuda.set_device(dev)  # "cuda" below is this rank's GPU
    ranks = " (%d ranks)" % W

    def case(name, setup, iters, reps):
        torch.manual_seed(0)
        try:
            fn = setup()
            fn()
            torch.cuda.synchronize()
            dist.barrier()
            t = median_time(fn, iters, reps)
            line = {"name": name, "family": "dist", "torch_s": t}
        except Exception as e:  # reported in the table, not fatal
            line = {"name": name, "family": "dist", "error": repr(e)}
        if r == 0:
            print(json.dumps(line), flush=True)
        fn = None
        torch.cuda.empty_cache()

    def all_reduce():
        buf = torch.ones(128 * 1024 * 1024, dtype=torch.bfloat16, device=dev)
        return lambda: dist.all_reduce(buf)
    case("all_reduce 256 MB bf16" + ranks, all_reduce, 10, 5)

    def mlp():
        net = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096),
                                  torch.nn.GELU(), torch.nn.Linear(4096, 4096), torch.nn.GELU(),
                                  torch.nn.Linear(4096, 1024)).to(dev)
        ddp = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index])
        opt = torch.optim.AdamW(ddp.parameters(), lr=1e-4)
        x, y = torch.randn(64, 1024, device=dev), torch.randn(64, 1024, device=dev)

        def step():
            opt.zero_grad()
            F.mse_loss(ddp(x), y).backward()
            opt.step()
        return step
    case("ddp step f32 mlp 1024-4096x3-1024 b64" + ranks, mlp, 10, 5)

    ns = {}
    exec(open(os.path.join(here, "nn", "unet.py")).read(), ns)
    wrap = lambda m: torch.nn.parallel.DistributedDataParallel(m, device_ids=[dev.index])  # noqa: E731
    case("ddp unet train step bf16 b128 per GPU (default preset)" + ranks, lambda: ns["_train"](torch, wrap), 10, 5)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
