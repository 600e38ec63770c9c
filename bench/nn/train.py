# Training-step cases for bench/nn_torch.py (names match bench/nn/train.lua): one whole step per timed call in
# PyTorch eager, the same model, batch and dtype: the f32 MLP (64 -> 256 -> 256 -> 64, GELU, MSE, AdamW), and the
# pre-norm transformer block on [8, 1024, 1024] with 16 heads and FFN 4096, f32 parameters, forward under
# torch.autocast(bfloat16) with F.scaled_dot_product_attention (PyTorch's default backend choice), backward from a
# fixed upstream gradient outside it, AdamW (the default implementation: foreach on CUDA).
ITERS = {"mlp train step f32 b128": 50, "transformer block bf16 autocast [8,1024,1024]": 5}


def _mlp(torch):
    nn, F = torch.nn, torch.nn.functional
    model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 64)).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(128, 64, device="cuda")
    y = torch.randn(128, 64, device="cuda")

    def step():
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
    return step


def _block(torch):
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, E, H, FF):
            super().__init__()
            self.heads = H
            self.ln1, self.qkv, self.proj = nn.LayerNorm(E), nn.Linear(E, 3 * E), nn.Linear(E, E)
            self.ln2, self.fc1, self.fc2 = nn.LayerNorm(E), nn.Linear(E, FF), nn.Linear(FF, E)

        def forward(self, x):
            B, S, E = x.shape
            H = self.heads
            qkv = self.qkv(self.ln1(x)).reshape(B, S, 3, H, E // H).permute(2, 0, 3, 1, 4)  # [3, B, H, S, D]
            a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
            x = x + self.proj(a.transpose(1, 2).reshape(B, S, E))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    model = Block(1024, 16, 4096).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(8, 1024, 1024, device="cuda")
    g = torch.randn(8, 1024, 1024, device="cuda")

    def step():
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = model(x)
        y.backward(g)
        opt.step()
    return step


CASES = {
    "mlp train step f32 b128": _mlp,
    "transformer block bf16 autocast [8,1024,1024]": _block,
}
