r"""The Helmholtz equation in two dimensions with a manufactured solution."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pinn.conditions import Dirichlet
from pinn.errors import ConfigError, check_flag
from pinn.geometry import Box
from pinn.models import OutputTransform
from pinn.operators import laplacian
from pinn.pdes.base import PDE, VanishingOnBox, ZeroValues
from pinn.point_cache import point_function


class Helmholtz(PDE):
    r"""Helmholtz's equation on :math:`\Omega = [-1, 1]^2` with zero Dirichlet data,

    .. math::
        \Delta u + k^2 u = q, \qquad
        u^\star = \sin(a_1 \pi x) \sin(a_2 \pi y), \qquad
        q = \bigl(k^2 - (a_1^2 + a_2^2)\pi^2\bigr)\, u^\star,

    the benchmark of Wang, Teng & Perdikaris (2021) with :math:`k = 1, a_1 = 1, a_2 = 4`.
    Integer :math:`a_i` make :math:`u^\star` vanish on the boundary.

    Args:
        k: wave number.
        a1, a2: integer frequencies of the solution along ``x`` and ``y``.
        hard_constraint: build ``u = φ(x) N(x)`` with φ vanishing on the boundary, so the
            boundary condition holds exactly and its loss term disappears.
    """

    def __init__(self, *, k: float = 1.0, a1: int = 1, a2: int = 4, hard_constraint: bool = False):
        super().__init__()
        for name, a in (("a1", a1), ("a2", a2)):
            if isinstance(a, bool) or not isinstance(a, int) or a == 0:
                raise ConfigError(f"pde.{name} must be a non-zero integer (so the solution vanishes on the boundary); got {a!r}")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k):
            raise ConfigError(f"pde.k must be a finite number; got {k!r}")
        eigenvalue = (a1**2 + a2**2) * math.pi**2
        if abs(k**2 - eigenvalue) <= 1e-6 * eigenvalue:  # the source vanishes, and u = 0 solves the problem too
            raise ConfigError(f"pde.k={k} is at resonance: k² = (a1² + a2²)π², where the solution is not unique; "
                              "choose another pde.k")
        self.k, self.a1, self.a2 = float(k), a1, a2
        self.hard_constraint = check_flag("pde.hard_constraint", hard_constraint)
        self.domain = Box(-1.0, 1.0, dim=2)
        self.boundary = Dirichlet(lambda x: torch.zeros_like(x[:, :1]))
        self.point_sets = ("interior",) if hard_constraint else ("interior", "boundary")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, a=({self.a1}, {self.a2}), hard_constraint={self.hard_constraint})"

    def exact(self, x: Tensor) -> Tensor:
        return (torch.sin(self.a1 * math.pi * x[:, :1]) * torch.sin(self.a2 * math.pi * x[:, 1:]))

    @point_function
    def source(self, x: Tensor) -> Tensor:
        return (self.k**2 - (self.a1**2 + self.a2**2) * math.pi**2) * self.exact(x)

    def residual(self, u, x: Tensor) -> Tensor:
        return laplacian(u, x) + self.k**2 * u - self.source(x)

    def constrain(self, model: nn.Module) -> nn.Module:
        if not self.hard_constraint:
            return model
        lo, hi = self.domain.bounds
        return OutputTransform(model, ZeroValues(), VanishingOnBox(lo, hi))

    def residuals(self, model, points, engine):
        x, u = engine.evaluate(model, points["interior"])
        terms = {"pde": self.residual(u, x)}
        if not self.hard_constraint:
            terms["boundary"] = self.boundary.residual(model, points["boundary"], engine)
        return terms
