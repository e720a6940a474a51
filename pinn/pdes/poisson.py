r"""Poisson's equation in ``d`` dimensions with a manufactured solution."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from pinn.conditions import Dirichlet, PointData
from pinn.derivatives import Engine
from pinn.errors import ConfigError, check_choice, check_flag, check_positive
from pinn.geometry import Ball, Box
from pinn.models import OutputTransform
from pinn.operators import laplacian
from pinn.pdes.base import PDE, Model, VanishingOnBall, VanishingOnBox, ZeroValues, relative_error
from pinn.point_cache import point_function
from pinn.reference import lshape


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
        lo, hi: the box's corners: a number (the same in every dimension) or one per dimension.
        solution: ``"product"`` or ``"sum"``.
        hard_constraint: build ``u = φ(x) N(x)`` with φ vanishing on the boundary (allowed when
            the boundary data vanish: the product solution with ``k (hi - lo)`` and ``k lo``
            integers); the boundary loss term then disappears.
    """

    SOLUTIONS = ("product", "sum")

    def __init__(self, *, dim: int = 2, k: float = 1.0, lo: float = -1.0, hi: float = 1.0, solution: str = "product",
                 hard_constraint: bool = False):
        super().__init__()
        check_positive("pde.dim", dim)
        if not isinstance(k, (int, float)) or isinstance(k, bool) or k == 0 or not math.isfinite(k):
            raise ConfigError(f"pde.k must be a finite, non-zero number; got {k!r}")
        check_choice("pde.solution", solution, self.SOLUTIONS)
        self.k, self.solution = float(k), solution
        self.domain = Box(lo, hi, dim=dim)
        self.boundary = Dirichlet(self.exact)
        self.hard_constraint = check_flag("pde.hard_constraint", hard_constraint)
        if hard_constraint:
            # sin(kπc) vanishes for integer kc, up to the rounding of kπc (about 1e-16 |kπc|), at
            # every corner coordinate c
            corners = torch.cat(self.domain.bounds).tolist()
            if solution != "product" or any(abs(math.sin(self.k * math.pi * c)) > 1e-12 * max(1.0, abs(self.k * c))
                                             for c in corners):
                raise ConfigError(
                    "pde.hard_constraint=true needs zero boundary data: solution=product with k*lo and k*hi "
                    f"integers (in every dimension); got solution={solution}, k={k}, lo={lo}, hi={hi}"
                )
            self.point_sets = ("interior",)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dim={self.dim}, k={self.k}, solution={self.solution!r}, domain={self.domain}"
                + (", hard_constraint=True)" if self.hard_constraint else ")"))

    def exact(self, x: Tensor) -> Tensor:
        waves = torch.sin(self.k * math.pi * x)
        if self.solution == "sum":
            return waves.sum(dim=1, keepdim=True) / math.sqrt(self.dim)
        return waves.prod(dim=1, keepdim=True)

    @point_function
    def source(self, x: Tensor) -> Tensor:
        factor = self.dim if self.solution == "product" else 1
        return factor * (self.k * math.pi) ** 2 * self.exact(x)

    def residual(self, u: Tensor, x: Tensor) -> Tensor:
        return -laplacian(u, x) - self.source(x)

    def constrain(self, model: nn.Module) -> nn.Module:
        if not self.hard_constraint:
            return model
        lo, hi = self.domain.bounds
        return OutputTransform(model, ZeroValues(), VanishingOnBox(lo, hi))

    def residuals(self, model: Model, points: dict[str, Tensor], engine: Engine) -> dict[str, Tensor]:
        x, u = engine.evaluate(model, points["interior"])
        terms = {"pde": self.residual(u, x)}
        if not self.hard_constraint:
            terms["boundary"] = self.boundary.residual(model, points["boundary"], engine)
        return terms


