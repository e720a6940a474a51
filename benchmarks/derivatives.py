"""Milliseconds per training step and peak memory of each derivative engine, same run.

    python benchmarks/derivatives.py [--dims 2 3 10 100] [--points 1000 4000] [--device cpu]

One Adam step on Poisson's equation (3x50 tanh MLP, the PDE loss on N interior points and the
boundary loss on N/5 boundary points), for engines autograd (nested reverse mode), forward
(forward-mode Laplacian) and stochastic (16 random directions). Each variant runs in its own
process, so peak memory (resident set on the CPU, allocator peak on CUDA) is its own. Prints a
table with the ratio of each engine's step time to nested autograd's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ENGINES = {"autograd": "AutogradEngine()", "forward": "ForwardEngine()", "stochastic": "StochasticEngine(samples=16)"}


def measure(engine: str, dim: int, points: int, device: str, dtype: str, seconds: float) -> dict:
    """Runs in a child process: time Adam steps of one variant."""
    import torch

    import train  # noqa: F401  (the allocator setting train.py applies)
    from pinn.derivatives import AutogradEngine, ForwardEngine, StochasticEngine  # noqa: F401
    from pinn.models import MLP
    from pinn.pdes import Poisson
    from pinn.sampling import SobolSampler

    train.tune_cpu_allocator()
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    pde = Poisson(dim=dim)
    model = MLP(dim, 1, width=50, depth=3).to(device=device, dtype=dt)
    eng = eval(ENGINES[engine])
    sampler = SobolSampler(n_interior=points, n_boundary=max(points // 5, 1))
    pts = {k: v.to(device=device, dtype=dt) for k, v in sampler.sample(pde.domain, torch.Generator().manual_seed(0)).items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        sum(pde.losses(model, pts, eng).values()).backward()
        opt.step()

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        step()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    steps, start = 0, time.perf_counter()
    while steps < 5 or time.perf_counter() - start < seconds:
        step()
        steps += 1
        if steps % 5 == 0:
            sync()
    sync()
    ms = 1000 * (time.perf_counter() - start) / steps
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return {"engine": engine, "dim": dim, "points": points, "ms_per_step": ms, "peak_mb": peak_mb, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3, 10, 100])
    parser.add_argument("--points", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per variant")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, dim, points = args.child.split(",")
        print(json.dumps(measure(engine, int(dim), int(points), args.device, args.dtype, args.seconds)))
        return

    import torch

    root = Path(__file__).resolve().parent.parent
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, device {args.device}, {args.dtype}")
    print(f"{'d':>4} {'N':>6} {'engine':>11} {'ms/step':>9} {'peak MB':>8} {'speed-up':>9}")
    for dim in args.dims:
        for points in args.points:
            base = None
            for engine in args.engines:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", f"{engine},{dim},{points}", "--device", args.device,
                     "--dtype", args.dtype, "--seconds", str(args.seconds)],
                    capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
                if out.returncode != 0:
                    print(f"{dim:>4} {points:>6} {engine:>11}  failed: {out.stderr.strip().splitlines()[-1]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                base = r["ms_per_step"] if engine == "autograd" else base
                ratio = f"{base / r['ms_per_step']:.2f}x" if base and engine != "autograd" else ""
                print(f"{dim:>4} {points:>6} {engine:>11} {r['ms_per_step']:>9.2f} {r['peak_mb']:>8.0f} {ratio:>9}",
                      flush=True)


if __name__ == "__main__":
    main()
