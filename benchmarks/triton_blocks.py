"""Block sizes and warps of the fused Triton layer (derivatives.triton), timed in one run.

    python benchmarks/triton_blocks.py [--points 2000 200000] [--device cuda] [--seconds 1]

One Adam step of the 2-D Poisson problem of benchmarks/vs_deepxde.py (3x50 tanh MLP, N
interior + N/5 boundary points, float32), replayed as a CUDA graph (``forward+triton+graph``),
for each setting of ``pinn.fused``'s FORWARD_BLOCK, BACKWARD_BLOCK, WARPS and FLOAT32_PRODUCTS
(IEEE float32, three TF32 products, or one, which loses about three digits), beside the unfused
``forward+graph`` step. Prints milliseconds per step and the ratio to the unfused step.
On the CPU (Triton's interpreter, ``TRITON_INTERPRET=1``, no graph) it only checks that every
setting runs.
"""

from __future__ import annotations

import argparse
import time

import torch

from common import make_step, time_steps
from pinn import fused
from pinn.models import MLP
from pinn.pdes import Poisson
from pinn.sampling import SobolSampler

#: (forward block, backward block, warps, float32 products)
SETTINGS = [(32, 32, 4, "ieee"), (64, 32, 4, "ieee"), (32, 32, 8, "ieee"), (64, 64, 8, "ieee"), (16, 16, 4, "ieee"),
            (32, 32, 4, "tf32x3"), (32, 32, 4, "tf32")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, nargs="+", default=[2000, 200000])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    graph = "+graph" if cuda else ""
    where = torch.cuda.get_device_name() if cuda else "CPU, Triton's interpreter"
    print(f"# {time.strftime('%Y-%m-%d')}, {where}, torch {torch.__version__}")
    print(f"{'N':>7} {'variant':>22} {'blocks':>10} {'warps':>5} {'products':>8} {'ms/step':>9} {'vs unfused':>10}")
    pde = Poisson(dim=2)
    for n in args.points:
        points = SobolSampler(n_interior=n, n_boundary=max(n // 5, 1)).sample(pde.domain, torch.Generator().manual_seed(0))
        points = {k: v.to(device=args.device, dtype=torch.float32) for k, v in points.items()}
        runs = [("forward" + graph, None)] + [("forward+triton" + graph, s) for s in SETTINGS]
        base = None
        for variant, setting in runs:
            if setting is not None:
                fused.FORWARD_BLOCK, fused.BACKWARD_BLOCK, fused.WARPS, fused.FLOAT32_PRODUCTS = setting
            torch.manual_seed(0)
            model = MLP(2, 1, width=50, depth=3).to(args.device)
            try:
                ms, _ = time_steps(make_step(variant, pde, model, points, args.device), args.device,
                                   seconds=args.seconds if cuda else 0.0, warmup=5 if cuda else 1)
            except Exception as exc:  # noqa: BLE001 -- one failed setting must not end the table
                print(f"{n:>7} {variant:>22} {str(setting):>10}  failed: {str(exc).splitlines()[0][:200]}", flush=True)
                continue
            base = ms if setting is None else base
            blocks, warps, products = ("-", "-", "-") if setting is None else (f"{setting[0]}/{setting[1]}", *setting[2:])
            ratio = f"{base / ms:.2f}x" if base and setting is not None else ""
            print(f"{n:>7} {variant:>22} {blocks:>10} {warps:>5} {products:>8} {ms:>9.3f} {ratio:>10}", flush=True)


if __name__ == "__main__":
    main()
