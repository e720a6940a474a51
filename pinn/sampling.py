r"""Collocation-point samplers.

A sampler draws points of the unit hypercube from an explicit ``torch.Generator`` and lets the
domain map them (:mod:`pinn.geometry`). It returns *named* point sets, one per loss term:
``{"interior": (n_interior, d), "boundary": (n_boundary, d), ...}``, one per region the problem
asks for, so that every condition works on its own points and nothing slices a concatenated batch.

All randomness comes from the generator passed to :meth:`Sampler.sample`; the samplers keep no
state of their own, so saving the generator's state is enough to reproduce a run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from pinn.errors import ConfigError, check_positive
from pinn.geometry import Domain


class Sampler(ABC):
    """Draws ``n_interior`` points inside a domain, ``n_boundary`` on its boundary and, for
    space-time domains, ``n_initial`` at the initial time."""

    def __init__(self, *, n_interior: int = 2000, n_boundary: int = 400, n_initial: int = 400):
        check_positive("sampler.n_interior", n_interior)
        check_positive("sampler.n_boundary", n_boundary, allow_zero=True)
        check_positive("sampler.n_initial", n_initial, allow_zero=True)
        self.n_interior, self.n_boundary, self.n_initial = n_interior, n_boundary, n_initial

    @abstractmethod
    def unit(self, n: int, dim: int, generator: torch.Generator) -> Tensor:
        """``n`` points of ``[0, 1)^dim`` in float64 on the CPU."""

    def count(self, region: str) -> int:
        """How many points this sampler draws in ``region``."""
        return getattr(self, f"n_{region}", 0)

    def sample(self, domain: Domain, generator: torch.Generator,
               regions: tuple[str, ...] = ("interior", "boundary")) -> dict[str, Tensor]:
        """Named point sets, one per region, in float64 on the CPU; the trainer moves them to
        its device and dtype. A region with no points is an error that names the setting."""
        points = {}
        for region in regions:
            n = self.count(region)
            if n <= 0:
                setting = f"sampler.n_{region}={n}" if hasattr(self, f"n_{region}") else f"this sampler has no n_{region}"
                raise ConfigError(
                    f"the problem needs points in region {region!r} of {domain}, but {setting}; "
                    f"set sampler.n_{region} > 0"
                )
            points[region] = domain.sample(region, n, lambda m, k: self.unit(m, k, generator))
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
