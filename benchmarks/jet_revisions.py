"""Milliseconds per training step of the forward-mode engines under this checkout's
``pinn/jet.py`` against the one of another git revision, in the same process.

    python benchmarks/jet_revisions.py --rev c5c9612 [--cases forward:2:2000 stochastic:1000:2000 ...]
                                       [--repeats 7] [--seconds 0.3]

For a change to the propagation rules alone: the other revision's ``pinn/jet.py`` is loaded
beside the current one (it imports the rest of ``pinn`` from this checkout, so it must still
fit it). Each case is ``kind:d:N``: a 3x50 tanh MLP on ``N`` points in ``d`` dimensions, the
loss ``mean((Δu + 1)²)`` with ``Δu`` exact (``forward``: the forward engine's Laplacian) or
estimated from 16 random directions shared by the points (``stochastic``), or the heat-like
``mean((u_dd - u_1 + 1)²)`` from the forward engine's per-coordinate second derivatives
(``diagonal``), backward, one Adam step. ``hard`` and ``hard_stochastic`` are ``forward`` and
``stochastic`` with the hard constraint ``u = (1 - |x|²) N(x)`` of ``pde=poisson_ball``, its
factor a plain function (derivatives from ``torch.func``, ``Jet.of_function``'s general path)
and new points at every step (the factor's derivatives are cached while the points stay the
same). The two versions take turns in
blocks of steps lasting about ``--seconds``; the printed times are the medians over
``--repeats`` blocks, so that a load that comes and goes on the machine falls on both.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pinn.jet  # noqa: E402
from common import alternate, parse_case  # noqa: E402
from pinn.models import MLP, OutputTransform  # noqa: E402

KINDS = ("forward", "stochastic", "diagonal", "hard", "hard_stochastic")
DEFAULT_CASES = ("forward:2:2000", "forward:2:20000", "forward:10:2000", "forward:10:20000", "forward:100:2000",
                 "stochastic:100:2000", "stochastic:1000:2000", "stochastic:1000:20000")


def load_revision(rev: str):
    """``pinn/jet.py`` as of ``rev``, imported as a module of its own."""
    source = subprocess.run(["git", "show", f"{rev}:pinn/jet.py"], cwd=ROOT, capture_output=True, text=True)
    if source.returncode != 0:
        sys.exit(f"error: cannot read pinn/jet.py at revision {rev!r}: {source.stderr.strip()}")
    module = types.ModuleType("jet_at_revision")
    sys.modules[module.__name__] = module
    exec(compile(source.stdout, f"{rev}:pinn/jet.py", "exec"), module.__dict__)
    return module


def make_step(jet_module, model, x, optimizer, directions, second, draws=None):
    count = 0

    def step():
        nonlocal count
        if draws is not None:  # new points, as with trainer.resample_every=1
            count += 1
            x.copy_(draws[count % 2])
        optimizer.zero_grad(set_to_none=True)
        out = jet_module.propagate(model, jet_module.Jet.seed(x, second, directions=directions))
        residual = out.sec + 1.0 if second == "laplacian" else out.sec[:, -1] - out.jac[:, 0] + 1.0
        residual.square().mean().backward()
        optimizer.step()
    return step


def compare(kind: str, d: int, n: int, modules: dict, repeats: int, seconds: float) -> dict:
    """Median milliseconds per step of each module in ``modules`` on one case."""
    torch.manual_seed(0)
    model = MLP(d, 1, width=50, depth=3)
    x = torch.rand(n, d)
    draws = None
    if kind.startswith("hard"):
        model = OutputTransform(model, lambda y: torch.zeros_like(y[:, :1]),
                                lambda y: 1 - y.square().sum(dim=1, keepdim=True))
        draws = [torch.rand(n, d), torch.rand(n, d)]
    stochastic = kind in ("stochastic", "hard_stochastic")
    directions = (2 * torch.randint(0, 2, (16, d)).float() - 1) / 4 if stochastic else None
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-9)  # the weights stay (nearly) where they are
    second = "diagonal" if kind == "diagonal" else "laplacian"
    steps = {name: make_step(m, model, x, optimizer, directions, second, draws) for name, m in modules.items()}
    return alternate(steps, repeats, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="the git revision to compare with (a commit, tag or branch)")
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="kind:d:N, e.g. forward:2:2000")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3, help="length of one block of steps")
    args = parser.parse_args()
    cases = [parse_case(case, KINDS, name="kind", example="forward:2:2000") for case in args.cases]
    modules = {"revision": load_revision(args.rev), "current": pinn.jet}
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), float32, median of {args.repeats} blocks")
    print(f"{'kind:d:N':>22} {args.rev[:12]:>12} {'current':>12} {'ratio':>7}")
    for case, parsed in zip(args.cases, cases):
        row = compare(*parsed, modules, args.repeats, args.seconds)
        print(f"{case:>22} {row['revision']:>9.3f} ms {row['current']:>9.3f} ms {row['revision'] / row['current']:>6.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
