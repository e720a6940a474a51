r"""Domains: where the points live.

A domain answers three questions: is a point inside (``contains``), where do points of the
unit hypercube land in its interior and on its boundary (``interior``, ``boundary``), and what
is the outward unit normal at a boundary point (``normal``). It holds no randomness: samplers
(:mod:`pinn.sampling`) draw points in ``[0, 1)^k`` and the domain maps them, so the same
sampler serves every domain and a fixed generator gives the same points everywhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from pinn.errors import ConfigError


class Domain(ABC):
    """A region of :math:`\\mathbb{R}^d`; points are ``(N, d)``."""

    dim: int

    @property
    @abstractmethod
    def bounds(self) -> tuple[Tensor, Tensor]:
        """Corners ``(lo, hi)`` of a bounding box, float64 ``(d,)`` each (for plots and test grids)."""

    @abstractmethod
    def contains(self, x: Tensor) -> Tensor:
        """Boolean ``(N,)``: which points lie in the closed domain."""

    @abstractmethod
    def interior(self, unit: Tensor) -> Tensor:
        """Map points of ``[0, 1)^d``, ``(N, d)``, into the domain, uniformly."""

    @property
    @abstractmethod
    def boundary_unit_dim(self) -> int:
        """How many unit-cube coordinates :meth:`boundary` consumes per point."""

    @abstractmethod
    def boundary(self, unit: Tensor) -> Tensor:
        """Map points of ``[0, 1)^k`` (``k = boundary_unit_dim``) onto the boundary, uniformly in area."""

    @abstractmethod
    def normal(self, x: Tensor) -> Tensor:
        """Outward unit normals ``(N, d)`` at boundary points ``x``."""


class Box(Domain):
    r"""The axis-aligned box :math:`\prod_i [\mathrm{lo}_i, \mathrm{hi}_i]`.

    Args:
        lo, hi: corners, one number per dimension (or a number, repeated ``dim`` times).
        dim: the dimension when ``lo`` and ``hi`` are numbers.
    """

    def __init__(self, lo: float | Sequence[float] = -1.0, hi: float | Sequence[float] = 1.0, *, dim: int | None = None):
        lo_list = [float(lo)] * (dim or 1) if isinstance(lo, (int, float)) else [float(v) for v in lo]
        hi_list = [float(hi)] * (dim or 1) if isinstance(hi, (int, float)) else [float(v) for v in hi]
        if len(lo_list) != len(hi_list):
            raise ConfigError(f"Box: lo has {len(lo_list)} entries and hi has {len(hi_list)}; give one per dimension")
        if dim is not None and len(lo_list) != dim:
            raise ConfigError(f"Box: dim={dim} but lo/hi have {len(lo_list)} entries")
        if any(a >= b for a, b in zip(lo_list, hi_list)):
            raise ConfigError(f"Box: need lo < hi in every dimension; got lo={lo_list}, hi={hi_list}")
        self.dim = len(lo_list)
        self.lo = torch.tensor(lo_list, dtype=torch.float64)
        self.hi = torch.tensor(hi_list, dtype=torch.float64)
        widths = self.hi - self.lo
        # Face 2i is x_i = lo_i, face 2i+1 is x_i = hi_i; each has the area of the other widths.
        areas = torch.stack([widths[torch.arange(self.dim) != i].prod() for i in range(self.dim)])
        face_areas = areas.repeat_interleave(2)
        self._face_cdf = face_areas.cumsum(0) / face_areas.sum()

    def __repr__(self) -> str:
        lo, hi = self.lo.tolist(), self.hi.tolist()
        if len(set(lo)) == 1 and len(set(hi)) == 1:
            return f"Box([{lo[0]}, {hi[0]}]^{self.dim})"
        return f"Box(lo={lo}, hi={hi})"

    @property
    def bounds(self) -> tuple[Tensor, Tensor]:
        return self.lo.clone(), self.hi.clone()

    def _corners(self, like: Tensor) -> tuple[Tensor, Tensor]:
        return self.lo.to(like), self.hi.to(like)

    def contains(self, x: Tensor) -> Tensor:
        lo, hi = self._corners(x)
        return ((x >= lo) & (x <= hi)).all(dim=1)

    def interior(self, unit: Tensor) -> Tensor:
        lo, hi = self._corners(unit)
        return lo + unit * (hi - lo)

    @property
    def boundary_unit_dim(self) -> int:
        return self.dim  # one coordinate picks the face, d - 1 place the point on it

    def boundary(self, unit: Tensor) -> Tensor:
        lo, hi = self._corners(unit)
        cdf = self._face_cdf.to(unit)
        face = torch.searchsorted(cdf, unit[:, :1].contiguous(), right=True).clamp_(max=2 * self.dim - 1).squeeze(1)
        axis, upper = face // 2, face % 2 == 1
        # The remaining unit coordinates fill the face's free axes in order.
        n = unit.shape[0]
        free = torch.ones(n, self.dim, dtype=torch.bool, device=unit.device)
        free[torch.arange(n, device=unit.device), axis] = False
        x = torch.empty_like(unit)
        x[free] = unit[:, 1:].reshape(-1)
        x = lo + x * (hi - lo)
        fixed = torch.where(upper, hi[axis], lo[axis])
        x[torch.arange(n, device=unit.device), axis] = fixed
        return x

    def normal(self, x: Tensor) -> Tensor:
        lo, hi = self._corners(x)
        # Distance to each of the 2d faces; the nearest face's normal (corners pick one face).
        dist = torch.cat([(x - lo).abs(), (hi - x).abs()], dim=1)  # (N, 2d): lower faces, then upper
        nearest = dist.argmin(dim=1)
        axis, sign = nearest % self.dim, torch.where(nearest < self.dim, -1.0, 1.0).to(x)
        n = torch.zeros_like(x)
        n[torch.arange(x.shape[0], device=x.device), axis] = sign
        return n
