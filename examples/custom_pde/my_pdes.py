"""A PDE defined outside the package: a nonlinear Poisson equation on the unit disk.

Train it from the repository root with

    PYTHONPATH=examples/custom_pde python train.py hydra.searchpath=[file://examples/custom_pde] pde=nonlinear_poisson
"""

import torch
from torch import Tensor

from pinn.conditions import Dirichlet
from pinn.geometry import Disk
from pinn.operators import laplacian
from pinn.pdes import PDE
from pinn.point_cache import point_function


class NonlinearPoisson(PDE):
    r"""-Δu + c u³ = f on the unit disk, u = g on its boundary, with u* = cos(x) sin(y)."""

    def __init__(self, *, c: float = 1.0):
        super().__init__()
        self.c = c
        self.domain = Disk(center=(0.0, 0.0), radius=1.0)
        self.boundary = Dirichlet(self.exact)

    def exact(self, x: Tensor) -> Tensor:
        return torch.cos(x[:, :1]) * torch.sin(x[:, 1:])

    @point_function  # a function of the points alone: computed once per point set
    def source(self, x: Tensor) -> Tensor:
        u = self.exact(x)
        return 2 * u + self.c * u**3  # -Δu* = 2u* for this u*

    def residual(self, u, x: Tensor) -> Tensor:
        return -laplacian(u, x) + self.c * u**3 - self.source(x)

    def losses(self, model, points, engine):
        x, u = engine.evaluate(model, points["interior"])
        return {
            "pde": self.residual(u, x).square().mean(),
            "boundary": self.boundary.loss(model, points["boundary"], engine),
        }
