# PyTorch side of bench/nn/attention_flash.lua: scaled_dot_product_attention restricted to the flash backend
# (torch.nn.attention.sdpa_kernel(SDPBackend.FLASH_ATTENTION)), bf16. The two varlen names both time the dense batch
# of equal work (PyTorch's SDPA has no packed varlen form): see the .lua.
B, H, S = 8, 16, 2048


def _sdpa(b, h, s, d, bwd, **kw):
    def setup(torch):
        from torch.nn.attention import sdpa_kernel, SDPBackend
        q, k, v = (torch.randn(b, h, s, d, dtype=torch.bfloat16, device="cuda", requires_grad=bwd) for _ in range(3))
        g = torch.randn(b, h, s, d, dtype=torch.bfloat16, device="cuda")
        F = torch.nn.functional

        def fwd():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, **kw)

        if not bwd:
            return fwd
        return lambda: torch.autograd.grad(fwd(), (q, k, v), g)
    return setup


def _lengths():
    return [128 + (i * 7919) % 1921 for i in range(1, 65)]


DENSE_B = int(sum(n * n for n in _lengths()) / (1024 * 1024) + 0.5)

CASES = {}
for d in (64, 128):
    for causal in (False, True):
        c = " causal" if causal else ""
        CASES[f"flash fwd{c} bf16 [{B},{H},{S},{d}]"] = _sdpa(B, H, S, d, False, is_causal=causal)
        CASES[f"flash fwd+bwd{c} bf16 [{B},{H},{S},{d}]"] = _sdpa(B, H, S, d, True, is_causal=causal)
    CASES[f"flash fwd+bwd dropout0.1 bf16 [{B},{H},{S},{d}]"] = _sdpa(B, H, S, d, True, dropout_p=0.1)
CASES["flash varlen fwd+bwd bf16 64 seqs 128..2048 H16 d128"] = _sdpa(DENSE_B, 16, 1024, 128, True)
CASES[f"flash dense-equivalent fwd+bwd bf16 [{DENSE_B},16,1024,128]"] = _sdpa(DENSE_B, 16, 1024, 128, True)
