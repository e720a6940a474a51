r"""Viscous Burgers' equation, compared with the exact Cole–Hopf solution."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from pinn.conditions import Dirichlet, Initial
from pinn.errors import check_positive
from pinn.geometry import Interval, SpaceTime
from pinn.operators import partial
from pinn.pdes.base import PDE
from pinn.reference import burgers as cole_hopf


class Burgers(PDE):
    r"""Burgers' equation,

    .. math::
        u_t + u u_x = \nu u_{xx} \quad \text{on } [-1, 1] \times [0, 1], \qquad
        u(x, 0) = -\sin(\pi x), \qquad u(\pm 1, t) = 0,

    with :math:`\nu = 0.01/\pi` (Raissi, Perdikaris & Karniadakis 2019): a front steepens at
    :math:`x = 0` (slope −152 at :math:`t \approx 0.51`). The reference is the exact solution
    by the Cole–Hopf transform, evaluated by quadrature to round-off at any point
    (:mod:`pinn.reference.burgers`). Points are ``(x, t)``.

    Args:
        nu: viscosity.
    """

    second_order = "diagonal"
    needs_gradient = True
    point_sets = ("interior", "boundary", "initial")

    def __init__(self, *, nu: float = 0.01 / math.pi):
        super().__init__()
        check_positive("pde.nu", nu, integer=False)
        self.nu = float(nu)
        self.domain = SpaceTime(Interval(-1.0, 1.0), 0.0, 1.0)
        self.boundary = Dirichlet(lambda x: torch.zeros_like(x[:, :1]))
        self.initial = Initial(lambda x: -torch.sin(math.pi * x[:, :1]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(nu={self.nu:.6g}, domain={self.domain})"

    def exact(self, x: Tensor) -> Tensor:
        xs = x.detach().double().cpu().numpy()
        u = cole_hopf.solution(xs[:, 0], xs[:, 1], nu=self.nu)
        return torch.from_numpy(np.ascontiguousarray(u)).reshape(-1, 1).to(x)

    def residual(self, u, x: Tensor) -> Tensor:
        u_x = partial(u, x, 0)
        return partial(u, x, 1) + u * u_x - self.nu * partial(u, x, 0, 0)

    def residuals(self, model, points, engine):
        x, u = engine.evaluate(model, points["interior"])
        return {
            "pde": self.residual(u, x),
            "boundary": self.boundary.residual(model, points["boundary"], engine),
            "initial": self.initial.residual(model, points["initial"], engine),
        }
