r"""Poisson's equation in ``d`` dimensions with a manufactured solution."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pinn.conditions import Dirichlet
from pinn.derivatives import Engine
from pinn.errors import ConfigError, check_choice, check_positive
from pinn.geometry import Box
from pinn.operators import laplacian
from pinn.pdes.base import PDE, Model


class Poisson(PDE):
    r"""Poisson's equation on a box with Dirichlet data,

    .. math::
        -\Delta u = f \quad \text{in } \Omega = [\mathrm{lo}, \mathrm{hi}]^d, \qquad
        u = u^\star \quad \text{on } \partial\Omega,

    with one of two manufactured solutions and its source:

    .. math::
        \text{product:}\quad u^\star(x) = \prod_{i=1}^{d} \sin(k \pi x_i), \qquad f = d\,(k\pi)^2\, u^\star;

        \text{sum:}\quad u^\star(x) = \frac{1}{\sqrt d} \sum_{i=1}^{d} \sin(k \pi x_i), \qquad f = (k\pi)^2\, u^\star.

    The product is the classic benchmark; with integer ``k`` on the default box
    :math:`[-1, 1]^d` its boundary data vanish, but it shrinks towards zero almost everywhere
    as ``d`` grows. The sum stays of order one in any dimension (its root mean square over the
    box is :math:`1/\sqrt2` for integer ``k``), which makes it the test for high dimensions.

    Args:
        dim: number of space dimensions ``d``.
        k: wave number of the solution.
        lo, hi: the box's corners (the same in every dimension).
        solution: ``"product"`` or ``"sum"``.
    """

    SOLUTIONS = ("product", "sum")

    def __init__(self, *, dim: int = 2, k: float = 1.0, lo: float = -1.0, hi: float = 1.0, solution: str = "product"):
        super().__init__()
        check_positive("pde.dim", dim)
        if not isinstance(k, (int, float)) or isinstance(k, bool) or k == 0:
            raise ConfigError(f"pde.k must be a non-zero number; got {k!r}")
        check_choice("pde.solution", solution, self.SOLUTIONS)
        self.k, self.solution = float(k), solution
        self.domain = Box(lo, hi, dim=dim)
        self.boundary = Dirichlet(self.exact)

    def __repr__(self) -> str:
        return f"Poisson(dim={self.dim}, k={self.k}, solution={self.solution!r}, domain={self.domain})"

    def exact(self, x: Tensor) -> Tensor:
        waves = torch.sin(self.k * math.pi * x)
        if self.solution == "sum":
            return waves.sum(dim=1, keepdim=True) / math.sqrt(self.dim)
        return waves.prod(dim=1, keepdim=True)

    def source(self, x: Tensor) -> Tensor:
        factor = self.dim if self.solution == "product" else 1
        return factor * (self.k * math.pi) ** 2 * self.exact(x)

    def residual(self, u: Tensor, x: Tensor) -> Tensor:
        return -laplacian(u, x) - self.source(x)

    def losses(self, model: Model, points: dict[str, Tensor], engine: Engine) -> dict[str, Tensor]:
        x, u = engine.evaluate(model, points["interior"])
        return {
            "pde": self.residual(u, x).square().mean(),
            "boundary": self.boundary.loss(model, points["boundary"], engine),
        }
