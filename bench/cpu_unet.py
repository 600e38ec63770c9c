"""PyTorch's and onnxruntime's side of bench/cpu_unet.sh: the PyTorch twin of examples/unet.lua (bench/unet_torch.py)
with the weights bench/cpu_unet.lua exported to DIR (one .npy per state-dict key, loaded strictly), its output
checked against flame's, exported to ONNX (DIR/unet.onnx, opset 17) and run by onnxruntime's CPU provider.
Usage: python bench/cpu_unet.py DIR THREADS; prints "torch THREADS <median ms> <min ms>", the same for "ort", and
"check <max |torch - flame|> <max |ort - flame|> <max |flame|>" on stderr. Timing as bench/cpu_unet.lua: 10
warm-up forwards, then 15 samples of 20 forwards, per forward. torch gets torch.set_num_threads(THREADS) and runs
under inference_mode; onnxruntime gets intra_op_num_threads = THREADS, one inter-op thread, every graph
optimisation (its default). Needs torch (Debian's python3-torch 1.13 works) and onnxruntime."""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_torch import UNet  # noqa: E402

TINY = dict(in_channels=1, channels=16, mults=(1, 2), num_res_blocks=1, attn_res=(8,), num_classes=10, image_size=16,
            dropout=0.0)


def per_forward(fn):
    for _ in range(10):
        fn()
    ts = []
    for _ in range(15):
        t0 = time.perf_counter()
        for _ in range(20):
            fn()
        ts.append((time.perf_counter() - t0) / 20)
    ts.sort()
    return ts[7] * 1e3, ts[0] * 1e3


def main():
    d, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    net = UNet(**TINY).eval()
    sd = {f[:-4]: torch.from_numpy(np.load(os.path.join(d, f))) for f in os.listdir(d)
          if f.endswith(".npy") and not f.startswith(("input.", "output"))}
    net.load_state_dict(sd, strict=True)
    x, t = (torch.from_numpy(np.load(os.path.join(d, f"input.{k}.npy"))) for k in ("x", "t"))
    labels = torch.from_numpy(np.load(os.path.join(d, "input.labels.npy")))
    want = np.load(os.path.join(d, "output.npy"))
    with torch.inference_mode():
        out = net(x, t, labels).numpy()
        med, best = per_forward(lambda: net(x, t, labels))
    print(f"torch {threads} {med:.4f} {best:.4f}")

    import onnxruntime as ort
    path = os.path.join(d, "unet.onnx")
    if not os.path.exists(path):
        with torch.no_grad():
            torch.onnx.export(net, (x, t, labels), path, opset_version=17, input_names=["x", "t", "labels"],
                              output_names=["out"])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy(), "t": t.numpy(), "labels": labels.numpy()}
    feed = {i.name: feed[i.name] for i in sess.get_inputs()}  # the exporter drops inputs the graph does not use
    got = sess.run(None, feed)[0]
    med, best = per_forward(lambda: sess.run(None, feed))
    print(f"ort {threads} {med:.4f} {best:.4f}")
    print(f"check {np.abs(out - want).max():.3g} {np.abs(got - want).max():.3g} {np.abs(want).max():.3g}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
