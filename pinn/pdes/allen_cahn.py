r"""The Allen–Cahn equation with periodic boundaries, compared with a spectral reference."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from pinn.conditions import Initial, Periodic
from pinn.errors import ConfigError, check_flag, check_positive
from pinn.geometry import Interval, SpaceTime
from pinn.models import OutputTransform, PeriodicEmbedding
from pinn.operators import partial
from pinn.pdes.base import PDE
from pinn.reference import allen_cahn as spectral

#: Width δ of the bump χ that carries the initial kink at x = ±1 away (see AllenCahn).
KINK_WIDTH = 0.05


class AllenCahn(PDE):
    r"""The Allen–Cahn equation,

    .. math::
        u_t - \varepsilon u_{xx} + 5u^3 - 5u = 0 \quad \text{on } [-1, 1] \times [0, 1], \qquad
        u(x, 0) = x^2 \cos(\pi x),

    periodic in :math:`x` (values and :math:`u_x` agree at :math:`x = \pm 1`), with
    :math:`\varepsilon = 10^{-4}` (Raissi et al. 2019; jaxpi). The reference is a Fourier
    spectral solution with ETDRK4 time stepping (:mod:`pinn.reference.allen_cahn`, accurate to
    about 1e-11), on its grid of 512 points × 201 times, where the error is measured. Points
    are ``(x, t)``.

    Args:
        hard_constraint: build

            .. math::
                u = u_0(x) - s(t)\,\bigl(1 + u_0(x)\bigr)\chi(x) + s(t)\,N(x, t), \qquad
                s(t) = 1 - e^{-t/τ}, \qquad \chi(x) = e^{-2(1 + \cos \pi x)/(\pi δ)^2},

            with ``N`` exactly periodic in ``x`` (``model.periods={0:2.0}``, required), so the
            initial values hold exactly and only the equation is left to train. ``u_0`` is
            periodic in value but not in slope (:math:`u_0'(\pm 1) = \mp 2`, a kink at the
            boundary), which no smooth periodic ``N`` can cancel. The middle term carries that
            kink away: :math:`\chi` is a periodic bump of width ``δ = 0.05`` around
            :math:`x = \pm 1` (where :math:`\chi \approx e^{-(1 - |x|)^2/δ^2}`), and
            :math:`(1 + u_0)\chi` has the kink of :math:`u_0` and vanishes at :math:`x = \pm 1`,
            so the slope mismatch fades like :math:`e^{-t/τ}`. That is how the solution behaves
            there: it sits near the stable state :math:`u = -1`, where the reaction damps
            perturbations at the rate :math:`-(5 - 15u^2) = 10`; the default ``τ = 0.1`` matches
            it. Elsewhere :math:`u = u_0 + s N`, so ``N = 0`` keeps the initial profile, and the
            small positive bump of :math:`u_0` near :math:`x = \pm 0.25` (which the reaction
            grows to +1) is not traded for the trivial state :math:`u = 0`.
        time_scale: ``τ`` of the hard constraint.
    """

    second_order = "diagonal"
    needs_gradient = True
    point_sets = ("interior", "boundary", "initial")
    one_pass_sets = ("interior", "initial")  # the periodic condition reads faces taken from the boundary points
    eps = spectral.EPS

    def __init__(self, *, hard_constraint: bool = False, time_scale: float = 0.1):
        super().__init__()
        check_positive("pde.time_scale", time_scale, integer=False)
        self.hard_constraint, self.time_scale = check_flag("pde.hard_constraint", hard_constraint), float(time_scale)
        self.domain = SpaceTime(Interval(-1.0, 1.0), 0.0, 1.0)
        self.periodic = Periodic(axis=0, lo=-1.0, hi=1.0)
        self.initial = Initial(self.initial_value)
        if hard_constraint:
            self.point_sets = self.one_pass_sets = ("interior",)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps}, domain={self.domain}, hard_constraint={self.hard_constraint})"

    @staticmethod
    def initial_value(x: Tensor) -> Tensor:
        return x[:, :1] ** 2 * torch.cos(math.pi * x[:, :1])

    def constrain(self, model: nn.Module) -> nn.Module:
        if not self.hard_constraint:
            return model
        embeddings = [m.periods for m in model.modules() if isinstance(m, PeriodicEmbedding)]
        if not any(periods.get(0) == 2.0 for periods in embeddings):
            has = f"the network's is {embeddings[0]}" if embeddings else "the network has no periodic embedding"
            raise ConfigError(
                "pde.hard_constraint=true for Allen–Cahn leaves periodicity to the network: "
                f"set model.periods={{0:2.0}} (an exactly periodic embedding in x); {has}")

        def rise(x: Tensor) -> Tensor:  # s(t)
            return -torch.expm1(-x[:, 1:] / self.time_scale)

        def base(x: Tensor) -> Tensor:
            u0 = self.initial_value(x)
            near_boundary = torch.exp(-2 * (1 + torch.cos(math.pi * x[:, :1])) / (math.pi * KINK_WIDTH) ** 2)
            return u0 - rise(x) * (1 + u0) * near_boundary

        return OutputTransform(model, base, rise)

    def residual(self, u, x: Tensor) -> Tensor:
        return partial(u, x, 1) - self.eps * partial(u, x, 0, 0) + 5 * u**3 - 5 * u

    def reference(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """The spectral solution on its own grid (``n`` and ``seed`` are not needed)."""
        xs, ts, u = spectral.reference()
        grid_x, grid_t = np.meshgrid(xs, ts)  # shaped like u: (times, points)
        x = torch.from_numpy(np.stack([grid_x.ravel(), grid_t.ravel()], axis=1))
        return x, torch.from_numpy(np.ascontiguousarray(u).reshape(-1, 1))

    def exact(self, x: Tensor) -> Tensor:
        """The reference interpolated (trigonometric in x, between snapshots in t): for figures."""
        xs, ts, u = spectral.reference()
        points = x.detach().double().cpu().numpy().copy()
        points[:, 0] = (points[:, 0] + 1) % 2 - 1  # x = 1 is x = -1 on the periodic grid
        return torch.from_numpy(spectral.interpolate(xs, ts, u, points)).reshape(-1, 1).to(x)

    def residuals(self, model, points, engine):
        x, u = engine.evaluate(model, points["interior"])
        terms = {"pde": self.residual(u, x)}
        if not self.hard_constraint:
            terms["periodic"] = self.periodic.residual(model, points["boundary"], engine)
            terms["initial"] = self.initial.residual(model, points["initial"], engine)
        return terms
