# Optimizer cases for bench/nn_torch.py (names match bench/nn/optim.lua): one optimizer step over 100 tensors
# totalling 100M parameters (sizes alternating 1.5M and 0.5M), PyTorch's fused=True AdamW; the clip case uses
# clip_grad_norm_ (foreach by default on CUDA).
N, BIG, SMALL = 100, 1500000, 500000


def _params(torch, dtype):
    ps = []
    for i in range(1, N + 1):
        p = torch.randn(BIG if i % 2 == 1 else SMALL, dtype=dtype, device="cuda", requires_grad=True)
        p.grad = torch.randn(p.numel(), dtype=dtype, device="cuda")
        ps.append(p)
    return ps


def _adamw(dt):
    def setup(torch):
        opt = torch.optim.AdamW(_params(torch, getattr(torch, dt)), lr=1e-3, weight_decay=1e-2, fused=True)
        return opt.step
    return setup


def _clip(torch):
    ps = _params(torch, torch.float32)
    return lambda: torch.nn.utils.clip_grad_norm_(ps, 1e9)


CASES = {
    "adamw step f32 100 tensors 100M": _adamw("float32"),
    "adamw step bf16 100 tensors 100M": _adamw("bfloat16"),
    "clip_grad_norm f32 100 tensors 100M": _clip,
}
