"""DeepXDE and pinn on the identical 2-D Poisson problem, measured in the same run.

    pip install -e '.[bench]'        # DeepXDE, an optional benchmark dependency
    python benchmarks/vs_deepxde.py [--iterations 1000] [--device cpu] [--interior 2000 --boundary 400]

Problem: -Δu = 2π² sin(πx) sin(πy) on [-1, 1]², u = 0 on the boundary; 3x50 tanh network,
2,000 interior + 400 boundary points, Adam with lr 1e-3, float32, the mean square of the
equation's residual plus that of the boundary values as the loss. DeepXDE gets the very points
and initial weights that pinn uses (the interior points as ``anchors``, the boundary values as
a ``PointSetBC``, the weights copied in), so every variant starts from the same network on the
same points. (DeepXDE still evaluates its second derivatives at the boundary points too, as it
always does, before it keeps the interior ones for the loss.) Each
variant trains for the same number of Adam iterations; the table gives milliseconds per
iteration (wall time of the training loop divided by the iterations), the relative L2 error on
the same 10,000 test points afterwards, and the speed-up over DeepXDE. DeepXDE runs in a process
of its own (it changes PyTorch's default device); the pinn variants run one after another in
another. Variants (see benchmarks/common.py): an engine with ``+compile`` (torch.compile),
``+graph`` (the whole step as a CUDA graph) and ``+tf32`` options.
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
CPU_VARIANTS = ("deepxde", "autograd", "forward", "forward+compile")
CUDA_VARIANTS = ("deepxde", "autograd", "forward", "forward+graph", "forward+compile", "forward+compile+graph")


#: How a child process reports a finished variant: one JSON line on its standard error.
ROW = '{"variant"'
#: A child's exit status after a variant left a CUDA error behind (it stays for the process's
#: life): the variants after it run in a fresh process.
RESTART = 3


def report(row: dict) -> None:
    print("\n" + json.dumps(row), file=sys.stderr, flush=True)  # on a line of its own, whatever came before


def read_row(line: str) -> dict | None:
    """The row a child reported on this line of its standard error, if any."""
    start = line.find(ROW)
    if start < 0:
        return None
    try:
        return json.loads(line[start:])
    except json.JSONDecodeError:
        return None


def test_points():
    from pinn.pdes import Poisson
    from pinn.trainer import Trainer

    return Trainer(n_test=10000).test_set(Poisson(dim=2), "cpu")


def problem(interior: int, boundary: int):
    """The collocation points (float32, CPU) and the network's initial weights, shared by all variants."""
    import torch

    from pinn.models import MLP
    from pinn.pdes import Poisson
    from pinn.sampling import SobolSampler

    points = SobolSampler(n_interior=interior, n_boundary=boundary).sample(Poisson(dim=2).domain,
                                                                           torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    return {k: v.float() for k, v in points.items()}, MLP(2, 1, width=50, depth=3).state_dict()


def run_deepxde(iterations: int, device: str, interior: int, boundary: int) -> dict:
    import numpy as np
    import torch

    import train

    train.tune_cpu_allocator()  # as for the pinn variants
    # The points, the initial weights (from the CPU's random stream) and the test points, on the
    # CPU as for the pinn variants: before DeepXDE is imported, which makes a GPU the default device.
    points, weights = problem(interior, boundary)
    x, exact = test_points()
    os.environ["DDE_BACKEND"] = "pytorch"
    import deepxde as dde

    if device.startswith("cuda"):
        torch.set_default_device(device)
    dde.config.set_random_seed(0)
    geom = dde.geometry.Rectangle([-1, -1], [1, 1])

    def pde(x, y):
        source = 2 * np.pi**2 * torch.sin(np.pi * x[:, 0:1]) * torch.sin(np.pi * x[:, 1:2])
        return -dde.grad.hessian(y, x, i=0, j=0) - dde.grad.hessian(y, x, i=1, j=1) - source

    bc = dde.icbc.PointSetBC(points["boundary"].numpy(), np.zeros((boundary, 1), dtype=np.float32))
    data = dde.data.PDE(geom, pde, [bc], num_domain=0, num_boundary=0, anchors=points["interior"].numpy())
    net = dde.nn.FNN([2] + [50] * 3 + [1], "tanh", "Glorot normal")
    ours = [weights[k] for k in weights]  # net.0.weight, net.0.bias, net.2.weight, ...: the linear layers in order
    with torch.no_grad():
        for target, value in zip(net.parameters(), ours, strict=True):
            target.copy_(value)
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)
    model.train(iterations=10, display_every=10**9, verbose=0)  # warm-up, outside the timing
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.train(iterations=iterations, display_every=10**9, verbose=0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    pred = model.predict(x.numpy().astype(np.float32))
    rel = float(np.linalg.norm(pred - exact.numpy()) / np.linalg.norm(exact.numpy()))
    return {"variant": "deepxde", "ms_per_iteration": 1000 * seconds / iterations, "rel_l2": rel,
            "version": dde.__version__}


def run_pinn(variants: list[str], iterations: int, device: str, interior: int, boundary: int) -> None:
    import torch

    import train
    from common import make_step, time_steps
    from pinn.models import MLP
    from pinn.pdes import Poisson
    from pinn.trainer import Trainer

    train.tune_cpu_allocator()
    pde, x, exact = Poisson(dim=2), *test_points()
    points, weights = problem(interior, boundary)
    points = {k: v.to(device) for k, v in points.items()}
    for variant in variants:
        if os.environ.get("VS_DEEPXDE_CRASH") == variant:  # for the tests: a process that dies in a variant
            os._exit(9)
        try:
            model = MLP(2, 1, width=50, depth=3)
            model.load_state_dict(weights)
            model.to(device)
            step = make_step(variant, pde, model, points, device)
            ms, _ = time_steps(step, device, iterations=iterations)  # after 10 warm-up steps, as for DeepXDE
            torch.backends.cuda.matmul.allow_tf32 = False  # the error is measured in plain float32
            metrics = Trainer().evaluate(pde, model, x.to(device=device, dtype=torch.float32), exact.to(device))
        except Exception as exc:  # noqa: BLE001 -- one failed variant must not end the table
            report({"variant": variant, "error": (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]})
            if device_lost(exc):  # the device is unusable for this process from here on
                sys.stderr.flush()
                os._exit(RESTART)  # not sys.exit: Python's shutdown after a CUDA error can crash or hang
            continue
        report({"variant": variant, "ms_per_iteration": ms, "rel_l2": metrics["rel_l2"]})


def device_lost(exc: Exception) -> bool:
    """Whether ``exc`` is a CUDA error, which stays for the rest of the process (in PyTorch's
    words or in Triton's launcher's)."""
    import torch

    lost = getattr(torch, "AcceleratorError", ())
    return isinstance(exc, lost) or any(words in str(exc) for words in ("CUDA error", "Triton Error [CUDA]"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--interior", type=int, default=2000)
    parser.add_argument("--boundary", type=int, default=400)
    parser.add_argument("--variants", nargs="+", help=f"default: {' '.join(CPU_VARIANTS)} on the CPU, "
                                                       f"{' '.join(CUDA_VARIANTS)} on CUDA")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = (args.interior, args.boundary)
    if args.child:
        if args.child == ["deepxde"]:
            report(run_deepxde(args.iterations, args.device, *sizes))
        else:
            run_pinn(args.child, args.iterations, args.device, *sizes)
        return

    import torch

    variants = args.variants or (CUDA_VARIANTS if args.device.startswith("cuda") else CPU_VARIANTS)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {where}, torch {torch.__version__}, "
          f"device {args.device}, {args.interior} + {args.boundary} points, {args.iterations} Adam iterations")
    print(f"{'variant':>22} {'ms/iter':>9} {'rel L2':>12} {'vs DeepXDE':>11}")
    groups = [["deepxde"]] if "deepxde" in variants else []
    if [v for v in variants if v != "deepxde"]:
        groups.append([v for v in variants if v != "deepxde"])
    base, failed = None, False
    for group in groups:
        pending = list(group)
        while pending:
            # Each row is printed as its variant finishes, so that a run stopped by a time limit
            # keeps the rows it measured.
            child = subprocess.Popen([sys.executable, __file__, "--child", *pending, "--iterations",
                                      str(args.iterations), "--device", args.device, "--interior", str(args.interior),
                                      "--boundary", str(args.boundary)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace", cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                         [str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])})
            rows, last_line = [], "?"
            for line in child.stderr:
                r = read_row(line)
                if r is None:
                    last_line = line.strip() or last_line
                    continue
                rows.append(r)
                if "error" in r:
                    failed = True
                    print(f"{r['variant']:>22}  failed: {r['error']}", flush=True)
                    continue
                base = r["ms_per_iteration"] if r["variant"] == "deepxde" else base
                ratio = f"{base / r['ms_per_iteration']:.2f}x" if base else ""
                print(f"{r['variant']:>22} {r['ms_per_iteration']:>9.3f} {r['rel_l2']:>12.5e} {ratio:>11}", flush=True)
            code = child.wait()
            pending = pending[len(rows):]
            if code == 0:
                break
            failed = True
            if code != RESTART or not rows:  # the process died during a variant (a crash, not a reported error)
                if not pending:  # every variant reported, then the process failed
                    print(f"# the process of {', '.join(group)} exited with {code}: {last_line}", flush=True)
                    break
                print(f"{pending[0]:>22}  failed: exit status {code}: {last_line}", flush=True)
                pending = pending[1:]
            if pending:  # the variants after a crash or a CUDA error: in a fresh process
                print("# the variants after it run in a new process", flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
