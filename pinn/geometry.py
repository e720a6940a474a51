r"""Domains: where the points live.

A domain answers four questions: is a point inside (``contains``), where do points of the
unit hypercube land in its interior and on its boundary (``sample``), what is the outward unit
normal at a boundary point (``normal``), and how far is a point from the boundary
(``signed_distance``, negative inside). It holds no randomness: samplers
(:mod:`pinn.sampling`) hand it a ``draw(n, k)`` function giving points of ``[0, 1)^k``, so the
same sampler serves every domain and a fixed generator gives the same points everywhere.

Shapes: :class:`Interval`, :class:`Box`, :class:`Ball` (:class:`Disk` in 2-D), :class:`Polygon`;
constructive solid geometry with ``a | b`` (:class:`Union`), ``a & b`` (:class:`Intersection`)
and ``a - b`` (:class:`Difference`); and :class:`SpaceTime`, a spatial domain times a time
interval, whose points carry time as their last column and which adds the ``initial`` region.

Shapes that are images of the unit cube (boxes, balls, polygons) map the drawn points directly,
uniformly in volume or area; CSG shapes draw in a bounding shape and keep what falls inside.
"""

from __future__ import annotations

import functools
import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from pinn.errors import ConfigError

#: ``draw(n, k)``: ``n`` points of ``[0, 1)^k``, float64 on the CPU (a sampler's source of points).
Draw = Callable[[int, int], Tensor]


class Domain(ABC):
    """A closed region of :math:`\\mathbb{R}^d`; points are ``(N, d)``."""

    dim: int
    #: The named regions :meth:`sample` can fill; every domain has these two.
    regions: tuple[str, ...] = ("interior", "boundary")

    @property
    @abstractmethod
    def bounds(self) -> tuple[Tensor, Tensor]:
        """Corners ``(lo, hi)`` of a bounding box, float64 ``(d,)`` each (for plots and test grids)."""

    @abstractmethod
    def signed_distance(self, x: Tensor) -> Tensor:
        """``(N,)``: distance to the boundary, negative inside, zero on it, positive outside
        (exact for the basic shapes; for CSG a bound with the same sign and zero set)."""

    def contains(self, x: Tensor) -> Tensor:
        """Boolean ``(N,)``: which points lie in the closed domain, to the round-off of the
        points' dtype (as :meth:`on_boundary`: a point on the boundary is in the domain)."""
        return self.signed_distance(x) <= self._round_off(x)

    def on_boundary(self, x: Tensor) -> Tensor:
        """Boolean ``(N,)``: which points lie on this domain's boundary, to the round-off of the
        points' dtype (float32 puts points of a unit circle up to 4e-8 off it). To give
        a part of a CSG domain's boundary a condition of its own: ``hole.on_boundary(x)`` on the
        boundary points of ``square - hole``."""
        return self.signed_distance(x).abs() <= self._round_off(x)

    def _round_off(self, x: Tensor) -> float:
        """How far off the boundary points of ``x``'s dtype may lie: :attr:`tolerance`, or 8
        units of the dtype's round-off at the domain's scale, whichever is more."""
        if not x.dtype.is_floating_point:  # integer points carry no round-off
            return self.tolerance
        lo, hi = self.bounds
        scale = max(1.0, float((hi - lo).abs().max()), float(lo.abs().max()), float(hi.abs().max()))
        return max(self.tolerance, 8 * torch.finfo(x.dtype).eps * scale)

    def __init_subclass__(cls, **kwargs):
        """Every shape's ``signed_distance``, ``contains`` and ``normal`` first check that the
        points have the shape's dimension: ``(N, 1)`` points would broadcast against a 2-D
        shape's corners or centre and answer for other points."""
        super().__init_subclass__(**kwargs)
        for name in ("signed_distance", "contains", "normal"):
            if name in cls.__dict__:  # defined here, not inherited (and so already checked)
                setattr(cls, name, _checking_points(cls.__dict__[name]))

    @property
    def tolerance(self) -> float:
        """How far outside a point may lie and still count as on the boundary: round-off of the
        domain's size and of its coordinates (a disk of radius 1 centred at x = 1e5 has boundary
        points that float64 places up to 7e-12 off it)."""
        lo, hi = self.bounds
        return 1e-12 * max(1.0, float((hi - lo).abs().max()), float(lo.abs().max()), float(hi.abs().max()))

    @property
    def interior_unit_dim(self) -> int:
        """How many unit-cube coordinates :meth:`interior` consumes per point."""
        return self.dim

    @abstractmethod
    def interior(self, unit: Tensor) -> Tensor:
        """Map points of ``[0, 1)^k`` (``k = interior_unit_dim``) into the domain, uniformly in volume."""

    @property
    @abstractmethod
    def boundary_unit_dim(self) -> int:
        """How many unit-cube coordinates :meth:`boundary` consumes per point."""

    @abstractmethod
    def boundary(self, unit: Tensor) -> Tensor:
        """Map points of ``[0, 1)^k`` (``k = boundary_unit_dim``) onto the boundary, uniformly in area."""

    @property
    @abstractmethod
    def boundary_measure(self) -> float:
        """Length, area (or point count in 1-D) of the boundary: how CSG shares points between parts."""

    @abstractmethod
    def normal(self, x: Tensor) -> Tensor:
        """Outward unit normals ``(N, d)`` at boundary points ``x``."""

    def sample(self, region: str, n: int, draw: Draw) -> Tensor:
        """``n`` points of ``region`` (one of :attr:`regions`), float64, from unit points ``draw`` gives."""
        _check_count(n)
        if region == "interior":
            return self.interior(draw(n, self.interior_unit_dim))
        if region == "boundary":
            return self.boundary(draw(n, self.boundary_unit_dim))
        raise ConfigError(f"{self} has no region {region!r}; its regions are {', '.join(self.regions)}")

    def __or__(self, other: Domain) -> Domain:
        return Union(self, other) if isinstance(other, Domain) else NotImplemented

    def __and__(self, other: Domain) -> Domain:
        return Intersection(self, other) if isinstance(other, Domain) else NotImplemented

    def __sub__(self, other: Domain) -> Domain:
        return Difference(self, other) if isinstance(other, Domain) else NotImplemented