class PoissonLShape(PDE):
    r"""Poisson's equation on the L-shaped domain (DeepXDE's example),

    .. math::
        -\Delta u = 1 \quad \text{in } \Omega = [-1, 1]^2 \setminus (0, 1]^2, \qquad u = 0 \text{ on } \partial\Omega,

    built as a CSG difference of two squares. The re-entrant corner at the origin makes
    :math:`u \sim r^{2/3}\sin(2\theta/3)` there, with unbounded derivatives. No closed form
    exists: the reference is the project's second-order finite-difference solution on a grid of
    spacing 1/256 (:mod:`pinn.reference.lshape`; its error is about 5e-5 away from the corner,
    up to 1e-3 next to it, and 2e-4 in relative L2 over the nodes used here), and the error is
    measured at every other node of that grid.
    """

    def __init__(self, *, grid: int = 256):
        super().__init__()
        check_positive("pde.grid", grid)
        if grid < 4:  # coarser grids have no interior node among those the error is measured at
            raise ConfigError(f"pde.grid must be at least 4 (grid cells per unit length; 256 by default); got {grid}")
        self.grid = grid
        self.domain = Box([-1.0, -1.0], [1.0, 1.0]) - Box([0.0, 0.0], [1.0, 1.0])
        self.boundary = Dirichlet(lambda x: torch.zeros_like(x[:, :1]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(domain={self.domain}, reference grid 1/{self.grid})"

    def residual(self, u, x: Tensor) -> Tensor:
        return -laplacian(u, x) - 1.0

    def reference(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        xs, ys, U = lshape.reference(self.grid)
        X, Y = np.meshgrid(xs[::2], ys[::2], indexing="ij")
        values = U[::2, ::2]
        inside = np.isfinite(values)
        x = torch.from_numpy(np.stack([X[inside], Y[inside]], axis=1))
        return x, torch.from_numpy(values[inside]).reshape(-1, 1)

    def exact(self, x: Tensor) -> Tensor:
        """The finite-difference reference, interpolated bilinearly (for figures)."""
        xs, ys, U = lshape.reference(self.grid)
        return torch.from_numpy(lshape.interpolate(xs, ys, U, x.detach().double().cpu().numpy())).reshape(-1, 1).to(x)

    def residuals(self, model, points, engine):
        x, u = engine.evaluate(model, points["interior"])
        return {
            "pde": self.residual(u, x),
            "boundary": self.boundary.residual(model, points["boundary"], engine),
        }


class PoissonBall(PDE):
    r"""Poisson's equation in the unit ball of ``d`` dimensions with an inseparable solution,
    the high-dimensional benchmark of Hu, Shukla, Karniadakis & Kawaguchi (2023, "Tackling the
    curse of dimensionality with physics-informed neural networks"):

    .. math::
        -\Delta u = f \quad \text{in } B^d = \{|x| < 1\}, \qquad u = 0 \text{ on } \partial B^d,

        u^\star(x) = (1 - |x|^2)\, g(x), \qquad
        g(x) = \sum_{i=1}^{d-1} c_i \sin\theta_i, \qquad
        \theta_i = x_i + \cos x_{i+1} + x_{i+1} \cos x_i,

    with fixed coefficients :math:`c_i \sim N(0, 1)` drawn with ``coefficient_seed``. Each
    coordinate interacts with its neighbour, so the solution is not a sum of one-dimensional
    terms. The source follows in closed form, at a cost linear in ``d``:

    .. math::
        \Delta u^\star = -2d\, g - 4\, x \cdot \nabla g + (1 - |x|^2)\, \Delta g, \qquad
        \Delta \sin\theta_i = -\sin\theta_i \bigl((\partial_{x_i}\theta_i)^2 + (\partial_{x_{i+1}}\theta_i)^2\bigr)
            + \cos\theta_i\, (\partial^2_{x_i}\theta_i + \partial^2_{x_{i+1}}\theta_i).

    Mind the geometry when reading its errors: points uniform in a ball of many dimensions lie
    near its surface (the radius of a uniform point exceeds :math:`1 - 3/d` with probability
    about :math:`1 - e^{-3}`) and each coordinate is of order :math:`1/\sqrt d`, so the
    error is measured where :math:`\theta_i` varies little from point to point.

    Args:
        dim: number of space dimensions ``d`` (at least 2).
        coefficient_seed: seed of the coefficients :math:`c_i`.
        hard_constraint: build ``u = (1 - |x|^2) N(x)``, zero on the sphere; the boundary loss
            term then disappears.
    """

    def __init__(self, *, dim: int = 100, coefficient_seed: int = 0, hard_constraint: bool = True):
        super().__init__()
        check_positive("pde.dim", dim)
        if dim < 2:
            raise ConfigError(f"pde.dim must be at least 2 (each coordinate interacts with the next); got {dim}")
        check_positive("pde.coefficient_seed", coefficient_seed, allow_zero=True)
        self.domain = Ball(center=[0.0] * dim, radius=1.0)
        self.boundary = Dirichlet(lambda x: torch.zeros_like(x[:, :1]))
        gen = torch.Generator().manual_seed(coefficient_seed)
        # A buffer, so that it moves to the training device with the PDE (no copy in a CUDA graph).
        self.register_buffer("coefficients", torch.randn(dim - 1, generator=gen, dtype=torch.float64),
                             persistent=False)
        self.hard_constraint = check_flag("pde.hard_constraint", hard_constraint)
        self.point_sets = ("interior",) if hard_constraint else ("interior", "boundary")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, hard_constraint={self.hard_constraint})"

    def _terms(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``g``, ``x·∇g``, ``Δg`` (each ``(N, 1)``) and ``1 - |x|^2``."""
        c = self.coefficients.to(x)
        a, b = x[:, :-1], x[:, 1:]  # x_i and x_{i+1}
        sin_a, cos_a, sin_b, cos_b = torch.sin(a), torch.cos(a), torch.sin(b), torch.cos(b)
        theta = a + cos_b + b * cos_a
        d_a, d_b = 1 - b * sin_a, cos_a - sin_b  # ∂θ/∂x_i, ∂θ/∂x_{i+1}
        d_aa, d_bb = -b * cos_a, -cos_b
        sin_t, cos_t = torch.sin(theta), torch.cos(theta)
        g = (c * sin_t).sum(dim=1, keepdim=True)
        x_dot_grad = (c * cos_t * (a * d_a + b * d_b)).sum(dim=1, keepdim=True)
        lap = (c * (cos_t * (d_aa + d_bb) - sin_t * (d_a.square() + d_b.square()))).sum(dim=1, keepdim=True)
        return g, x_dot_grad, lap, 1 - x.square().sum(dim=1, keepdim=True)

    def exact(self, x: Tensor) -> Tensor:
        g, _, _, vanishing = self._terms(x)
        return vanishing * g

    @point_function
    def source(self, x: Tensor) -> Tensor:
        g, x_dot_grad, lap, vanishing = self._terms(x)
        return 2 * self.dim * g + 4 * x_dot_grad - vanishing * lap  # f = -Δu*

    def residual(self, u, x: Tensor) -> Tensor:
        return -laplacian(u, x) - self.source(x)

    def constrain(self, model: nn.Module) -> nn.Module:
        if not self.hard_constraint:
            return model
        # u = (1 - |x|²) N(x), with the derivatives of 0 and 1 - |x|² in closed form for the
        # forward and stochastic engines
        return OutputTransform(model, ZeroValues(), VanishingOnBall([0.0] * self.dim))

    # The same terms as on the box: the equation inside, the boundary unless built in.
    residuals = Poisson.residuals


class PoissonInverse(PDE):
    r"""Recover an unknown conductivity :math:`\kappa` from sparse, noisy observations,

    .. math::
        -\nabla\cdot(\kappa \nabla u) = f \ \text{in } [-1, 1]^2, \quad u = 0 \text{ on the boundary}, \qquad
        u^\star = \sin(\pi x)\sin(\pi y), \quad f = 2\pi^2 \kappa^\star u^\star,

    with a constant :math:`\kappa`, learned as :math:`\kappa = e^\theta` (so it stays positive)
    from ``n_data`` observations :math:`u^\star(x_j)(1 + \sigma \xi_j)`, :math:`\xi_j \sim N(0,1)`,
    at fixed Sobol points drawn with ``data_seed``. Reported: ``kappa`` and ``kappa_rel_error``.

    Args:
        kappa: the true :math:`\kappa^\star` that made the data.
        kappa_init: the starting guess.
        n_data, noise, data_seed: the observations (relative noise σ = ``noise``).
    """

    def __init__(self, *, kappa: float = 2.0, kappa_init: float = 1.0, n_data: int = 100, noise: float = 0.01,
                 data_seed: int = 0):
        super().__init__()
        check_positive("pde.kappa", kappa, integer=False)
        check_positive("pde.kappa_init", kappa_init, integer=False)
        check_positive("pde.n_data", n_data)
        check_positive("pde.noise", noise, allow_zero=True, integer=False)
        self.kappa = float(kappa)
        self.domain = Box(-1.0, 1.0, dim=2)
        self.boundary = Dirichlet(lambda x: torch.zeros_like(x[:, :1]))
        self.log_kappa = nn.Parameter(torch.tensor(math.log(kappa_init), dtype=torch.float64))
        gen = torch.Generator().manual_seed(data_seed)
        unit = torch.quasirandom.SobolEngine(2, scramble=True, seed=data_seed).draw(n_data, dtype=torch.float64)
        x = self.domain.interior(unit)
        clean = self.exact(x)
        self.data = PointData(x, clean * (1 + noise * torch.randn(clean.shape, generator=gen, dtype=torch.float64)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kappa_true={self.kappa}, observations={len(self.data.points)}, domain={self.domain})"

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(math.pi * x[:, :1]) * torch.sin(math.pi * x[:, 1:])

    @point_function
    def source(self, x: Tensor) -> Tensor:
        return 2 * math.pi**2 * self.kappa * self.exact(x)

    def residual(self, u, x: Tensor, kappa) -> Tensor:
        # A constant κ: -∇·(κ∇u) = -κ Δu.
        return -kappa * laplacian(u, x) - self.source(x)

    def residuals(self, model, points, engine):
        x, u = engine.evaluate(model, points["interior"])
        return {
            "pde": self.residual(u, x, self.log_kappa.exp()),
            "boundary": self.boundary.residual(model, points["boundary"], engine),
            "data": self.data.residual(model),
        }

    def metrics(self) -> dict[str, float]:
        kappa = self.log_kappa.exp().item()
        return {"kappa": kappa, "kappa_rel_error": relative_error(kappa, self.kappa)}
