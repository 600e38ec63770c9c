# The diffusion UNet cases for bench/nn_torch.py (names match bench/nn/unet.lua): the PyTorch twin of
# examples/unet.lua's default preset (bench/unet_torch.py; spec/unet_twin_spec.lua checks it against flame) in eager
# mode. The train step: noise and t drawn, x_t and the v target from the cosine ("squaredcos_cap_v2") DDPM schedule
# (diffusers' add_noise / get_velocity formulas), label dropout 0.1, forward under torch.autocast(bfloat16), MSE on
# the f32 output, backward, clip_grad_norm_ 1.0, AdamW (foreach). The sampling: 1000 class-conditional images in 50
# DDIM steps (v-prediction, trailing spacing, set_alpha_to_one false, clip_sample 1, eta 0; as diffusers'
# DDIMScheduler), guidance 2 with the conditional and null halves in one batch of 2000, bf16 autocast.
import math

from unet_torch import UNet, DEFAULT  # bench/ (nn_torch.py's folder) is on sys.path

ITERS = {"unet train step bf16 autocast b128 32x32 (default preset)": 10,
         "unet sample 1000 images 50 ddim steps cfg bf16 (default preset)": 1}
REPS = {"unet train step bf16 autocast b128 32x32 (default preset)": 5,
        "unet sample 1000 images 50 ddim steps cfg bf16 (default preset)": 3}


def _alphas_cumprod(torch):
    # diffusers' betas_for_alpha_bar (cosine), max_beta 0.999, in f64 then f32 as diffusers stores them
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f((i + 1) / 1000) / f(i / 1000), 0.999) for i in range(1000)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float32), 0)


def _train(torch, wrap=None):
    """wrap(net) -> what the forward runs through (bench/dist_torch.py's DistributedDataParallel)."""
    F = torch.nn.functional
    net = UNet(**DEFAULT).cuda()
    fwd = wrap(net) if wrap else net
    params = list(net.parameters())
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01)
    ac = _alphas_cumprod(torch).cuda()
    B = 128
    x0 = torch.rand(B, 1, 32, 32, device="cuda") * 2 - 1
    y = torch.randint(0, 10, (B,), device="cuda")
    null = torch.full((B,), 10, device="cuda", dtype=torch.long)

    def step():
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (B,), device="cuda")
        sa, sb = ac[t].sqrt()[:, None, None, None], (1 - ac[t]).sqrt()[:, None, None, None]
        xt = sa * x0 + sb * noise
        target = sa * noise - sb * x0
        yd = torch.where(torch.rand(B, device="cuda") < 0.1, null, y)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred = fwd(xt, t.float(), yd)
        loss = F.mse_loss(pred.float(), target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return step


def _sample(torch):
    net = UNet(**DEFAULT).cuda().eval()
    ac = _alphas_cumprod(torch).tolist()
    n, steps, scale = 1000, 50, 2.0
    ids = torch.arange(10, device="cuda").repeat_interleave(n // 10)
    both = torch.cat([ids, torch.full((n,), 10, device="cuda", dtype=torch.long)])
    ts = [round(1000 - i * 1000 / steps) - 1 for i in range(steps)]  # trailing: 999, 979, ..., 19

    @torch.no_grad()
    def run():
        x = torch.randn(n, 1, 32, 32, device="cuda")
        for t in ts:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                v = net(torch.cat([x, x]), torch.full((2 * n,), float(t), device="cuda"), both)
            v = v.float()
            vc, vu = v[:n], v[n:]
            v = vu + (vc - vu) * scale
            a = ac[t]
            a_prev = ac[t - 1000 // steps] if t - 1000 // steps >= 0 else ac[0]
            x0 = math.sqrt(a) * x - math.sqrt(1 - a) * v
            eps = math.sqrt(a) * v + math.sqrt(1 - a) * x
            x = math.sqrt(a_prev) * x0.clamp(-1, 1) + math.sqrt(1 - a_prev) * eps
        return x
    return run


CASES = {
    "unet train step bf16 autocast b128 32x32 (default preset)": _train,
    "unet sample 1000 images 50 ddim steps cfg bf16 (default preset)": _sample,
}
