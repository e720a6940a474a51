"""DeepXDE and pinn on the identical 2-D Poisson problem, measured in the same run.

    pip install -e '.[bench]'        # DeepXDE, an optional benchmark dependency
    python benchmarks/vs_deepxde.py [--iterations 2000] [--device cpu]

Problem: -Δu = 2π² sin(πx) sin(πy) on [-1, 1]², u = 0 on the boundary; 3x50 tanh network
(Glorot normal), 2,000 interior + 400 boundary points, Adam with lr 1e-3, float32. Each
variant runs in its own process for the same number of Adam iterations; the table gives
milliseconds per iteration (wall time of the training loop divided by the iterations), the
relative L2 error on the same 10,000 test points afterwards, and the speed-up over DeepXDE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("deepxde", "autograd", "forward", "forward+compile")


def test_points():
    import torch

    from pinn.pdes import Poisson
    from pinn.trainer import Trainer

    return Trainer(n_test=10000).test_set(Poisson(dim=2), "cpu", torch.float64)


def run_deepxde(iterations: int, device: str) -> dict:
    os.environ["DDE_BACKEND"] = "pytorch"
    import deepxde as dde
    import numpy as np
    import torch

    if device.startswith("cuda"):
        torch.set_default_device(device)
    dde.config.set_random_seed(0)
    geom = dde.geometry.Rectangle([-1, -1], [1, 1])

    def pde(x, y):
        source = 2 * np.pi**2 * torch.sin(np.pi * x[:, 0:1]) * torch.sin(np.pi * x[:, 1:2])
        return -dde.grad.hessian(y, x, i=0, j=0) - dde.grad.hessian(y, x, i=1, j=1) - source

    bc = dde.icbc.DirichletBC(geom, lambda x: 0, lambda _, on_boundary: on_boundary)
    data = dde.data.PDE(geom, pde, bc, num_domain=2000, num_boundary=400)
    net = dde.nn.FNN([2] + [50] * 3 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)
    model.train(iterations=10, display_every=10**9, verbose=0)  # warm-up, outside the timing
    start = time.perf_counter()
    model.train(iterations=iterations, display_every=10**9, verbose=0)
    seconds = time.perf_counter() - start
    x, exact = test_points()
    pred = model.predict(x.numpy().astype(np.float32))
    rel = float(np.linalg.norm(pred - exact.numpy()) / np.linalg.norm(exact.numpy()))
    return {"ms_per_iteration": 1000 * seconds / iterations, "rel_l2": rel, "version": dde.__version__}


def run_pinn(variant: str, iterations: int, device: str) -> dict:
    import torch

    import train
    from pinn.derivatives import AutogradEngine, ForwardEngine
    from pinn.models import MLP
    from pinn.pdes import Poisson
    from pinn.sampling import SobolSampler
    from pinn.trainer import Trainer

    train.tune_cpu_allocator()
    torch.manual_seed(0)
    pde, model = Poisson(dim=2), MLP(2, 1, width=50, depth=3).to(device)
    engine = AutogradEngine() if variant == "autograd" else ForwardEngine()
    points = {k: v.to(device=device, dtype=torch.float32)
              for k, v in SobolSampler(n_interior=2000, n_boundary=400).sample(pde.domain, torch.Generator().manual_seed(0)).items()}
    trainer = Trainer()
    losses = torch.compile(trainer.losses) if variant.endswith("+compile") else trainer.losses
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        losses(pde, model, engine, points)[0].backward()
        optimizer.step()

    for _ in range(10):  # warm-up (and compilation), outside the timing as for DeepXDE
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    x, exact = test_points()
    metrics = trainer.evaluate(pde, model, x.to(device=device, dtype=torch.float32), exact.to(device=device, dtype=torch.float32))
    return {"ms_per_iteration": 1000 * seconds / iterations, "rel_l2": metrics["rel_l2"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = run_deepxde if args.child == "deepxde" else lambda n, d: run_pinn(args.child, n, d)
        print(json.dumps(run(args.iterations, args.device)))
        return

    import torch

    print(f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}, {args.iterations} Adam iterations")
    print(f"{'variant':>16} {'ms/iter':>9} {'rel L2':>12} {'vs DeepXDE':>11}")
    base = None
    for variant in args.variants:
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--iterations", str(args.iterations),
                              "--device", args.device], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode != 0:
            print(f"{variant:>16}  failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        base = r["ms_per_iteration"] if variant == "deepxde" else base
        ratio = f"{base / r['ms_per_iteration']:.2f}x" if base else ""
        print(f"{variant:>16} {r['ms_per_iteration']:>9.2f} {r['rel_l2']:>12.5e} {ratio:>11}", flush=True)


if __name__ == "__main__":
    main()
