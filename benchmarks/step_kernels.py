"""Operations per training step of each variant: what a CUDA graph replays, counted on any device.

    python benchmarks/step_kernels.py [--variants forward+fused forward+triton+fused] [--dim 2] [--points 2000]
                                      [--hard-constraint]

A replayed CUDA graph of a small PINN's step costs about a few microseconds per kernel it holds
(benchmarks/RESULTS.md: 0.54 ms for the forward engine's step on an H100), so the number of
kernels is what a step of 2,000 points comes down to. This counts, for one Adam step of the 2-D
Poisson problem of benchmarks/vs_deepxde.py (3x50 tanh MLP), every PyTorch operation that does
work (views, allocations and profiler markers left out) and every Triton kernel launched, in
eager mode, which is what capture records. Use ``+fused`` variants (Adam's one-kernel update, on
the CPU as on a GPU, and what the trainer's captured steps take): the multi-tensor Adam runs per
parameter on the CPU but as 17 multi-tensor operations on a GPU. Without a GPU, Triton's kernels run in its
interpreter (the script sets ``TRITON_INTERPRET=1``); the operations inside them are not counted, only their launches.
``--hard-constraint`` counts the problem with its boundary values built in (``pde.hard_constraint=true``:
``u = φ(x) N(x)``, no boundary loss).
"""

from __future__ import annotations

import argparse
import collections
import os

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Without a CUDA GPU the Triton kernels run in Triton's CPU interpreter, which it chooses when
# first imported (by pinn, below): their launches count the same.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from common import make_step, wrapped_kernels
from pinn.models import MLP
from pinn.pdes import Poisson
from pinn.sampling import SobolSampler

#: operations that launch no kernel
NO_WORK = {"empty", "empty_strided", "new_empty", "new_empty_strided", "set_", "detach", "_record_function_enter_new",
           "_record_function_exit", "_local_scalar_dense", "lift_fresh"}


class Counter(TorchDispatchMode):
    """Counts operations by name; paused while a Triton kernel runs (the interpreter's own work)."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not (self.paused or func.is_view or name in NO_WORK):
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


class CountedKernel:
    """A Triton kernel whose launches are counted as one operation each."""

    def __init__(self, kernel, name: str, counter: Counter):
        self.kernel, self.name, self.counter = kernel, name, counter

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def counted(*args, **kwargs):
            self.counter.ops[f"triton:{self.name}"] += 1
            self.counter.paused = True
            try:
                return launch(*args, **kwargs)
            finally:
                self.counter.paused = False

        return counted


def count(variant: str, dim: int, points: int, device: str, hard_constraint: bool = False) -> collections.Counter[str]:
    pde = Poisson(dim=dim, hard_constraint=hard_constraint)
    sample = SobolSampler(n_interior=points, n_boundary=max(points // 5, 1)).sample(
        pde.domain, torch.Generator().manual_seed(0), pde.point_sets)  # the sets the PDE reads: none on the boundary with --hard-constraint
    sample = {k: v.to(device=device, dtype=torch.float32) for k, v in sample.items()}
    torch.manual_seed(0)
    step = make_step(variant, pde, pde.constrain(MLP(dim, 1, width=50, depth=3).to(device)), sample, device)
    for _ in range(2):  # the optimizer's state is created on the first steps
        step()
    counter = Counter()
    with wrapped_kernels(lambda kernel, name: CountedKernel(kernel, name, counter)), counter:
        step()
    return counter.ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["forward+fused", "stochastic+fused", "forward+triton+fused",
                                                          "stochastic+triton+fused"])
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hard-constraint", action="store_true", help="u = φ(x) N(x), no boundary loss")
    args = parser.parse_args()
    sets = f"{args.points} points, hard constraint" if args.hard_constraint else f"{args.points} + {max(args.points // 5, 1)} points"
    print(f"# d = {args.dim}, {sets}, 3x50 tanh, one Adam step, device {args.device}")
    print(f"{'variant':>26} {'operations':>10} {'of them Triton':>14}  most frequent")
    for variant in args.variants:
        ops = count(variant, args.dim, args.points, args.device, args.hard_constraint)
        total, triton = sum(ops.values()), sum(v for k, v in ops.items() if k.startswith("triton:"))
        common = ", ".join(f"{k} {v}" for k, v in ops.most_common(6))
        print(f"{variant:>26} {total:>10} {triton:>14}  {common}", flush=True)


if __name__ == "__main__":
    main()
