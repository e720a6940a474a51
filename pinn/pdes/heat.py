r"""The heat equation: forward (closed-form solution) and inverse (unknown diffusivity)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pinn.conditions import Dirichlet, Initial, PointData
from pinn.errors import ConfigError, check_flag, check_positive
from pinn.geometry import Box, SpaceTime
from pinn.models import OutputTransform
from pinn.operators import partial
from pinn.pdes.base import PDE, VanishingOnBox, relative_error, space_laplacian


class Heat(PDE):
    r"""Heat conduction in ``dim`` = 1 or 2 space dimensions,

    .. math::
        u_t = \alpha\, \Delta_x u \quad \text{on } [0, 1]^d \times [0, T], \qquad
        u = 0 \text{ on } \partial[0,1]^d, \qquad u(x, 0) = \prod_i \sin(n \pi x_i),

    whose solution is :math:`u^\star = e^{-\alpha d n^2 \pi^2 t} \prod_i \sin(n \pi x_i)`.
    Points are ``(x_1, …, x_d, t)``, time last.

    Args:
        dim: space dimensions (1 or 2).
        alpha: diffusivity.
        n: integer mode number of the initial profile.
        t_end: final time ``T``.
        hard_constraint: ``u = u_0(x) + t\,φ(x) N(x, t)``, exact initial and boundary values.
    """

    second_order = "diagonal"  # u_xx without u_tt
    needs_gradient = True  # u_t
    point_sets = ("interior", "boundary", "initial")

    def __init__(self, *, dim: int = 1, alpha: float = 0.1, n: int = 1, t_end: float = 1.0, hard_constraint: bool = False):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim not in (1, 2):
            raise ConfigError(f"pde.dim must be 1 or 2 (space dimensions); got {dim!r}")
        check_positive("pde.alpha", alpha, integer=False)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"pde.n must be a positive integer; got {n!r}")
        check_positive("pde.t_end", t_end, integer=False)
        self.space_dim, self.alpha, self.n = dim, float(alpha), n
        self.hard_constraint = check_flag("pde.hard_constraint", hard_constraint)
        self.space = Box(0.0, 1.0, dim=dim)
        self.domain = SpaceTime(self.space, 0.0, float(t_end))
        self.boundary = Dirichlet(lambda x: torch.zeros_like(x[:, :1]))
        self.initial = Initial(self.initial_value)
        if hard_constraint:
            self.point_sets = ("interior",)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.space_dim}, alpha={self.alpha}, n={self.n}, domain={self.domain})"

    def initial_value(self, x: Tensor) -> Tensor:
        return torch.sin(self.n * math.pi * x[:, : self.space_dim]).prod(dim=1, keepdim=True)

    def exact(self, x: Tensor) -> Tensor:
        decay = torch.exp(-self.alpha * self.space_dim * (self.n * math.pi) ** 2 * x[:, -1:])
        return decay * self.initial_value(x)

    def residual(self, u, x: Tensor, alpha) -> Tensor:
        return partial(u, x, self.space_dim) - alpha * space_laplacian(u, x, self.space_dim)

    def constrain(self, model: nn.Module) -> nn.Module:
        if not self.hard_constraint:
            return model
        lo, hi = self.space.bounds
        box = VanishingOnBox(lo, hi)
        return OutputTransform(model, self.initial_value, lambda x: x[:, -1:] * box(x[:, :-1]))

    def residuals(self, model, points, engine):
        x, u = engine.evaluate(model, points["interior"])
        terms = {"pde": self.residual(u, x, self.alpha)}
        if not self.hard_constraint:
            terms["boundary"] = self.boundary.residual(model, points["boundary"], engine)
            terms["initial"] = self.initial.residual(model, points["initial"], engine)
        return terms


class HeatInverse(Heat):
    r"""The heat equation of :class:`Heat` with an unknown diffusivity :math:`\alpha`, learned
    with the field from ``n_data`` observations :math:`u^\star(x_j, t_j)(1 + \sigma\,\xi_j)`,
    :math:`\xi_j \sim N(0, 1)` (relative noise ``noise`` = σ), at fixed Sobol points drawn
    with ``data_seed``. :math:`\alpha = e^{\theta}` keeps it positive; θ starts at
    :math:`\log \alpha_0`. Reported: ``alpha`` and ``alpha_rel_error``.

    Args:
        alpha: the true diffusivity that made the data.
        alpha_init: the starting guess :math:`\alpha_0`.
        n_data, noise, data_seed: the observations.
        (the rest as for :class:`Heat`)
    """

    def __init__(self, *, dim: int = 1, alpha: float = 0.1, alpha_init: float = 0.5, n: int = 1, t_end: float = 1.0,
                 n_data: int = 50, noise: float = 0.01, data_seed: int = 0):
        super().__init__(dim=dim, alpha=alpha, n=n, t_end=t_end)
        check_positive("pde.alpha_init", alpha_init, integer=False)
        check_positive("pde.n_data", n_data)
        check_positive("pde.noise", noise, allow_zero=True, integer=False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha_init), dtype=torch.float64))
        gen = torch.Generator().manual_seed(data_seed)
        unit = torch.quasirandom.SobolEngine(self.dim, scramble=True, seed=data_seed).draw(n_data, dtype=torch.float64)
        x = self.domain.interior(unit)
        clean = self.exact(x)
        self.data = PointData(x, clean * (1 + noise * torch.randn(clean.shape, generator=gen, dtype=torch.float64)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha_true={self.alpha}, observations={len(self.data.points)}, domain={self.domain})"

    def residuals(self, model, points, engine):
        x, u = engine.evaluate(model, points["interior"])
        return {
            "pde": self.residual(u, x, self.log_alpha.exp()),
            "boundary": self.boundary.residual(model, points["boundary"], engine),
            "initial": self.initial.residual(model, points["initial"], engine),
            "data": self.data.residual(model),
        }

    def metrics(self) -> dict[str, float]:
        alpha = self.log_alpha.exp().item()
        return {"alpha": alpha, "alpha_rel_error": relative_error(alpha, self.alpha)}
