"""The PyTorch twin of examples/unet.lua (for bench/nn/unet.py): the same layers, GroupNorm groups (gcd(c, 32)),
attention heads (c // 64), embedding MLP, parameter names and initial zeros, so that flame's state_dict loads into it
strictly (bench/unet_twin_check.py checks that and the forward). Labels are 0-based here (flame's are 1-based):
num_classes is the null class. Works with torch 1.13 and 2.x."""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000) / half))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], 1)


def norm(c, groups):
    return nn.GroupNorm(math.gcd(c, groups), c)


def zero_(m):
    nn.init.zeros_(m.weight)
    if m.bias is not None:
        nn.init.zeros_(m.bias)
    return m


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim, groups, dropout):
        super().__init__()
        self.norm1 = norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) if self.skip is not None else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c, groups, head_dim):
        super().__init__()
        self.norm = norm(c, groups)
        self.attn = nn.MultiheadAttention(c, max(1, c // head_dim), batch_first=True)
        zero_(self.attn.out_proj)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x).view(B, C, H * W).transpose(1, 2)
        h = self.attn(h, h, h, need_weights=False)[0]
        return x + h.transpose(1, 2).reshape(B, C, H, W)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2x(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    def __init__(self, in_channels=1, channels=64, mults=(1, 2, 2), num_res_blocks=2, attn_res=(8,), num_classes=10,
                 image_size=32, dropout=0.0, groups=32, head_dim=64):
        super().__init__()
        ch, emb_dim = channels, 4 * channels
        self.channels = ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        down, skips, c, res = [], [ch], ch, image_size
        for level, mult in enumerate(mults):
            cout = ch * mult
            for _ in range(num_res_blocks):
                down.append(ResBlock(c, cout, emb_dim, groups, dropout))
                c = cout
                if res in attn_res:
                    down.append(AttnBlock(c, groups, head_dim))
                skips.append(c)
            if level < len(mults) - 1:
                down.append(Downsample(c))
                skips.append(c)
                res //= 2
        self.down = nn.ModuleList(down)
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, groups, dropout), AttnBlock(c, groups, head_dim),
                                  ResBlock(c, c, emb_dim, groups, dropout)])
        up = []
        for level in range(len(mults) - 1, -1, -1):
            cout = ch * mults[level]
            for _ in range(num_res_blocks + 1):
                up.append(ResBlock(c + skips.pop(), cout, emb_dim, groups, dropout))
                c = cout
                if res in attn_res:
                    up.append(AttnBlock(c, groups, head_dim))
            if level > 0:
                up.append(Upsample2x(c))
                res *= 2
        self.up = nn.ModuleList(up)
        self.norm_out = norm(c, groups)
        self.conv_out = zero_(nn.Conv2d(c, in_channels, 3, padding=1))

    def forward(self, x, t, labels=None):
        emb = self.time_mlp(timestep_embedding(t, self.channels).to(x.dtype))
        if self.class_emb is not None:
            emb = emb + self.class_emb(labels)
        h = self.conv_in(x)
        hs = [h]
        for m in self.down:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
            if isinstance(m, AttnBlock):
                hs[-1] = h
            else:
                hs.append(h)
        for m in self.mid:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
        for m in self.up:
            h = m(torch.cat([h, hs.pop()], 1), emb) if isinstance(m, ResBlock) else m(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# examples/diffusion_lib.lua's "default" preset
DEFAULT = dict(in_channels=1, channels=96, mults=(1, 2, 2), num_res_blocks=2, attn_res=(16, 8), num_classes=10,
               image_size=32, dropout=0.1)
