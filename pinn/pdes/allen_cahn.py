r"""The Allen–Cahn equation with periodic boundaries, compared with a spectral reference."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from pinn.conditions import Initial, Periodic
from pinn.geometry import Interval, SpaceTime
from pinn.operators import partial
from pinn.pdes.base import PDE
from pinn.reference import allen_cahn as spectral


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
    """

    second_order = "diagonal"
    needs_gradient = True
    point_sets = ("interior", "boundary", "initial")
    eps = spectral.EPS

    def __init__(self):
        super().__init__()
        self.domain = SpaceTime(Interval(-1.0, 1.0), 0.0, 1.0)
        self.periodic = Periodic(axis=0, lo=-1.0, hi=1.0)
        self.initial = Initial(lambda x: x[:, :1] ** 2 * torch.cos(math.pi * x[:, :1]))

    def __repr__(self) -> str:
        return f"AllenCahn(eps={self.eps}, domain={self.domain})"

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
        return {
            "pde": self.residual(u, x),
            "periodic": self.periodic.residual(model, points["boundary"], engine),
            "initial": self.initial.residual(model, points["initial"], engine),
        }
