r"""The one-dimensional wave equation with a closed-form solution."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pinn.conditions import Dirichlet, Initial, InitialVelocity
from pinn.errors import check_flag, check_positive
from pinn.geometry import Interval, SpaceTime
from pinn.models import OutputTransform
from pinn.operators import partial
from pinn.pdes.base import PDE


class Wave(PDE):
    r"""A vibrating string,

    .. math::
        u_{tt} = c^2 u_{xx} \quad \text{on } [0, 1] \times [0, T], \qquad u(0, t) = u(1, t) = 0,

        u(x, 0) = \sin(\pi x) + \tfrac12 \sin(4\pi x), \qquad u_t(x, 0) = 0,

    solved by :math:`u^\star = \sin(\pi x)\cos(c\pi t) + \tfrac12 \sin(4\pi x)\cos(4c\pi t)`
    (PINNacle's Wave1d with :math:`c = 2`). Points are ``(x, t)``.

    Args:
        c: wave speed.
        t_end: final time ``T``.
        hard_constraint: ``u = u_0(x) + 4x(1-x)\,(1 - e^{-(t/τ)^2}) N(x, t)``: exact initial
            value, initial velocity and boundary values.
        time_scale: ``τ`` of the hard constraint. The time factor grows like :math:`(t/τ)^2`
            and levels off at one after a few ``τ``, so that ``N`` stays of moderate size: with
            the time factor :math:`t^2` instead, ``N`` would have to reach
            :math:`u_{tt} / (8x(1-x))` near ``t = 0``, up to about 500 here.
    """

    second_order = "diagonal"  # u_tt and u_xx separately
    needs_gradient = True  # u_t at t = 0
    point_sets = ("interior", "boundary", "initial")

    def __init__(self, *, c: float = 2.0, t_end: float = 1.0, hard_constraint: bool = False, time_scale: float = 0.1):
        super().__init__()
        check_positive("pde.c", c, integer=False)
        check_positive("pde.t_end", t_end, integer=False)
        check_positive("pde.time_scale", time_scale, integer=False)
        self.c, self.time_scale = float(c), float(time_scale)
        self.hard_constraint = check_flag("pde.hard_constraint", hard_constraint)
        self.domain = SpaceTime(Interval(0.0, 1.0), 0.0, float(t_end))
        self.boundary = Dirichlet(lambda x: torch.zeros_like(x[:, :1]))
        self.initial = Initial(self.initial_value)
        self.initial_velocity = InitialVelocity(lambda x: torch.zeros_like(x[:, :1]))
        if hard_constraint:
            self.point_sets = ("interior",)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(c={self.c}, domain={self.domain}, hard_constraint={self.hard_constraint})"

    def initial_value(self, x: Tensor) -> Tensor:
        s = x[:, :1]
        return torch.sin(math.pi * s) + 0.5 * torch.sin(4 * math.pi * s)

    def exact(self, x: Tensor) -> Tensor:
        s, t = x[:, :1], x[:, 1:]
        return (torch.sin(math.pi * s) * torch.cos(self.c * math.pi * t)
                + 0.5 * torch.sin(4 * math.pi * s) * torch.cos(4 * self.c * math.pi * t))

    def residual(self, u, x: Tensor) -> Tensor:
        return partial(u, x, 1, 1) - self.c**2 * partial(u, x, 0, 0)

    def constrain(self, model: nn.Module) -> nn.Module:
        if not self.hard_constraint:
            return model

        def scale(x: Tensor) -> Tensor:
            s, t = x[:, :1], x[:, 1:]
            return 4 * s * (1 - s) * -torch.expm1(-(t / self.time_scale) ** 2)

        return OutputTransform(model, self.initial_value, scale)

    def residuals(self, model, points, engine):
        x, u = engine.evaluate(model, points["interior"])
        terms = {"pde": self.residual(u, x)}
        if not self.hard_constraint:
            terms["boundary"] = self.boundary.residual(model, points["boundary"], engine)
            terms["initial"] = self.initial.residual(model, points["initial"], engine)
            terms["initial_velocity"] = self.initial_velocity.residual(model, points["initial"], engine)
        return terms
