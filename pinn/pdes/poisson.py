r"""Poisson's equation in ``d`` dimensions with a manufactured solution."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pinn.conditions import Dirichlet
from pinn.derivatives import Engine
from pinn.errors import ConfigError, check_positive
from pinn.geometry import Box
from pinn.operators import laplacian
from pinn.pdes.base import PDE, Model


class Poisson(PDE):
    r"""Poisson's equation on a box with Dirichlet data,

    .. math::
        -\Delta u = f \quad \text{in } \Omega = [\mathrm{lo}, \mathrm{hi}]^d, \qquad
        u = u^\star \quad \text{on } \partial\Omega,

    with the manufactured solution and its source

    .. math::
        u^\star(x) = \prod_{i=1}^{d} \sin(k \pi x_i), \qquad f = d\,(k\pi)^2\, u^\star.

    With integer ``k`` on the default box :math:`[-1, 1]^d` the boundary data vanish.

    Args:
        dim: number of space dimensions ``d``.
        k: wave number of the solution.
        lo, hi: the box's corners (the same in every dimension).
    """

    def __init__(self, *, dim: int = 2, k: float = 1.0, lo: float = -1.0, hi: float = 1.0):
        check_positive("pde.dim", dim)
        if not isinstance(k, (int, float)) or isinstance(k, bool) or k == 0:
            raise ConfigError(f"pde.k must be a non-zero number; got {k!r}")
        self.k = float(k)
        self.domain = Box(lo, hi, dim=dim)
        self.boundary = Dirichlet(self.exact)

    def __repr__(self) -> str:
        return f"Poisson(dim={self.dim}, k={self.k}, domain={self.domain})"

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(self.k * math.pi * x).prod(dim=1, keepdim=True)

    def source(self, x: Tensor) -> Tensor:
        return self.dim * (self.k * math.pi) ** 2 * self.exact(x)

    def residual(self, u: Tensor, x: Tensor) -> Tensor:
        return -laplacian(u, x) - self.source(x)

    def losses(self, model: Model, points: dict[str, Tensor], engine: Engine) -> dict[str, Tensor]:
        x, u = engine.evaluate(model, points["interior"])
        return {
            "pde": self.residual(u, x).square().mean(),
            "boundary": self.boundary.residual(model, points["boundary"]).square().mean(),
        }
