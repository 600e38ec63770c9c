# Index ops and losses with PyTorch, the same names as bench/nn/index.lua (run by bench/nn_torch.py).
# PyTorch's index_select backward is index_add_ with atomics (not deterministic); its embedding backward sorts.
import torch.nn.functional as F


def index_select(torch):
    x = torch.randn(50000, 1024, device="cuda", requires_grad=True)
    idx = torch.randint(0, 50000, (65536,), device="cuda")
    g = torch.randn(65536, 1024, device="cuda")

    def fn():
        x.grad = None
        x.index_select(0, idx).backward(g)
    return fn


def embedding(torch):
    w = torch.randn(50000, 1024, device="cuda", requires_grad=True)
    ids = torch.randint(0, 50000, (32, 2048), device="cuda")
    g = torch.randn(32, 2048, 1024, device="cuda")

    def fn():
        w.grad = None
        F.embedding(ids, w).backward(g)
    return fn


def cross_entropy(torch):
    x = torch.randn(8192, 32000, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    t = torch.randint(0, 32000, (8192,), device="cuda")

    def fn():
        x.grad = None
        F.cross_entropy(x, t).backward()
    return fn


CASES = {
    "index_select fwd+bwd f32 [50000,1024] gather 65536 rows (deterministic)": index_select,
    "embedding fwd+bwd f32 vocab 50000 ids 65536 dim 1024 (deterministic)": embedding,
    "cross_entropy fwd+bwd bf16 [8192,32000]": cross_entropy,
}
