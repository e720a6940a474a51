"""What simple networks could achieve on `pde=poisson_ball`: relative L2 errors of the best
``N`` of a few kinds in ``u = (1 - |x|²) N(x)``, on the trainer's own test points.

    python benchmarks/ball_baselines.py [--dims 100 1000] [--ranks 32 64 128 256 512]

Each row is a least-squares fit of ``N`` to the solution's ``g`` (``u* = (1 - |x|²) g``),
weighted by ``(1 - |x|²)`` so that the error is the one the trainer reports for ``u``:

* ``constant`` and ``linear``: the best ``N`` constant, and affine in ``x``.
* ``linear + quadratic``: affine plus a multiple of ``xᵀAx``, where ``A`` is the quadratic
  term of ``g``'s Taylor expansion at the origin: with ``θᵢ ≈ 1 + xᵢ + xᵢ₊₁ - xᵢ₊₁²/2``,
  ``sin θᵢ ≈ sin 1 + cos 1 (xᵢ + xᵢ₊₁ - xᵢ₊₁²/2) - sin 1 (xᵢ + xᵢ₊₁)²/2``. Coordinates are
  of order ``1/√d``, so this is most of what the linear fit leaves.
* ``rank k``: the same with ``A`` cut to its ``k`` eigenvalues of largest magnitude (after
  removing its mean eigenvalue, which ``|x|²`` absorbs; ``|x|²`` is also a feature). A network
  whose first layer has ``k`` units sees ``x`` through ``k`` projections only, so the quadratic
  part it can form has rank at most ``k``; this row estimates what that limit costs (an
  estimate, not a bound: the fit ignores cubic and higher terms).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pinn.pdes import PoissonBall  # noqa: E402
from pinn.trainer import TEST_SEED  # noqa: E402


def quadratic_term(pde: PoissonBall) -> torch.Tensor:
    """``A`` (d × d) with ``xᵀAx`` the quadratic term of ``g`` at the origin."""
    c, d = pde.coefficients, pde.dim
    a = torch.zeros(d, d, dtype=torch.float64)
    i = torch.arange(d - 1)
    a[i + 1, i + 1] -= c * math.cos(1) / 2  # -cos 1 · x_{i+1}²/2
    s = c * math.sin(1) / 2  # -sin 1 · (x_i + x_{i+1})²/2
    a[i, i] -= s
    a[i + 1, i + 1] -= s
    a[i, i + 1] -= s
    a[i + 1, i] -= s
    return a


def fit(features: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> float:
    """Relative L2 error of the best ``features @ coef`` against ``target``, both weighted."""
    coef = torch.linalg.lstsq(weight * features, weight * target).solution
    return ((weight * (features @ coef - target)).norm() / (weight * target).norm()).item()


def baselines(d: int, ranks: list[int], n_test: int) -> dict[str, float]:
    pde = PoissonBall(dim=d)
    x, u = pde.reference(n_test, TEST_SEED)
    weight = 1 - x.square().sum(dim=1, keepdim=True)
    g = u / weight
    ones = torch.ones_like(weight)
    affine = torch.cat([ones, x], dim=1)
    a = quadratic_term(pde)
    rows = {"constant": fit(ones, g, weight), "linear": fit(affine, g, weight),
            "linear + quadratic": fit(torch.cat([affine, ((x @ a) * x).sum(1, keepdim=True)], dim=1), g, weight)}
    eigenvalues, vectors = torch.linalg.eigh(a - torch.trace(a) / d * torch.eye(d, dtype=torch.float64))
    order = eigenvalues.abs().argsort(descending=True)
    radius2 = x.square().sum(dim=1, keepdim=True)
    for k in ranks:
        if k >= d:
            continue
        top = order[:k]
        cut = (vectors[:, top] * eigenvalues[top]) @ vectors[:, top].T
        rows[f"rank {k}"] = fit(torch.cat([affine, radius2, ((x @ cut) * x).sum(1, keepdim=True)], dim=1), g, weight)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--ranks", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--n-test", type=int, default=10000, help="test points (the trainer's n_test)")
    args = parser.parse_args()
    if min(args.dims) < 2 or min(args.ranks) < 1 or args.n_test < 2:
        sys.exit("error: dimensions must be at least 2, ranks and --n-test positive")
    print(f"# {time.strftime('%Y-%m-%d')}: rel L2 of the best N in u = (1 - |x|^2) N(x), "
          f"{args.n_test} test points (seed {TEST_SEED}), coefficient_seed 0")
    for d in args.dims:
        for name, error in baselines(d, args.ranks, args.n_test).items():
            print(f"d = {d:>5}  {name:>20}  {error:.3e}", flush=True)


if __name__ == "__main__":
    main()