def _check_count(n) -> None:
    """A number of points to sample: an integer >= 0 (a CSG shape's rejection loop would take a
    negative one for "none yet found" and return points)."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"the number of points to sample must be an integer >= 0; got {n!r}")


def _number(value) -> float:
    """``value`` as a float: a Python, NumPy or 0-d tensor number (not a bool, not text)."""
    if (isinstance(value, (bool, np.bool_, str, bytes)) or np.ndim(value) != 0
            or isinstance(value, Tensor) and value.dtype == torch.bool):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def _checking_points(method: Callable) -> Callable:
    @functools.wraps(method)
    def checked(self: Domain, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{self} takes points of shape (N, {self.dim}); got {shape}")
        return method(self, x)

    return checked


class Box(Domain):
    r"""The axis-aligned box :math:`\prod_i [\mathrm{lo}_i, \mathrm{hi}_i]`.

    Args:
        lo, hi: corners, one number per dimension (or a number, repeated ``dim`` times).
        dim: the dimension when ``lo`` and ``hi`` are numbers.
    """

    def __init__(self, lo: float | Sequence[float] = -1.0, hi: float | Sequence[float] = 1.0, *, dim: int | None = None):
        try:
            lo_list, hi_list = ([_number(c)] * (dim or 1) if np.ndim(c) == 0 else [_number(v) for v in c] for c in (lo, hi))
        except (TypeError, ValueError):
            raise ConfigError(f"Box: lo and hi must be numbers, or lists of numbers; got lo={lo!r}, hi={hi!r}") from None
        if len(lo_list) != len(hi_list):
            raise ConfigError(f"Box: lo has {len(lo_list)} entries and hi has {len(hi_list)}; give one per dimension")
        if dim is not None and len(lo_list) != dim:
            raise ConfigError(f"Box: dim={dim} but lo/hi have {len(lo_list)} entries")
        if not lo_list:
            raise ConfigError("Box: lo and hi are empty; give one number per dimension")
        if not all(math.isfinite(a) and math.isfinite(b) and a < b for a, b in zip(lo_list, hi_list)):
            raise ConfigError(f"Box: need finite lo < hi in every dimension; got lo={lo_list}, hi={hi_list}")
        self.dim = len(lo_list)
        self.lo = torch.tensor(lo_list, dtype=torch.float64)
        self.hi = torch.tensor(hi_list, dtype=torch.float64)
        widths = self.hi - self.lo
        # Face 2i is x_i = lo_i, face 2i+1 is x_i = hi_i; each has the area of the other widths
        # (infinite or zero in high dimensions: [-1, 1]^1015's faces have area 2^1014).
        areas = torch.stack([widths[torch.arange(self.dim) != i].prod() for i in range(self.dim)])
        self._boundary_measure = float(areas.repeat_interleave(2).sum())
        # The faces' shares: an area is the volume over the face's own width, so the shares
        # follow 1 / width_i, which no dimension overflows.
        shares = (1 / widths).repeat_interleave(2)
        self._face_cdf = shares.cumsum(0) / shares.sum()

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

    def signed_distance(self, x: Tensor) -> Tensor:
        lo, hi = self._corners(x)
        q = torch.maximum(lo - x, x - hi)  # per axis: > 0 outside the slab, < 0 inside
        return q.clamp(min=0).norm(dim=1) + q.max(dim=1).values.clamp(max=0)

    @property
    def boundary_measure(self) -> float:
        return self._boundary_measure

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


class Interval(Box):
    r"""The interval :math:`[\mathrm{lo}, \mathrm{hi}]` (points ``(N, 1)``); its boundary is the two end points."""

    def __init__(self, lo: float = -1.0, hi: float = 1.0):
        try:
            lo, hi = _number(lo), _number(hi)
        except (TypeError, ValueError):
            raise ConfigError(f"Interval: lo and hi must be numbers; got lo={lo!r}, hi={hi!r}") from None
        super().__init__(lo, hi, dim=1)

    def __repr__(self) -> str:
        return f"Interval({self.lo.item()}, {self.hi.item()})"


class Ball(Domain):
    r"""The closed ball :math:`\{x : |x - c| \le r\}` in ``d = len(center)`` dimensions.

    Interior points: in 2-D by polar coordinates, :math:`\rho = r\sqrt{u_1}`, :math:`\theta = 2\pi u_2`
    (uniform in area); in other dimensions a direction from ``d`` Gaussian coordinates (inverse
    normal CDF of the unit points) and the radius :math:`r u^{1/d}` from one more.
    """

    def __init__(self, center: Sequence[float] = (0.0, 0.0), radius: float = 1.0):
        try:
            self.center = torch.tensor([_number(c) for c in center], dtype=torch.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"Ball: center must be a list of coordinates; got {center!r}") from None
        if self.center.dim() != 1 or len(self.center) < 1:
            raise ConfigError(f"Ball: center must be a list of coordinates; got {center!r}")
        if not all(math.isfinite(c) for c in self.center.tolist()):
            raise ConfigError(f"Ball: the center's coordinates must be finite; got {center!r}")
        try:
            if not 0 < _number(radius) < math.inf:
                raise ValueError(radius)
        except (TypeError, ValueError):
            raise ConfigError(f"Ball: radius must be a finite number > 0; got {radius!r}") from None
        self.radius = float(radius)
        self.dim = len(self.center)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(center={self.center.tolist()}, radius={self.radius})"

    @property
    def bounds(self) -> tuple[Tensor, Tensor]:
        return self.center - self.radius, self.center + self.radius

    def signed_distance(self, x: Tensor) -> Tensor:
        return (x - self.center.to(x)).norm(dim=1) - self.radius

    @property
    def interior_unit_dim(self) -> int:
        return 2 if self.dim == 2 else self.dim + 1

    def _directions(self, unit: Tensor) -> Tensor:
        if self.dim == 2:
            angle = 2 * math.pi * unit[:, :1]
            return torch.cat([torch.cos(angle), torch.sin(angle)], dim=1)
        gauss = torch.special.ndtri(unit.clamp(1e-12, 1 - 1e-12))  # (0, 1) -> standard normal
        # Every coordinate at exactly 1/2 gives the zero vector, of no direction: the first axis then.
        gauss[:, 0] = torch.where((gauss == 0).all(dim=1), 1.0, gauss[:, 0])
        return gauss / gauss.norm(dim=1, keepdim=True)

    def interior(self, unit: Tensor) -> Tensor:
        if self.dim == 2:
            rho = self.radius * unit[:, :1].sqrt()
            return self.center.to(unit) + rho * self._directions(unit[:, 1:])
        rho = self.radius * unit[:, :1] ** (1 / self.dim)
        return self.center.to(unit) + rho * self._directions(unit[:, 1:])

    @property
    def boundary_unit_dim(self) -> int:
        return 1 if self.dim == 2 else self.dim

    def boundary(self, unit: Tensor) -> Tensor:
        return self.center.to(unit) + self.radius * self._directions(unit)

    @property
    def boundary_measure(self) -> float:
        d = self.dim
        try:
            return 2 * math.pi ** (d / 2) / math.gamma(d / 2) * self.radius ** (d - 1)
        except OverflowError:  # Γ(d/2) beyond a double (d > 343): by logarithms, 0 or inf where it must be
            log_measure = math.log(2) + d / 2 * math.log(math.pi) - math.lgamma(d / 2) + (d - 1) * math.log(self.radius)
            return math.exp(log_measure) if log_measure < math.log(sys.float_info.max) else math.inf

    def normal(self, x: Tensor) -> Tensor:
        offset = x - self.center.to(x)
        return offset / offset.norm(dim=1, keepdim=True)


class Disk(Ball):
    """The closed disk of ``radius`` around ``center`` (a :class:`Ball` in two dimensions)."""

    def __init__(self, center: Sequence[float] = (0.0, 0.0), radius: float = 1.0):
        if len(center) != 2:
            raise ConfigError(f"Disk: center must have two coordinates; got {list(center)!r} (use Ball in other dimensions)")
        super().__init__(center, radius)


class Polygon(Domain):
    r"""A simple polygon (convex or not, no self-intersections) given by its vertices in order.

    Interior points: the polygon is cut into triangles (ear clipping); one unit coordinate picks
    a triangle with probability proportional to its area and, rescaled, serves again as the
    first coordinate inside it, so two unit coordinates give one point, uniformly in area.
    Boundary points: one coordinate is the arc length along the perimeter.
    """

    def __init__(self, vertices: Sequence[Sequence[float]]):
        try:
            v = torch.tensor([[_number(c) for c in p] for p in vertices], dtype=torch.float64)
        except (TypeError, ValueError):  # text, None, a vertex that is a number, vertices of unequal lengths
            v = torch.empty(0)
        if v.dim() != 2 or v.shape[1] != 2 or v.shape[0] < 3:
            raise ConfigError(f"Polygon: vertices must be a list of at least three [x, y] pairs; got {vertices!r}")
        if not torch.isfinite(v).all():
            raise ConfigError(f"Polygon: the vertices must be finite; got {vertices!r}")
        if v.abs().max() > 1e150:  # products of coordinates (areas, cross products) must fit float64
            raise ConfigError(f"Polygon: the coordinates must be at most 1e150 in magnitude (their products must fit a "
                              f"float64); got {vertices!r}. Rescale the problem")
        # A vertex a rounding error from the one before it (such as a closed ring's last, which
        # repeats its first) adds an edge of no length: dropped.
        previous = v.roll(1, 0)
        gap = (v - previous).abs().amax(dim=1)
        kept = gap > 4 * torch.finfo(v.dtype).eps * torch.maximum(v.abs(), previous.abs()).amax(dim=1)
        v, positions = v[kept], kept.nonzero().flatten().tolist()  # positions: in the vertices as given
        if len(v) < 3:
            raise ConfigError(f"Polygon: fewer than three distinct vertices; got {vertices!r}")
        local = v - v[0]  # the shoelace sum from the first vertex: no cancellation of large coordinates
        area2 = (local[:, 0] * local.roll(-1, 0)[:, 1] - local.roll(-1, 0)[:, 0] * local[:, 1]).sum()
        if area2.abs() <= 16 * len(v) * torch.finfo(v.dtype).eps * float(local.abs().max()) ** 2:
            raise ConfigError("Polygon: the vertices enclose no area: they lie on one line, or trace a figure eight "
                              "whose two loops cancel; they must trace a simple polygon, in order around it")
        _check_simple(v.tolist(), positions)
        self.vertices = v if area2 > 0 else v.flip(0)  # counter-clockwise, so outward normals point right of each edge
        self.dim = 2
        self._edges = self.vertices.roll(-1, 0) - self.vertices
        lengths = self._edges.norm(dim=1)
        self._edge_cdf = lengths.cumsum(0) / lengths.sum()
        self._perimeter = float(lengths.sum())
        self._triangles = self._triangulate()  # (T, 3, 2)
        a, b, c = self._triangles.unbind(1)
        areas = 0.5 * ((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])
        self._triangle_cdf = areas.cumsum(0) / areas.sum()

    def __repr__(self) -> str:
        return f"Polygon({self.vertices.tolist()})"

    def _triangulate(self) -> Tensor:
        """Ear clipping: repeatedly cut off a convex corner whose triangle holds no other vertex
        (in NumPy: each cut tests the remaining vertices at once)."""
        p = self.vertices.numpy()
        remaining = np.arange(len(p))
        triangles = []
        while len(remaining) > 3:
            m = len(remaining)
            for k in range(m):
                i, j, l = remaining[k - 1], remaining[k], remaining[(k + 1) % m]
                a, b, c = p[i], p[j], p[l]
                if (b - a)[0] * (c - a)[1] - (b - a)[1] * (c - a)[0] <= 0:
                    continue  # reflex or flat corner: not an ear
                others = p[np.delete(remaining, [(k - 1) % m, k, (k + 1) % m])]
                if len(others) and _in_triangle(others, a, b, c).any():
                    continue
                triangles.append(np.stack([a, b, c]))
                remaining = np.delete(remaining, k)
                break
            else:
                raise ConfigError("Polygon: could not triangulate; are the vertices of a simple polygon, in order?")
        triangles.append(p[remaining])
        return torch.from_numpy(np.stack(triangles))

    @property
    def bounds(self) -> tuple[Tensor, Tensor]:
        return self.vertices.min(dim=0).values, self.vertices.max(dim=0).values

    def _edge_distances(self, x: Tensor) -> Tensor:
        """``(N, E)``: distance from each point to each edge (a segment)."""
        start, edge = self.vertices.to(x), self._edges.to(x)
        rel = x[:, None, :] - start[None]  # (N, E, 2)
        s = ((rel * edge).sum(-1) / (edge * edge).sum(-1)).clamp(0, 1)
        return (rel - s[..., None] * edge).norm(dim=-1)

    def _inside(self, x: Tensor) -> Tensor:
        """Even-odd rule: a ray to the right crosses the boundary an odd number of times."""
        a, b = self.vertices.to(x), self.vertices.roll(-1, 0).to(x)
        px, py = x[:, :1], x[:, 1:]
        straddles = (a[:, 1] > py) != (b[:, 1] > py)
        cross_x = a[:, 0] + (py - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
        return ((straddles & (px < cross_x)).sum(dim=1) % 2) == 1

    def signed_distance(self, x: Tensor) -> Tensor:
        distance = self._edge_distances(x).min(dim=1).values
        return torch.where(self._inside(x), -distance, distance)

    @property
    def interior_unit_dim(self) -> int:
        return 2

    def interior(self, unit: Tensor) -> Tensor:
        cdf = self._triangle_cdf.to(unit)
        pick = torch.searchsorted(cdf, unit[:, :1].contiguous(), right=True).clamp_(max=len(cdf) - 1).squeeze(1)
        below = torch.where(pick > 0, cdf[(pick - 1).clamp(min=0)], torch.zeros_like(unit[:, 0]))
        s = ((unit[:, 0] - below) / (cdf[pick] - below)).clamp(0, 1)  # reuse the picking coordinate
        t = unit[:, 1]
        fold = s + t > 1  # reflect the far half of the unit square onto the triangle
        s, t = torch.where(fold, 1 - s, s), torch.where(fold, 1 - t, t)
        tri = self._triangles.to(unit)[pick]  # (N, 3, 2)
        a, b, c = tri.unbind(1)
        return a + s[:, None] * (b - a) + t[:, None] * (c - a)

    @property
    def boundary_unit_dim(self) -> int:
        return 1

    def boundary(self, unit: Tensor) -> Tensor:
        cdf = self._edge_cdf.to(unit)
        edge = torch.searchsorted(cdf, unit[:, :1].contiguous(), right=True).clamp_(max=len(cdf) - 1).squeeze(1)
        below = torch.where(edge > 0, cdf[(edge - 1).clamp(min=0)], torch.zeros_like(unit[:, 0]))
        s = ((unit[:, 0] - below) / (cdf[edge] - below)).clamp(0, 1)
        return self.vertices.to(unit)[edge] + s[:, None] * self._edges.to(unit)[edge]

    @property
    def boundary_measure(self) -> float:
        return self._perimeter

    def normal(self, x: Tensor) -> Tensor:
        edge = self._edges.to(x)[self._edge_distances(x).argmin(dim=1)]
        outward = torch.stack([edge[:, 1], -edge[:, 0]], dim=1)  # right of a counter-clockwise edge
        return outward / outward.norm(dim=1, keepdim=True)


def _check_simple(vertices: list[list[float]], positions: list[int] | None = None) -> None:
    """Raise unless the closed outline through ``vertices`` is simple: no repeated vertex, and
    no two edges that meet anywhere but at the vertex they share (a self-intersecting outline
    has no well-defined inside, and the triangulation would cover parts of the plane twice).

    A cross product within its rounding error of zero counts as zero, so that vertices on a
    straight line (or a rounding error off it) are collinear. The pairs are tested in NumPy,
    and only those whose bounding boxes overlap are tested exactly: thousands of vertices
    take a fraction of a second. ``positions``: where each vertex was in the vertices as the
    user gave them (a repeated one is named by those)."""
    given = positions if positions is not None else list(range(len(vertices)))  # where each was in the input
    seen: dict[tuple[float, float], list[int]] = {}
    for i, vertex in zip(given, map(tuple, vertices)):
        seen.setdefault(vertex, []).append(i)
    for vertex, where in seen.items():  # in the order of first appearance
        if len(where) > 1:
            raise ConfigError(f"Polygon: vertex {list(vertex)} appears twice (vertices {where[0]} and {where[1]}, "
                              "counting from 0); a simple polygon visits each point once")
    p = np.asarray(vertices, dtype=np.float64)
    n = len(p)
    start, end = p, np.roll(p, -1, axis=0)  # edge i runs from vertex i to vertex i + 1

    def rounding(a, u, v):
        """The rounding error of products of the differences u, v taken from coordinates near a's."""
        scale = np.maximum(np.abs(a).max(axis=-1), 1e-300)
        terms = np.abs(u[..., 0]) + np.abs(u[..., 1]) + np.abs(v[..., 0]) + np.abs(v[..., 1])  # summed in this order
        return 16 * 2.0**-52 * scale * terms

    def orientation(a, b, c):
        """The cross product (b - a) × (c - a), with those within their rounding error of 0 set to 0."""
        u, v = b - a, c - a
        o = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
        return np.where(np.abs(o) <= rounding(a, u, v), 0.0, o)

    def on_segment(a, b, c):
        """Whether c, collinear with a and b, lies between them."""
        return ((np.minimum(a, b) <= c) & (c <= np.maximum(a, b))).all(axis=-1)

    def edge(k):
        return f"({p[k].tolist()}, {p[(k + 1) % n].tolist()})"

    # Adjacent edges share a vertex; they may not fold back onto each other: both leave the
    # shared vertex along one line, on the same side.
    shared, before, after = p, np.roll(p, 1, axis=0), end  # edges k - 1 and k meet at vertex k
    u, w = before - shared, after - shared
    back = (u * w).sum(axis=1)
    folds = (orientation(shared, before, after) == 0) & (back > rounding(shared, u, w))
    fold_pair = min((tuple(sorted(((k - 1) % n, k))) for k in np.flatnonzero(folds).tolist()), default=None)
    # Other pairs (i, j), i < j, may not meet at all. Only edges whose bounding boxes overlap (a
    # little widened, so that rounding cannot hide a pair) can meet: those are found a block of
    # rows i at a time, which bounds the memory, and only they are tested exactly.
    low, high = np.minimum(start, end), np.maximum(start, end)
    margin = 2.0**-40 * max(np.abs(p).max(), 1e-300)
    low, high = low - margin, high + margin
    block = max(1, 2**20 // n)
    for lo in range(0, n, block):
        rows = np.arange(lo, min(lo + block, n))[:, None]
        columns = np.arange(lo + 1, n)[None, :]
        near = ((low[rows, 0] <= high[columns, 0]) & (low[columns, 0] <= high[rows, 0])
                & (low[rows, 1] <= high[columns, 1]) & (low[columns, 1] <= high[rows, 1]))
        near &= (columns > rows + 1) & ~((rows == 0) & (columns == n - 1))  # not the same or an adjacent edge
        i, j = np.nonzero(near)  # in row-major order
        i, j = rows[i, 0], columns[0, j]
        a, b, c, d = start[i], end[i], start[j], end[j]
        o1, o2, o3, o4 = orientation(a, b, c), orientation(a, b, d), orientation(c, d, a), orientation(c, d, b)
        meet = (((o1 * o2 < 0) & (o3 * o4 < 0)) | ((o1 == 0) & on_segment(a, b, c)) | ((o2 == 0) & on_segment(a, b, d))
                | ((o3 == 0) & on_segment(c, d, a)) | ((o4 == 0) & on_segment(c, d, b)))
        crossing = (int(i[np.argmax(meet)]), int(j[np.argmax(meet)])) if meet.any() else None
        if fold_pair is not None and fold_pair[0] < lo + len(rows) and (crossing is None or fold_pair <= crossing):
            raise ConfigError(f"Polygon: edges {edge(fold_pair[0])} and {edge(fold_pair[1])} overlap; the outline "
                              "doubles back")
        if crossing is not None:
            raise ConfigError(f"Polygon: edges {edge(crossing[0])} and {edge(crossing[1])} cross; the vertices must "
                              "trace a simple polygon (no self-intersections), in order around it")


def _in_triangle(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Which points ``p`` ``(N, 2)`` lie in the closed triangle ``abc``."""
    def side(u, v):
        return (v - u)[0] * (p[:, 1] - u[1]) - (v - u)[1] * (p[:, 0] - u[0])
    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    return ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))


# --------------------------------------------------------------------------- constructive solid geometry


#: The most random numbers one batch of proposals draws (2^23: 4 million points of a 2-D shape,
#: 64 MiB in float64). A thin shape accepts few proposals, and the many it needs come in batches
#: of this size rather than all at once.
MOST_DRAWN_AT_ONCE = 1 << 23
#: The most proposals one sample may take in all (about 80 s for a 2-D difference of disks on a
#: 2-core CPU, which tested 1.4e7 proposals a second): a shape that would need more is refused,
#: with the share it accepts.
MOST_PROPOSALS = 1 << 30


def _rejection(n: int, draw: Draw, propose: Callable[[Tensor], Tensor], keep: Callable[[Tensor], Tensor],
               unit_dim: int, what: str) -> Tensor:
    """The first ``n`` proposals that ``keep`` accepts, drawing in batches sized by the acceptance so far."""
    if n == 0:  # a part that drew no share of a batch: no points, in the shape of points
        return propose(draw(0, unit_dim))
    accepted, total, kept, rounds = [], 0, 0, 0
    while kept < n:
        if kept:
            still_needed = (n - kept) * total // kept  # at the acceptance so far
            if total + still_needed > MOST_PROPOSALS:
                raise ConfigError(
                    f"could not place {n} points in {what}: only {kept / total:.1e} of the proposals drawn in its "
                    f"bounding box fall inside, so {n} points would take about {total + still_needed:.1e} proposals "
                    f"(at most {MOST_PROPOSALS:.1e} are drawn). Ask for fewer points, or make the shape less thin")
            batch = max(2 * still_needed, 64)
        elif rounds == 100:
            raise ConfigError(f"could not place {n} points in {what}: almost no proposal falls inside; is the shape "
                              "empty?")
        else:
            batch = 2 * n + 64
        batch = min(batch, max(MOST_DRAWN_AT_ONCE // unit_dim, 64))
        x = propose(draw(batch, unit_dim))
        x = x[keep(x)]
        accepted.append(x)
        total, kept, rounds = total + batch, kept + len(x), rounds + 1
    return torch.cat(accepted)[:n]


class _CSG(Domain):
    """A set operation on two domains of the same dimension."""

    symbol = "?"

    def __init__(self, a: Domain, b: Domain):
        for part in (a, b):
            if not isinstance(part, Domain):
                raise ConfigError(f"{type(self).__name__}: both parts must be domains (Interval, Box, Disk, ...); "
                                  f"got {part!r}")
        if a.dim != b.dim:
            raise ConfigError(f"{type(self).__name__}: both shapes need the same dimension; got {a.dim} and {b.dim}")
        self.a, self.b, self.dim = a, b, a.dim

    def __repr__(self) -> str:
        return f"({self.a} {self.symbol} {self.b})"

    @property
    def interior_unit_dim(self) -> int:
        return self.dim

    def interior(self, unit: Tensor) -> Tensor:
        raise ConfigError(f"{type(self).__name__} samples by rejection: use sample('interior', n, draw)")

    def boundary(self, unit: Tensor) -> Tensor:
        raise ConfigError(f"{type(self).__name__} samples by rejection: use sample('boundary', n, draw)")

    @property
    def boundary_unit_dim(self) -> int:
        return max(self.a.boundary_unit_dim, self.b.boundary_unit_dim) + 1

    @property
    def boundary_measure(self) -> float:
        """Estimated once from 2^16 fixed Sobol points on the parts' boundaries: the share of each
        part's boundary that the set operation keeps (a relative error of about 1e-3)."""
        if getattr(self, "_measure", None) is None:
            engines: dict[int, torch.quasirandom.SobolEngine] = {}

            def draw(m: int, k: int) -> Tensor:
                engine = engines.setdefault(k, torch.quasirandom.SobolEngine(k, scramble=True, seed=k))
                return engine.draw(m, dtype=torch.float64)

            n = 1 << 16
            self._measure = 0.0
            for part, from_a in ((self.a, True), (self.b, False)):
                x = part.sample("boundary", n, draw)
                # (A stretch shared by both boundaries is kept from a only, so it counts once.)
                kept = self._keep_boundary(x, torch.full((n,), from_a)).double().mean().item()
                self._measure += part.boundary_measure * kept
        return self._measure

    #: Whether a boundary point of one part that lies strictly outside (inside) the other is kept.
    keep_outside_other: bool
    keep_inside_other: bool
    #: Whether a point on both parts' boundaries is kept when their normals agree (else when they oppose).
    keep_shared_if_same_normal: bool

    def _keep_boundary(self, x: Tensor, from_a: Tensor) -> Tensor:
        """Which boundary points of a part (``from_a``: of ``a``, else of ``b``) are on this shape's boundary.

        Off the other part's boundary the rule is the set operation's; on it (two shapes sharing
        an edge) the normals decide, so that an L-shape cut as ``square - quadrant`` does not keep
        the edges the two squares share, and a shared point is taken from ``a`` only, once.
        """
        tol = self.tolerance
        other = torch.where(from_a, self.b.signed_distance(x), self.a.signed_distance(x))
        keep = torch.where(other > tol, self.keep_outside_other, self.keep_inside_other)
        shared = other.abs() <= tol
        if shared.any():
            same = (self.a.normal(x[shared]) * self.b.normal(x[shared])).sum(dim=1) > 0
            keep[shared] = from_a[shared] & (same == self.keep_shared_if_same_normal)
        return keep

    def sample(self, region: str, n: int, draw: Draw) -> Tensor:
        _check_count(n)
        if region == "interior":
            lo, hi = self.bounds
            return _rejection(n, draw, lambda u: lo + u * (hi - lo), self.contains, self.dim, f"{self}")
        if region == "boundary":
            # One coordinate chooses the part in proportion to its boundary measure; the rest place the point on it.
            share = self.a.boundary_measure / (self.a.boundary_measure + self.b.boundary_measure)
            ka, kb = self.a.boundary_unit_dim, self.b.boundary_unit_dim

            def propose(u: Tensor) -> Tensor:
                from_a = u[:, 0] < share
                x = torch.empty(len(u), self.dim, dtype=u.dtype)
                # A basic part maps this draw's own coordinates; a CSG part rejects, so it draws afresh.
                x[from_a] = self.a.sample("boundary", int(from_a.sum()),
                                          draw if isinstance(self.a, _CSG) else lambda m, k: u[from_a, 1 : 1 + ka])
                x[~from_a] = self.b.sample("boundary", int((~from_a).sum()),
                                           draw if isinstance(self.b, _CSG) else lambda m, k: u[~from_a, 1 : 1 + kb])
                return torch.cat([x, from_a[:, None].to(u)], dim=1)  # remember the part in a last column

            found = _rejection(n, draw, propose, lambda y: self._keep_boundary(y[:, :-1], y[:, -1] > 0.5),
                               self.boundary_unit_dim, f"the boundary of {self}")
            return found[:, :-1]
        raise ConfigError(f"{self} has no region {region!r}; its regions are {', '.join(self.regions)}")

    def _combine(self, sa: Tensor, sb: Tensor) -> Tensor:
        """The set operation on the parts' signed distances (min, max, ...)."""
        raise NotImplementedError

    def signed_distance(self, x: Tensor) -> Tensor:
        """The set operation on the parts' signed distances: the right sign, and zero exactly on
        the boundary, but not the exact distance. Where both parts' boundaries meet (shapes that
        share an edge) the normals decide, as in :meth:`_keep_boundary`: an edge the operation
        removes, like the outer edges of the square cut out of an L-shape, counts as outside
        (or, for two shapes joined face to face, inside)."""
        sa, sb = self.a.signed_distance(x), self.b.signed_distance(x)
        s = self._combine(sa, sb)
        tol = self.tolerance
        shared = (sa.abs() <= tol) & (sb.abs() <= tol)
        if shared.any():
            same = (self.a.normal(x[shared]) * self.b.normal(x[shared])).sum(dim=1) > 0
            on_boundary = same == self.keep_shared_if_same_normal
            # Off the boundary: inside for a union of touching shapes, outside for the others.
            off = torch.full_like(s[shared], -2 * tol if isinstance(self, Union) else 2 * tol)
            s[shared] = torch.where(on_boundary, s[shared], off)
        return s

    def _from_a(self, x: Tensor) -> Tensor:
        """For boundary points: whether the nearest part boundary is ``a``'s."""
        return self.a.signed_distance(x).abs() <= self.b.signed_distance(x).abs()


class Union(_CSG):
    """Points in ``a`` or in ``b`` (``a | b``)."""

    symbol = "|"

    @property
    def bounds(self):
        (la, ha), (lb, hb) = self.a.bounds, self.b.bounds
        return torch.minimum(la, lb), torch.maximum(ha, hb)

    def _combine(self, sa, sb):
        return torch.minimum(sa, sb)

    keep_outside_other, keep_inside_other, keep_shared_if_same_normal = True, False, True

    def normal(self, x):
        return torch.where(self._from_a(x)[:, None], self.a.normal(x), self.b.normal(x))


class Intersection(_CSG):
    """Points in both ``a`` and ``b`` (``a & b``)."""

    symbol = "&"

    @property
    def bounds(self):
        (la, ha), (lb, hb) = self.a.bounds, self.b.bounds
        return torch.maximum(la, lb), torch.minimum(ha, hb)

    def _combine(self, sa, sb):
        return torch.maximum(sa, sb)

    keep_outside_other, keep_inside_other, keep_shared_if_same_normal = False, True, True

    def normal(self, x):
        return torch.where(self._from_a(x)[:, None], self.a.normal(x), self.b.normal(x))


class Difference(_CSG):
    """Points in ``a`` and not strictly inside ``b`` (``a - b``); on ``b``'s part of the boundary
    the outward normal is minus ``b``'s."""

    symbol = "-"

    @property
    def bounds(self):
        return self.a.bounds

    def _combine(self, sa, sb):
        return torch.maximum(sa, -sb)

    keep_shared_if_same_normal = False

    def _keep_boundary(self, x, from_a):
        # a's boundary outside b, and b's boundary inside a.
        tol = self.tolerance
        other = torch.where(from_a, self.b.signed_distance(x), self.a.signed_distance(x))
        keep = torch.where(from_a, other > tol, other < -tol)
        shared = other.abs() <= tol
        if shared.any():
            same = (self.a.normal(x[shared]) * self.b.normal(x[shared])).sum(dim=1) > 0
            keep[shared] = from_a[shared] & ~same
        return keep

    def normal(self, x):
        return torch.where(self._from_a(x)[:, None], self.a.normal(x), -self.b.normal(x))


# --------------------------------------------------------------------------- space × time


class SpaceTime(Domain):
    r"""A spatial domain times the time interval :math:`[t_0, t_1]`; points are ``(N, d + 1)``
    with time in the last column.

    Regions: ``interior`` (space × time), ``boundary`` (the spatial boundary × time, where
    boundary conditions hold) and ``initial`` (the spatial domain at :math:`t_0`). The normal
    of a boundary point is the spatial normal with a zero time component.
    """

    regions = ("interior", "boundary", "initial")

    def __init__(self, space: Domain, t0: float = 0.0, t1: float = 1.0):
        if not isinstance(space, Domain):
            raise ConfigError(f"SpaceTime: space must be a domain (Interval, Box, Disk, ...); got {space!r}")
        try:
            start, end = _number(t0), _number(t1)
        except (TypeError, ValueError):
            start = end = math.nan
        if not (math.isfinite(start) and math.isfinite(end) and start < end):
            raise ConfigError(f"SpaceTime: need finite t0 < t1, both numbers; got t0={t0!r}, t1={t1!r}")
        self.space, self.t0, self.t1 = space, start, end
        self.dim = space.dim + 1

    def __repr__(self) -> str:
        return f"{self.space} × [{self.t0}, {self.t1}]"

    @property
    def bounds(self):
        lo, hi = self.space.bounds
        return torch.cat([lo, lo.new_tensor([self.t0])]), torch.cat([hi, hi.new_tensor([self.t1])])

    def signed_distance(self, x):
        t = x[:, -1]
        outside_time = torch.maximum(self.t0 - t, t - self.t1)
        return torch.maximum(self.space.signed_distance(x[:, :-1]), outside_time)

    def _time(self, unit: Tensor) -> Tensor:
        return self.t0 + unit * (self.t1 - self.t0)

    @property
    def interior_unit_dim(self):
        return self.space.interior_unit_dim + 1

    def interior(self, unit):
        return torch.cat([self.space.interior(unit[:, :-1]), self._time(unit[:, -1:])], dim=1)

    @property
    def boundary_unit_dim(self):
        return self.space.boundary_unit_dim + 1

    def boundary(self, unit):
        return torch.cat([self.space.boundary(unit[:, :-1]), self._time(unit[:, -1:])], dim=1)

    @property
    def boundary_measure(self):
        return self.space.boundary_measure * (self.t1 - self.t0)

    def normal(self, x):
        return torch.cat([self.space.normal(x[:, :-1]), torch.zeros_like(x[:, -1:])], dim=1)

    def sample(self, region, n, draw):
        """Space-time points of ``region``; each part of a point comes from the spatial domain's own sampling."""
        _check_count(n)
        if region == "initial":
            space = self.space.sample("interior", n, draw)
            return torch.cat([space, torch.full_like(space[:, :1], self.t0)], dim=1)
        if not isinstance(self.space, _CSG):
            return super().sample(region, n, draw)  # space and time from one draw: jointly low-discrepancy
        if region not in ("interior", "boundary"):
            raise ConfigError(f"{self} has no region {region!r}; its regions are {', '.join(self.regions)}")
        space = self.space.sample(region, n, draw)  # by rejection, so time comes from a draw of its own
        return torch.cat([space, self._time(draw(n, 1))], dim=1)
