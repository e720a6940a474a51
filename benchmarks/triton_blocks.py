"""Block sizes and warps of the fused Triton layer (derivatives.triton), timed in one run.

    python benchmarks/triton_blocks.py [--points 2000 200000] [--device cuda] [--seconds 1]

One Adam step of the 2-D Poisson problem of benchmarks/vs_deepxde.py (3x50 tanh MLP, N
interior + N/5 boundary points, float32), replayed as a CUDA graph (``forward+triton+graph``),
for each setting of ``pinn.fused``'s block sizes, warps, backward pipeline stages, backward
programs per multiprocessor and float32 products (three TF32 products, the default; IEEE
float32; or one TF32 product, which loses about three digits), beside the unfused
``forward+graph`` step. Prints milliseconds per step, the ratio to the
unfused step, and the registers and spilled bytes per thread of the hidden layers' forward and
backward kernels as compiled.
On the CPU (Triton's interpreter, ``TRITON_INTERPRET=1``, no graph) it only checks that every
setting runs.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from common import make_step, time_steps, wrapped_kernels
from pinn import fused
from pinn.models import MLP
from pinn.pdes import Poisson
from pinn.sampling import SobolSampler

#: the settings of pinn.fused that are varied, and their values in each run (the first is the default)
NAMES = ("FORWARD_BLOCK", "FORWARD_WARPS", "BACKWARD_BLOCK", "BACKWARD_WARPS", "BACKWARD_STAGES", "PROGRAMS_PER_SM",
         "FLOAT32_PRODUCTS")
#: The second: a backward block of 16 rows on 8 warps. Of the backward settings compiled for an
#: H100 without a GPU (2026-12-06: seven settings, blocks of 16 to 64 rows on 2 to 8 warps), the only one
#: that spills nothing under triton 3.6.0, the GPU machine's (the default spills 344 bytes per
#: thread there, 48 under 3.9.0).
SETTINGS = [(32, 8, 32, 8, 1, 1, "tf32x3"), (32, 8, 16, 8, 1, 1, "tf32x3"), (32, 4, 32, 4, 1, 1, "tf32x3"),
            (16, 4, 16, 4, 1, 1, "tf32x3"),
            (64, 8, 64, 8, 1, 1, "tf32x3"), (32, 8, 32, 8, 2, 1, "tf32x3"), (32, 8, 64, 8, 1, 1, "tf32x3"),
            (32, 8, 32, 8, 1, 4, "tf32x3"), (32, 8, 32, 8, 1, 1, "ieee"), (32, 8, 32, 8, 1, 1, "tf32")]


class Recorded:
    """A Triton kernel that keeps the registers and spills of its last compiled launch."""

    def __init__(self, kernel, name: str, log: dict):
        self.kernel, self.name, self.log = kernel, name, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            compiled = self.kernel[grid](*args, **kwargs)
            if hasattr(compiled, "n_regs"):  # not in the interpreter
                self.log[self.name] = (compiled.n_regs, compiled.n_spills)
            return compiled
        return launch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, nargs="+", default=[2000, 200000])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="default: cuda where there is a GPU, else cpu (with TRITON_INTERPRET=1)")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    reason = "PyTorch sees no CUDA GPU here" if args.device.startswith("cuda") and not torch.cuda.is_available() \
        else fused.why_unavailable(torch.device(args.device))
    if reason is not None:
        parser.error(f"the kernels cannot run with --device {args.device}: {reason}")
    cuda = args.device.startswith("cuda")
    graph = "+graph" if cuda else ""
    where = torch.cuda.get_device_name() if cuda else "CPU, Triton's interpreter"
    print(f"# {time.strftime('%Y-%m-%d')}, {where}, torch {torch.__version__}")
    print(f"# settings: {', '.join(NAMES)}")
    print(f"{'N':>7} {'variant':>22} {'settings':>30} {'ms/step':>9} {'vs unfused':>10}  registers/spills")
    pde = Poisson(dim=2)
    failed = 0
    for n in args.points:
        points = SobolSampler(n_interior=n, n_boundary=max(n // 5, 1)).sample(pde.domain, torch.Generator().manual_seed(0))
        points = {k: v.to(device=args.device, dtype=torch.float32) for k, v in points.items()}
        runs = [("forward" + graph, None)] + [("forward+triton" + graph, s) for s in SETTINGS]
        base = None
        for variant, setting in runs:
            for name, value in zip(NAMES, setting or SETTINGS[0]):
                setattr(fused, name, value)
            log: dict = {}
            torch.manual_seed(0)
            model = MLP(2, 1, width=50, depth=3).to(args.device)
            label = "-" if setting is None else " ".join(str(v) for v in setting)
            try:
                with wrapped_kernels(lambda kernel, name: Recorded(kernel, name, log)):
                    ms, _ = time_steps(make_step(variant, pde, model, points, args.device), args.device,
                                       seconds=args.seconds if cuda else 0.0, warmup=5 if cuda else 1)
            except Exception as exc:  # noqa: BLE001 -- one failed setting must not end the table
                print(f"{n:>7} {variant:>22} {label:>30}  failed: {(str(exc).splitlines() or [type(exc).__name__])[0][:200]}", flush=True)
                failed += 1
                continue
            base = ms if setting is None else base
            ratio = f"{base / ms:.2f}x" if base and setting is not None else ""
            usage = " ".join(f"{k.strip('_').replace('_kernel', '')} {r}/{sp}" for k, (r, sp) in sorted(log.items()))
            print(f"{n:>7} {variant:>22} {label:>30} {ms:>9.3f} {ratio:>10}  {usage}", flush=True)
    if failed:
        sys.exit(f"{failed} of the settings failed")


if __name__ == "__main__":
    main()
