r"""Collocation-point samplers.

A sampler draws points of the unit hypercube from an explicit ``torch.Generator`` and lets the
domain map them (:mod:`pinn.geometry`). It returns *named* point sets, one per loss term:
``{"interior": (n_interior, d), "boundary": (n_boundary, d)}``, so that every condition works
on its own points and nothing slices a concatenated batch.

All randomness comes from the generator passed to :meth:`Sampler.sample`; the samplers keep no
state of their own, so saving the generator's state is enough to reproduce a run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from pinn.errors import check_positive
from pinn.geometry import Domain


class Sampler(ABC):
    """Draws ``n_interior`` points inside a domain and ``n_boundary`` on its boundary."""

    def __init__(self, *, n_interior: int = 2000, n_boundary: int = 400):
        check_positive("sampler.n_interior", n_interior)
        check_positive("sampler.n_boundary", n_boundary, allow_zero=True)
        self.n_interior = n_interior
        self.n_boundary = n_boundary

    @abstractmethod
    def unit(self, n: int, dim: int, generator: torch.Generator) -> Tensor:
        """``n`` points of ``[0, 1)^dim`` in float64 on the CPU."""

    def sample(self, domain: Domain, generator: torch.Generator) -> dict[str, Tensor]:
        """Named point sets in float64 on the CPU; the trainer moves them to its device and dtype."""
        points = {"interior": domain.interior(self.unit(self.n_interior, domain.dim, generator))}
        if self.n_boundary > 0:
            points["boundary"] = domain.boundary(self.unit(self.n_boundary, domain.boundary_unit_dim, generator))
        return points


class UniformSampler(Sampler):
    """Independent uniform points."""

    def unit(self, n: int, dim: int, generator: torch.Generator) -> Tensor:
        return torch.rand(n, dim, generator=generator, dtype=torch.float64)


class SobolSampler(Sampler):
    """Scrambled Sobol points (``torch.quasirandom.SobolEngine``): low discrepancy, so fewer
    points cover the domain as evenly as many uniform ones. Each call draws a fresh scramble
    seed from the generator, so resampling gives a new, still low-discrepancy, point set.
    """

    def unit(self, n: int, dim: int, generator: torch.Generator) -> Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n, dtype=torch.float64)
