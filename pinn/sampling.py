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

import numpy as np
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
        for region in (regions,) if isinstance(regions, str) else regions:  # one region named alone
            n = self.count(region)
            if n <= 0 and not hasattr(self, f"n_{region}"):
                raise ConfigError(
                    f"the problem asks for points in region {region!r} of {domain}, but samplers draw only interior, "
                    "boundary and initial points; take a part of the boundary from the boundary points (in the "
                    "PDE's residuals), and keep point_sets to those regions"
                )
            if n <= 0:
                raise ConfigError(f"the problem needs points in region {region!r} of {domain}, but "
                                  f"sampler.n_{region}={n}; set sampler.n_{region} > 0")
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
        if dim > torch.quasirandom.SobolEngine.MAXDIM:
            raise ConfigError(f"Sobol points have at most {torch.quasirandom.SobolEngine.MAXDIM} coordinates, and this "
                              f"domain's points take {dim} (a ball's interior takes one more than its dimension); use "
                              "sampler=uniform or sampler=lhs")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n, dtype=torch.float64)


class LatinHypercubeSampler(Sampler):
    """Latin hypercube points (``scipy.stats.qmc.LatinHypercube``): split ``[0, 1)`` into ``n``
    equal slices, and every coordinate of the ``n`` points has exactly one value in each slice,
    at a random place in it. Evenly spread along each axis, like DeepXDE's ``LHS`` (not jointly,
    as Sobol points are). Each call draws a fresh seed from the generator."""

    def unit(self, n: int, dim: int, generator: torch.Generator) -> Tensor:
        from scipy.stats import qmc  # here: importing scipy.stats takes half a second that other samplers need not pay

        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return torch.from_numpy(qmc.LatinHypercube(d=dim, seed=np.random.default_rng(seed)).random(n))


class AdaptiveSampler(SobolSampler):
    """A sampler that places interior points where the equation's residual is large.

    At every resampling step (``trainer.resample_every``) the trainer scores ``n_candidates``
    fresh Sobol points by the squared residual of the PDE's equation (its ``interior_terms``)
    and hands the scores to :meth:`adapt`.
    """

    def __init__(self, *, n_interior: int = 2000, n_boundary: int = 400, n_initial: int = 400,
                 n_candidates: int = 20000):
        super().__init__(n_interior=n_interior, n_boundary=n_boundary, n_initial=n_initial)
        check_positive("sampler.n_candidates", n_candidates)
        self.n_candidates = n_candidates

    def candidates(self, domain: Domain, generator: torch.Generator) -> Tensor:
        """Points to score, float64 on the CPU."""
        return domain.sample("interior", self.n_candidates, lambda m, k: self.unit(m, k, generator))

    @abstractmethod
    def adapt(self, domain: Domain, generator: torch.Generator, regions: tuple[str, ...], points: dict[str, Tensor],
              candidates: Tensor, scores: Tensor) -> dict[str, Tensor]:
        """The next point sets, given the current ones and the candidates' residual scores ``(C,)``."""


class RARSampler(AdaptiveSampler):
    r"""Residual-based adaptive refinement (Lu et al. 2021, DeepXDE): keep the points and add
    the ``n_add`` candidates with the largest residual, so the interior set grows by ``n_add`` at
    every resampling step."""

    def __init__(self, *, n_interior: int = 2000, n_boundary: int = 400, n_initial: int = 400,
                 n_candidates: int = 20000, n_add: int = 100):
        super().__init__(n_interior=n_interior, n_boundary=n_boundary, n_initial=n_initial, n_candidates=n_candidates)
        check_positive("sampler.n_add", n_add)
        self.n_add = n_add

    def adapt(self, domain, generator, regions, points, candidates, scores):
        top = scores.topk(min(self.n_add, len(scores))).indices
        return {**points, "interior": torch.cat([points["interior"], candidates[top]])}


class RADSampler(AdaptiveSampler):
    r"""Residual-based adaptive distribution (Wu et al. 2023): draw a new interior set from the
    candidates with probability :math:`p(x) \propto \varepsilon^k(x) / \overline{\varepsilon^k} + c`,
    :math:`\varepsilon` the residual's magnitude; ``k = 0`` or large ``c`` is uniform sampling,
    large ``k`` concentrates the points where the residual is largest. The other sets are drawn
    afresh, as in plain resampling."""

    def __init__(self, *, n_interior: int = 2000, n_boundary: int = 400, n_initial: int = 400,
                 n_candidates: int = 20000, k: float = 1.0, c: float = 1.0):
        super().__init__(n_interior=n_interior, n_boundary=n_boundary, n_initial=n_initial, n_candidates=n_candidates)
        check_positive("sampler.k", k, integer=False, allow_zero=True)
        check_positive("sampler.c", c, integer=False, allow_zero=True)
        if n_candidates < n_interior:
            raise ConfigError(f"sampler.n_candidates ({n_candidates}) must be at least sampler.n_interior ({n_interior})")
        self.k, self.c = float(k), float(c)

    def adapt(self, domain, generator, regions, points, candidates, scores):
        residual = scores.sqrt()  # scores are squared residuals
        density = residual ** self.k
        if not (torch.isfinite(density.mean()) and density.mean() > 1e-300) and residual.max() > 0:
            # ε^k overflowed or underflowed (a large k, or residuals far from 1): the same ratios
            # from (ε / max ε)^k, which does neither. Only then, so that the usual draws keep
            # their arithmetic.
            density = (residual / residual.max()) ** self.k
        weights = density / density.mean().clamp(min=1e-300) + self.c
        # With c = 0, candidates of zero residual keep a vanishing weight: where fewer than
        # n_interior have any, the rest are drawn among them at random, not taken in index order.
        weights = weights.clamp(min=1e-9 * float(weights.max()) if weights.max() > 0 else 1.0)
        chosen = torch.multinomial(weights, self.n_interior, replacement=False, generator=generator)
        fresh = self.sample(domain, generator, tuple(r for r in regions if r != "interior"))
        return {**fresh, "interior": candidates[chosen]}
