"""Shapes, CSG and space-time domains: sampling, signed distances, normals, uniformity, errors.

Every shape is checked against numbers known in closed form (centroids, area and length
fractions, boundary measures); all points come from explicitly seeded generators.
"""

import math
import re
from dataclasses import dataclass, field

import pytest
import torch

from pinn.errors import ConfigError
from pinn.geometry import Ball, Box, Difference, Disk, Interval, Polygon, SpaceTime
from pinn.sampling import SobolSampler, UniformSampler

F64 = torch.float64
N = 20000  # points per uniformity check: 5 sigma of a fraction is at most 5 * 0.5 / sqrt(N) = 0.018


def make_draw(seed):
    g = torch.Generator().manual_seed(seed)
    return lambda n, k: torch.rand(n, k, generator=g, dtype=F64)


def t(*rows):
    return torch.tensor(rows, dtype=F64)


# --------------------------------------------------------------------------- the shapes and what is known about them

L_VERTICES = [[0, 0], [1, 0], [1, -1], [-1, -1], [-1, 1], [0, 1]]
# A chevron (arrow head pointing +x) with its reflex vertex at (1, 2): the two triangles
# (0,0),(4,2),(1,2) and (1,2),(4,2),(0,4) have area 3 each and centroids (5/3, 4/3), (5/3, 8/3).
CHEVRON = [[0, 0], [4, 2], [0, 4], [1, 2]]
R_UNION = 0.75  # Box([-1,-1],[1,1]) | Disk([1, 0], 0.75): the square plus the right half disk
HALF_DISK = math.pi * R_UNION**2 / 2
UNION_ARC = math.pi * R_UNION  # the half circle outside the square
UNION_SQUARE_EDGES = 8 - 2 * R_UNION  # the square's perimeter less the chord inside the disk
QUARTER_BOUNDARY = 2 + math.pi / 2  # Box([0,0],[2,2]) & Disk(): two radii and a quarter circle


def csg_l():
    return Box([-1.0, -1.0], [1.0, 1.0]) - Box([0.0, 0.0], [1.0, 1.0])


# Sub-regions of the L (as the polygon or the CSG difference): three unit squares of area 1 each.
L_SQUARES = [
    ("upper-left square", lambda x: (x[:, 0] < 0) & (x[:, 1] > 0), 1 / 3),
    ("lower-left square", lambda x: (x[:, 0] < 0) & (x[:, 1] < 0), 1 / 3),
    ("lower-right square", lambda x: (x[:, 0] > 0) & (x[:, 1] < 0), 1 / 3),
]


def _on_segment(p, q):
    """Predicate: the point lies on the closed segment p-q (axis-aligned or not), to round-off."""
    p, q = torch.tensor(p, dtype=F64), torch.tensor(q, dtype=F64)

    def pred(x):
        e = q - p
        rel = x[:, :2] - p
        s = (rel @ e) / (e @ e)
        dist = (rel - s[:, None] * e).norm(dim=1)
        return (dist < 1e-12) & (s > -1e-12) & (s < 1 + 1e-12)

    return pred


def _polygon_edges(vertices):
    lengths = [math.dist(vertices[i], vertices[(i + 1) % len(vertices)]) for i in range(len(vertices))]
    total = sum(lengths)
    return [(f"edge {vertices[i]}->{vertices[(i + 1) % len(vertices)]}",
             _on_segment(vertices[i], vertices[(i + 1) % len(vertices)]), lengths[i] / total)
            for i in range(len(vertices))]


def _dangling_l_edges(x):
    """The outer square's edges that the removed quadrant owns: x=1, y>0 and y=1, x>0."""
    return ((x[:, 0] == 1) & (x[:, 1] > 0)) | ((x[:, 1] == 1) & (x[:, 0] > 0))


@dataclass
class Case:
    id: str
    make: object
    dim: int
    centroid: list
    interior_parts: list  # (label, predicate, expected fraction of the volume)
    boundary_parts: list  # (label, predicate, expected fraction of the boundary measure)
    forbidden_boundary: object = None  # predicate no boundary point may satisfy
    # Points near which the outward-normal step test may fail for a geometric reason (see test 2).
    sharp: list = field(default_factory=list)


def _radius(c):
    c = torch.tensor(c, dtype=F64)
    return lambda x: (x[:, : len(c)] - c).norm(dim=1)


CASES = [
    Case("interval", lambda: Interval(-1, 2), 1, [0.5],
         [("x < 0", lambda x: x[:, 0] < 0, 1 / 3)],
         [("x = -1", lambda x: x[:, 0] == -1, 0.5), ("x = 2", lambda x: x[:, 0] == 2, 0.5)]),
    # Faces: x-faces 1x2 = 2 each, y-faces 1x1 = 1 each, z-faces 1x2 = 2 each: 10 in all.
    Case("box3", lambda: Box([0, -1, 2], [1, 1, 3]), 3, [0.5, 0.0, 2.5],
         [("x < 0.25", lambda x: x[:, 0] < 0.25, 0.25), ("y > 0.5, z < 2.5", lambda x: (x[:, 1] > 0.5) & (x[:, 2] < 2.5), 1 / 8)],
         [("x faces", lambda x: (x[:, 0] == 0) | (x[:, 0] == 1), 0.4),
          ("y faces", lambda x: (x[:, 1] == -1) | (x[:, 1] == 1), 0.2),
          ("z faces", lambda x: (x[:, 2] == 2) | (x[:, 2] == 3), 0.4),
          ("face y = 1", lambda x: x[:, 1] == 1, 0.1)]),
    Case("disk", lambda: Disk([0.5, -0.5], 2.0), 2, [0.5, -0.5],
         [("r < R/2", lambda x: _radius([0.5, -0.5])(x) < 1.0, 0.25),
          ("quadrant x>c, y>c", lambda x: (x[:, 0] > 0.5) & (x[:, 1] > -0.5), 0.25)],
         [("quadrant x>c, y>c", lambda x: (x[:, 0] > 0.5) & (x[:, 1] > -0.5), 0.25),
          ("arc x < c - R/2", lambda x: x[:, 0] < -0.5, 1 / 3)]),  # |angle - pi| < pi/3
    # Archimedes: a spherical zone's area is proportional to its height, 0.75 of 3 here.
    Case("ball3", lambda: Ball([0, 0, 0], 1.5), 3, [0.0, 0.0, 0.0],
         [("r < R/2", lambda x: x.norm(dim=1) < 0.75, 1 / 8), ("x > 0", lambda x: x[:, 0] > 0, 0.5)],
         [("cap z > R/2", lambda x: x[:, 2] > 0.75, 0.25), ("x > 0, y > 0", lambda x: (x[:, 0] > 0) & (x[:, 1] > 0), 0.25)]),
    # L: squares [-1,0]x[0,1], [-1,0]x[-1,0], [0,1]x[-1,0]: centroid ((-1/2 - 1/2 + 1/2)/3, (1/2 - 1/2 - 1/2)/3).
    Case("polygon-L", lambda: Polygon(L_VERTICES), 2, [-1 / 6, -1 / 6], L_SQUARES, _polygon_edges(L_VERTICES)),
    # Chevron: for 0 <= x <= 1 the two arms are x/2 <= y <= 2x and 4-2x <= y <= 4-x/2, area 3x^2/2 |_0^1 = 3/2 of 6.
    # Its tips (0,0), (4,2), (0,4) have interior angles 36.9, 53.1, 36.9 degrees (< 90): see test 2.
    Case("chevron", lambda: Polygon(CHEVRON), 2, [5 / 3, 2.0],
         [("x < 1", lambda x: x[:, 0] < 1, 0.25), ("y < 2", lambda x: x[:, 1] < 2, 0.5)],
         _polygon_edges(CHEVRON), sharp=[[0, 0], [4, 2], [0, 4]]),
    Case("csg-L", csg_l, 2, [-1 / 6, -1 / 6], L_SQUARES,
         [("inner edge x=0, 0<y<1", lambda x: (x[:, 0] == 0) & (x[:, 1] > 0), 1 / 8),
          ("inner edge y=0, 0<x<1", lambda x: (x[:, 1] == 0) & (x[:, 0] > 0), 1 / 8),
          ("edge x=-1", lambda x: x[:, 0] == -1, 2 / 8),
          ("edge y=-1", lambda x: x[:, 1] == -1, 2 / 8),
          ("edge x=1, y<0", lambda x: (x[:, 0] == 1) & (x[:, 1] < 0), 1 / 8),
          ("edge y=1, x<0", lambda x: (x[:, 1] == 1) & (x[:, 0] < 0), 1 / 8)],
         forbidden_boundary=_dangling_l_edges),
    # Square (area 4, centroid 0) plus the half disk right of x = 1 (centroid x = 1 + 4r/(3 pi)).
    Case("box|disk", lambda: Box([-1.0, -1.0], [1.0, 1.0]) | Disk([1.0, 0.0], R_UNION), 2,
         [HALF_DISK * (1 + 4 * R_UNION / (3 * math.pi)) / (4 + HALF_DISK), 0.0],
         [("half disk x > 1", lambda x: x[:, 0] > 1, HALF_DISK / (4 + HALF_DISK)),
          ("y > 0", lambda x: x[:, 1] > 0, 0.5)],
         [("arc x > 1", lambda x: x[:, 0] > 1, UNION_ARC / (UNION_ARC + UNION_SQUARE_EDGES)),
          ("edge x = -1", lambda x: x[:, 0] == -1, 2 / (UNION_ARC + UNION_SQUARE_EDGES)),
          ("edge x = 1, |y| > r", lambda x: x[:, 0] == 1, 2 * (1 - R_UNION) / (UNION_ARC + UNION_SQUARE_EDGES))],
         forbidden_boundary=lambda x: (x[:, 0] == 1) & (x[:, 1].abs() < R_UNION)),
    # Quarter disk: centroid (4/(3 pi), 4/(3 pi)).
    Case("box&disk", lambda: Box([0.0, 0.0], [2.0, 2.0]) & Disk([0.0, 0.0], 1.0), 2,
         [4 / (3 * math.pi), 4 / (3 * math.pi)],
         [("r < 1/2", lambda x: x.norm(dim=1) < 0.5, 0.25), ("below the diagonal", lambda x: x[:, 1] < x[:, 0], 0.5)],
         [("arc", lambda x: (x[:, 0] > 0) & (x[:, 1] > 0), (math.pi / 2) / QUARTER_BOUNDARY),
          ("radius x = 0", lambda x: x[:, 0] == 0, 1 / QUARTER_BOUNDARY),
          ("radius y = 0", lambda x: x[:, 1] == 0, 1 / QUARTER_BOUNDARY)]),
    Case("spacetime-interval", lambda: SpaceTime(Interval(0, 1), 0, 2), 2, [0.5, 1.0],
         [("x < 1/2, t < 1/2", lambda x: (x[:, 0] < 0.5) & (x[:, 1] < 0.5), 1 / 8)],
         [("x = 0", lambda x: x[:, 0] == 0, 0.5), ("x = 1, t < 1/2", lambda x: (x[:, 0] == 1) & (x[:, 1] < 0.5), 1 / 8)]),
    Case("spacetime-disk", lambda: SpaceTime(Disk(), 0, 1), 3, [0.0, 0.0, 0.5],
         [("r < 1/2", lambda x: x[:, :2].norm(dim=1) < 0.5, 0.25),
          ("r < 1/2, t < 1/4", lambda x: (x[:, :2].norm(dim=1) < 0.5) & (x[:, 2] < 0.25), 1 / 16)],
         [("quadrant, t < 1/2", lambda x: (x[:, 0] > 0) & (x[:, 1] > 0) & (x[:, 2] < 0.5), 1 / 8)]),
    Case("spacetime-csg-L", lambda: SpaceTime(csg_l(), 0, 1), 3, [-1 / 6, -1 / 6, 0.5],
         L_SQUARES + [("t > 3/4", lambda x: x[:, 2] > 0.75, 0.25)],
         [("inner edge x=0, 0<y<1", lambda x: (x[:, 0] == 0) & (x[:, 1] > 0), 1 / 8),
          ("edge x=-1, t < 1/2", lambda x: (x[:, 0] == -1) & (x[:, 2] < 0.5), 1 / 8)],
         forbidden_boundary=_dangling_l_edges),
]
IDS = [c.id for c in CASES]


def _tol(p, n):
    return 5 * math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------- 1. interior points


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_interior_points_lie_inside(case):
    domain = case.make()
    assert domain.dim == case.dim
    x = domain.sample("interior", 3000, make_draw(1))
    assert x.shape == (3000, case.dim) and x.dtype == F64
    assert domain.contains(x).all()
    assert (domain.signed_distance(x) <= 0).all()
    assert (domain.signed_distance(x) < 0).float().mean() > 0.999  # strictly inside, but for round-off


# --------------------------------------------------------------------------- 2. boundary points and normals


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_boundary_points_and_outward_unit_normals(case):
    """Every boundary point is on the boundary; its normal is a unit vector pointing out.

    The step test ``sd(x + h n) > 0 > sd(x - h n)`` with ``h = 1e-6`` holds at every point of a
    smooth edge and near every corner whose angle (interior at convex, exterior at reflex
    corners) is at least 90 degrees: then the perpendicular step cannot reach the adjacent edge.
    Only at a convex corner sharper than 90 degrees (the chevron's tips) does the inward step
    from a point closer than ``h cot(angle)`` to the tip cross the other edge and leave the
    shape; points within 1e-5 of such tips are excluded, and there are (almost) none.
    """
    domain = case.make()
    b = domain.sample("boundary", 5000, make_draw(2))
    assert b.shape == (5000, case.dim)
    assert domain.contains(b).all()
    assert domain.signed_distance(b).abs().max() <= 1e-12
    n = domain.normal(b)
    assert n.shape == b.shape
    assert (n.norm(dim=1) - 1).abs().max() < 1e-14
    keep = torch.ones(len(b), dtype=torch.bool)
    for corner in case.sharp:
        keep &= (b[:, :2] - torch.tensor(corner, dtype=F64)).norm(dim=1) > 1e-5
    assert (~keep).sum() <= 2
    h = 1e-6
    assert (domain.signed_distance(b + h * n)[keep] > 0).all()
    assert (domain.signed_distance(b - h * n)[keep] < 0).all()


def test_normals_point_the_known_way():
    """Spot checks of the normals' directions, not only their outwardness."""
    disk = Disk([0.5, -0.5], 2.0)
    assert torch.allclose(disk.normal(t([2.5, -0.5], [0.5, 1.5])), t([1.0, 0.0], [0.0, 1.0]), atol=1e-15)
    L = csg_l()  # on the inner edges the normal is minus the removed square's
    assert torch.equal(L.normal(t([0.0, 0.5], [0.5, 0.0], [-1.0, 0.3], [0.4, -1.0])),
                       t([1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]))
    poly = Polygon(L_VERTICES)
    assert torch.allclose(poly.normal(t([0.0, 0.5], [0.5, 0.0], [-1.0, 0.3], [0.4, -1.0])),
                          t([1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]), atol=1e-15)
    chevron = Polygon(CHEVRON)  # edge (0,0)->(4,2): outward normal (1, -2)/sqrt(5)
    assert torch.allclose(chevron.normal(t([2.0, 1.0])), t([1.0, -2.0]) / math.sqrt(5), atol=1e-15)
    assert torch.allclose(chevron.normal(t([0.5, 1.0])), t([-2.0, 1.0]) / math.sqrt(5), atol=1e-15)  # reflex arm


# --------------------------------------------------------------------------- 3. uniformity


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_interior_is_uniform_in_volume(case):
    domain = case.make()
    x = domain.sample("interior", N, make_draw(3))
    mean, std = x.mean(dim=0), x.std(dim=0)
    centroid = torch.tensor(case.centroid, dtype=F64)
    assert ((mean - centroid).abs() < 5 * std / math.sqrt(N)).all(), (mean, centroid)
    for label, pred, p in case.interior_parts:
        frac = pred(x).double().mean().item()
        assert abs(frac - p) < _tol(p, N), (label, frac, p)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_boundary_is_uniform_in_measure(case):
    domain = case.make()
    b = domain.sample("boundary", N, make_draw(4))
    for label, pred, p in case.boundary_parts:
        frac = pred(b).double().mean().item()
        assert abs(frac - p) < _tol(p, N), (label, frac, p)
    if case.id in ("polygon-L", "chevron"):  # every point lies on exactly one edge (vertices aside)
        on = torch.stack([pred(b) for _, pred, _ in case.boundary_parts]).sum(dim=0)
        assert (on >= 1).all() and (on == 1).double().mean() > 0.999
    if case.forbidden_boundary is not None:
        assert not case.forbidden_boundary(b).any()


def test_fraction_tolerance_catches_a_linear_radius():
    """The fractions above can fail: a radius drawn uniformly (not by sqrt) puts 1/2 inside r < R/2."""
    naive = 2.0 * torch.rand(N, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert abs((naive < 1.0).double().mean().item() - 0.25) > _tol(0.25, N)
    disk = Disk([0.5, -0.5], 2.0)
    x = disk.sample("interior", N, make_draw(5))
    assert abs((_radius([0.5, -0.5])(x) < 1.0).double().mean().item() - 0.25) < _tol(0.25, N)


# --------------------------------------------------------------------------- 4. CSG L against polygon L


def _l_grid():
    s = torch.arange(-1.5, 1.5001, 0.25, dtype=F64)  # exact binary fractions, hits every edge and (0, 0)
    return torch.cartesian_prod(s, s)


def test_csg_l_and_polygon_l_agree_on_a_grid():
    grid = _l_grid()
    assert (grid == 0).all(dim=1).any()  # the re-entrant corner is on the grid
    csg, poly = csg_l(), Polygon(L_VERTICES)
    inside = poly.contains(grid)
    assert torch.equal(csg.contains(grid), inside)
    assert 20 < int(inside.sum()) < len(grid) - 20
    sd_csg, sd_poly = csg.signed_distance(grid), poly.signed_distance(grid)
    assert torch.equal(torch.sign(sd_csg), torch.sign(sd_poly))
    on_edge = sd_poly == 0
    assert on_edge.sum() >= 20  # many grid points are exactly on the edges
    assert torch.equal(sd_csg == 0, on_edge)
    # Strictly inside points are at exactly the same (exact) distance for both.
    inner = grid[(sd_poly < 0)]
    assert torch.allclose(csg.signed_distance(inner), poly.signed_distance(inner), atol=0)


def test_csg_l_excludes_the_removed_squares_outer_edges():
    pts = t([1.0, 0.5], [0.5, 1.0], [1.0, 1.0], [1.0, 0.25])
    csg, poly = csg_l(), Polygon(L_VERTICES)
    assert not poly.contains(pts).any()
    assert torch.equal(csg.contains(pts), poly.contains(pts))
    assert (csg.signed_distance(pts) > 0).all()


# --------------------------------------------------------------------------- 5. boundary measure


@pytest.mark.parametrize("domain,measure", [
    (Interval(-1, 2), 2.0),
    (Box([0, -1, 2], [1, 1, 3]), 10.0),
    (Box([0, 0], [3, 1]), 8.0),
    (Disk([0.5, -0.5], 2.0), 4 * math.pi),
    (Ball([0, 0, 0], 1.5), 4 * math.pi * 1.5**2),
    (Ball([1.0], 2.0), 2.0),  # a 1-D ball: two end points
    (Polygon(L_VERTICES), 8.0),
    (Polygon(CHEVRON), 6 * math.sqrt(5)),
    (SpaceTime(Interval(0, 1), 0, 2), 4.0),
    (SpaceTime(Disk(), 0, 1), 2 * math.pi),
    (SpaceTime(Disk([0, 0], 2.0), 1, 4), 12 * math.pi),
    (SpaceTime(Box([0, 0], [1, 2]), 0, 0.5), 3.0),
], ids=repr)
def test_boundary_measure(domain, measure):
    assert domain.boundary_measure == pytest.approx(measure, rel=1e-14)


def test_spacetime_boundary_measure_of_csg_space_is_space_times_duration():
    space = csg_l()
    assert SpaceTime(space, 0.5, 3.0).boundary_measure == pytest.approx(space.boundary_measure * 2.5, rel=1e-14)


# --------------------------------------------------------------------------- 6. space-time regions


@pytest.mark.parametrize("space", [Interval(0, 1), Disk([0.5, 0.5], 0.5), csg_l()], ids=repr)
def test_spacetime_regions(space):
    st = SpaceTime(space, 0.25, 2.0)
    assert st.regions == ("interior", "boundary", "initial")
    draw = make_draw(6)
    x0 = st.sample("initial", 500, draw)
    assert x0.shape == (500, space.dim + 1)
    assert (x0[:, -1] == 0.25).all()
    assert space.contains(x0[:, :-1]).all()
    b = st.sample("boundary", 500, draw)
    assert space.signed_distance(b[:, :-1]).abs().max() <= 1e-12
    assert (b[:, -1] >= 0.25).all() and (b[:, -1] <= 2.0).all()
    assert b[:, -1].std() > 0.3  # time spread over [0.25, 2] (uniform: 0.505)
    n = st.normal(b)
    assert (n[:, -1] == 0).all()
    assert torch.equal(n[:, :-1], space.normal(b[:, :-1]))
    x = st.sample("interior", 500, draw)
    assert st.contains(x).all() and (x[:, -1] > 0.25).all() and (x[:, -1] < 2.0).all()
    # A point past the final time, or before the initial one, is outside.
    assert not st.contains(torch.cat([x[:3, :-1], t([2.1], [0.2], [-1.0])], dim=1)).any()
    with pytest.raises(ConfigError, match="interior, boundary, initial"):
        st.sample("final", 10, draw)


@pytest.mark.parametrize("domain", [Box([0, 0], [1, 1]), Disk(), Polygon(L_VERTICES), csg_l()], ids=repr)
def test_unknown_region_names_the_valid_ones(domain):
    assert domain.regions == ("interior", "boundary")
    with pytest.raises(ConfigError, match=r"'initial'.*interior, boundary$"):
        domain.sample("initial", 10, make_draw(0))


# --------------------------------------------------------------------------- 7. bad input


@pytest.mark.parametrize("build,match", [
    (lambda: Polygon([[0, 0], [1, 0]]), "at least three"),
    (lambda: Polygon([[0, 0], [1, 1], [2, 2]]), "no area"),
    (lambda: Polygon([[0, 0], [1, 0], [2, 0], [1, 0]]), "no area"),
    (lambda: Polygon([[0, 0], [1, 1], [1, 0], [0, 1]]), "no area: they lie on one line, or trace a figure eight"),
    (lambda: Polygon([[0, 0, 0], [1, 0, 0], [0, 1, 0]]), r"\[x, y\] pairs"),
    (lambda: Disk([0, 0, 0], 1.0), "two coordinates"),
    (lambda: Polygon([(0, 0), (3, 0), (3, 1), (1, 1), (2, -1), (0, 1)]), "cross; the vertices must trace a simple"),
    (lambda: Polygon([(0, 0), (1, 0), (1, 1), (0, 0.5), (0, 0), (-1, 0.5)]), r"vertex \[0.0, 0.0\] appears twice"),
    (lambda: Polygon([(0, 0), (2, 0), (1, 0), (1, 1)]), "overlap; the outline doubles back"),
    (lambda: Polygon([(0, 0), (1, 0), (float("nan"), 1)]), "must be finite"),
    (lambda: Polygon([(0, 0), (1, 0), (1, 1), (float("inf"), 1)]), "must be finite"),
    (lambda: Polygon([(0, 0), (1e155, 0), (1e155, 1e155)]), "at most 1e150 in magnitude"),
    (lambda: Polygon([(0, 0), (0, 0), (1, 0), (1, 0)]), "fewer than three distinct vertices"),
    (lambda: Ball([0, 0, 0], 0.0), "radius must be a finite number > 0"),
    (lambda: Ball([0, 0], -1.0), "radius must be a finite number > 0"),
    (lambda: Ball([0, 0], float("inf")), "radius must be a finite number > 0"),
    (lambda: Ball([0, float("nan")], 1.0), "coordinates must be finite"),
    (lambda: Box(float("nan"), 1.0), "finite lo < hi"),
    (lambda: Box(0.0, float("inf")), "finite lo < hi"),
    (lambda: Box([], []), "empty"),
    (lambda: SpaceTime(Interval(0, 1), 1.0, 1.0), "t0 < t1"),
    (lambda: SpaceTime(Interval(0, 1), 2.0, 1.0), "t0 < t1"),
    (lambda: SpaceTime(Interval(0, 1), 0.0, float("inf")), "finite t0 < t1"),
    (lambda: SpaceTime(Interval(0, 1), float("-inf"), 1.0), "finite t0 < t1"),
    (lambda: (Disk() - Disk(radius=0.5)).sample("interior", -1, torch.rand), "an integer >= 0; got -1"),
    (lambda: Disk().sample("interior", -1, torch.rand), "an integer >= 0; got -1"),
    (lambda: SpaceTime(Interval(0, 1)).sample("initial", 2.5, torch.rand), "an integer >= 0; got 2.5"),
    (lambda: (Disk() - Disk(radius=0.5)).sample("boundary", True, torch.rand), "an integer >= 0; got True"),
    (lambda: Box([0, 0], [1, 1]) | Interval(0, 1), "same dimension"),
    (lambda: Disk() & Ball([0, 0, 0], 1.0), "same dimension"),
    (lambda: Box([0, 0, 0], [1, 1, 1]) - Disk(), "same dimension"),
    (lambda: Box([0, 1], [1, 1]), "lo < hi"),
    (lambda: Box([0, 2], [1, 1]), "lo < hi"),
    (lambda: Interval(1, 0), "lo < hi"),
    (lambda: Interval("a", 1), "Interval: lo and hi must be numbers; got lo='a', hi=1"),
    (lambda: Interval(None), "Interval: lo and hi must be numbers; got lo=None"),
    (lambda: Polygon("abc"), "vertices must be a list of at least three"),
    (lambda: Polygon(None), "vertices must be a list of at least three"),
    (lambda: Polygon([(0, 0), (1, 0), (0, "a")]), "vertices must be a list of at least three"),
    (lambda: Polygon([(0, 0), (1,), (0, 1)]), "vertices must be a list of at least three"),
    (lambda: SpaceTime(Interval(0, 1), "a", 1.0), "finite t0 < t1, both numbers; got t0='a'"),
    (lambda: SpaceTime(Interval(0, 1), None), "finite t0 < t1, both numbers; got t0=None"),
    (lambda: SpaceTime("x"), "SpaceTime: space must be a domain"),
    (lambda: Difference(Disk(), None), "Difference: both parts must be domains"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_shapes_raise_config_error(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_a_set_operation_with_something_not_a_shape_is_pythons_type_error():
    for combine in (lambda a, b: a | b, lambda a, b: a & b, lambda a, b: a - b):
        with pytest.raises(TypeError, match="unsupported operand type"):
            combine(Disk(), "x")


@pytest.mark.parametrize("dim", [1, 3])
def test_ball_boundary_points_from_the_centre_of_the_unit_cube(dim):
    # every unit coordinate at 1/2 has no Gaussian direction; the point still lands on the sphere
    ball = Ball([0.0] * dim, 2.0)
    x = ball.boundary(torch.full((1, ball.boundary_unit_dim), 0.5, dtype=torch.float64))
    assert torch.isfinite(x).all() and torch.allclose(x.norm(dim=1), torch.tensor([2.0], dtype=torch.float64))


def test_numbers_of_every_kind_make_shapes():
    import numpy as np
    from omegaconf import OmegaConf

    assert Ball([0, 0], np.float32(0.5)).radius == 0.5 and Ball([0, 0], torch.tensor(2)).radius == 2.0
    assert Ball(np.zeros(3), np.int64(1)).dim == 3
    assert torch.equal(Box(np.float32(0), np.float32(1), dim=2).hi, torch.ones(2, dtype=torch.float64))
    assert torch.equal(Box(OmegaConf.create([0, 0]), OmegaConf.create([1, 2])).hi, torch.tensor([1.0, 2.0],
                                                                                             dtype=torch.float64))
    for flag in (True, np.bool_(True)):
        with pytest.raises(ConfigError, match="radius must be a finite number > 0; got"):
            Ball([0, 0], flag)
    with pytest.raises(ConfigError, match="must be numbers"):
        Box(np.bool_(False), np.bool_(True))


def _regular(n: int) -> list[list[float]]:
    return [[math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n)] for k in range(n)]


def _edge(v: list[list[float]], k: int) -> str:
    return re.escape(str((v[k], v[(k + 1) % len(v)])))


def test_a_repeated_vertex_is_named_by_its_positions_as_given():
    # a closed ring's repeated first vertex is dropped, and the positions still count from the input
    for vertices, where in [([[0, 0], [4, 0], [4, 4], [2, 2], [4, 0.0], [0, 4], [0, 0]], "1 and 4"),
                            ([[0, 0], [0, 0], [4, 0], [4, 4], [2, 2], [4, 0.0], [0, 4]], "2 and 5")]:
        with pytest.raises(ConfigError, match=rf"vertex \[4.0, 0.0\] appears twice \(vertices {where}, counting from 0\)"):
            Polygon(vertices)


def test_a_vertex_within_rounding_of_the_line_is_judged_by_the_rounding_bound():
    # A third vertex a hair off the line of the edge before it, either side of the bound's
    # threshold (which sums |u0| + |u1| + |v0| + |v1| in that order): collinear and doubling back
    # (refused), or not (a thin triangle, kept).
    assert len(Polygon([[2, 0], [1, 0], [1.651592972722763, 5.867636946002964e-15], [3, 1]]).vertices) == 4
    with pytest.raises(ConfigError, match="overlap; the outline doubles back"):
        Polygon([[2, 0], [1, 0], [1.7887233511355132, 6.354821917169032e-15], [3, 1]])


def test_large_polygons_are_checked_in_full_and_the_first_bad_pair_is_named():
    n = 3000  # the edges are tested a block of a few hundred at a time
    assert len(Polygon(_regular(n)).vertices) == n
    for k in (10, 2500):  # two vertices swapped: edges k - 1 and k + 1 cross
        v = _regular(n)
        v[k], v[k + 1] = v[k + 1], v[k]
        with pytest.raises(ConfigError, match=f"edges {_edge(v, k - 1)} and {_edge(v, k + 1)} cross"):
            Polygon(v)

    def doubled_back(v, m):  # after vertex m + 1, back to the middle of edge m: edges m and m + 1 overlap
        middle = [(a + b) / 2 for a, b in zip(v[m], v[m + 1])]
        return v[:m + 2] + [middle] + v[m + 2:]
    folded_early = doubled_back(_regular(n), 100)
    folded_early[2500], folded_early[2501] = folded_early[2501], folded_early[2500]
    with pytest.raises(ConfigError, match=f"edges {_edge(folded_early, 100)} and {_edge(folded_early, 101)} overlap"):
        Polygon(folded_early)
    crossed_early = _regular(n)
    crossed_early[10], crossed_early[11] = crossed_early[11], crossed_early[10]
    crossed_early = doubled_back(crossed_early, 2500)
    with pytest.raises(ConfigError, match=f"edges {_edge(crossed_early, 9)} and {_edge(crossed_early, 11)} cross"):
        Polygon(crossed_early)


def test_simple_polygons_with_collinear_or_repeated_end_vertices_are_accepted():
    Polygon([(0, 0), (1, 0), (2, 0), (2, 1), (0, 1)])  # a vertex in the middle of an edge
    Polygon([(0, 0), (2, 0), (2, 2), (1, 1), (0, 2)])  # a reflex corner
    assert len(Polygon([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)]).vertices) == 4  # a closed ring
    assert len(Polygon([(0, 0), (0.1 * 3, 0), (0.3, 0), (0.3, 1), (0, 1)]).vertices) == 4  # 0.30000000000000004
    # far from the origin (map coordinates), thin features are not round-off
    assert len(Polygon([(1e6, 1e6), (1e6 + 2, 1e6), (1e6 + 1, 1e6 + 1e-3), (1e6 + 1, 1e6 + 1)]).vertices) == 4
    c = math.sqrt(0.5)  # a U with a gap of 0.001, turned by 45 degrees
    u = [(0, 0), (3, 0), (3, 2), (2, 2), (2, 0.001), (1, 0.001), (1, 2), (0, 2)]
    assert len(Polygon([(5e5 + c * (x - y), 5e6 + c * (x + y)) for x, y in u]).vertices) == 8
    assert len(Polygon([(1e6, 1e6), (1e6 + 1e-7, 1e6), (1e6 + 1e-7, 1e6 + 1e-7), (1e6, 1e6 + 1e-7)]).vertices) == 4


@pytest.mark.parametrize("domain", [Box([0, 0], [1, 1]), Disk(), Polygon(L_VERTICES), csg_l(),
                                    SpaceTime(Interval(0, 1))], ids=repr)
def test_points_of_another_dimension_are_refused(domain):
    # An (N, 1) column would broadcast against a 2-D shape's corners or centre: answers for other points.
    x = torch.full((3, 1), 0.5, dtype=torch.float64)
    for method in (domain.contains, domain.signed_distance, domain.normal):
        with pytest.raises(ValueError, match=r"takes points of shape \(N, 2\); got \(3, 1\)"):
            method(x)


# --------------------------------------------------------------------------- 8. samplers with named regions


@pytest.mark.parametrize("cls", [UniformSampler, SobolSampler])
def test_samplers_fill_the_spacetime_regions(cls):
    st = SpaceTime(Interval(0, 1), 0.0, 1.0)
    sampler = cls(n_interior=64, n_boundary=32, n_initial=16)
    regions = ("interior", "boundary", "initial")
    a = sampler.sample(st, torch.Generator().manual_seed(11), regions)
    assert list(a) == list(regions)
    assert a["interior"].shape == (64, 2) and a["boundary"].shape == (32, 2) and a["initial"].shape == (16, 2)
    assert all(v.dtype == F64 for v in a.values())
    assert st.contains(a["interior"]).all()
    assert ((a["boundary"][:, 0] == 0) | (a["boundary"][:, 0] == 1)).all()
    assert (a["initial"][:, 1] == 0).all() and (a["initial"][:, 0] >= 0).all() and (a["initial"][:, 0] <= 1).all()
    b = sampler.sample(st, torch.Generator().manual_seed(11), regions)
    assert all(torch.equal(a[k], b[k]) for k in regions)
    c = sampler.sample(st, torch.Generator().manual_seed(12), regions)
    assert not any(torch.equal(a[k], c[k]) for k in regions)


@pytest.mark.parametrize("cls", [UniformSampler, SobolSampler])
@pytest.mark.parametrize("region", ["boundary", "initial"])
def test_sampler_with_no_points_for_a_region_names_the_setting(cls, region):
    sampler = cls(**{"n_interior": 8, "n_boundary": 4, "n_initial": 4, f"n_{region}": 0})
    st = SpaceTime(Interval(0, 1))
    with pytest.raises(ConfigError, match=f"sampler.n_{region}"):
        sampler.sample(st, torch.Generator().manual_seed(0), ("interior", "boundary", "initial"))
    other = "initial" if region == "boundary" else "boundary"
    out = sampler.sample(st, torch.Generator().manual_seed(0), ("interior", other))
    assert out[other].shape == (4, 2)


def test_samplers_fill_csg_regions_reproducibly():
    L = csg_l()
    sampler = SobolSampler(n_interior=128, n_boundary=64)
    a = sampler.sample(L, torch.Generator().manual_seed(3))
    b = sampler.sample(L, torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["interior"].shape == (128, 2) and a["boundary"].shape == (64, 2)
    assert L.contains(a["interior"]).all()
    assert L.signed_distance(a["boundary"]).abs().max() <= 1e-12
    assert not _dangling_l_edges(a["boundary"]).any()


def test_a_thin_csg_shape_is_sampled_in_batches_of_bounded_size(monkeypatch):
    import pinn.geometry as geometry

    shell = Disk([0.0, 0.0], 1.0) - Disk([0.0, 0.0], 0.999)  # accepts about 1 proposal in 640
    asked = []

    def draw(seed):
        numbers = make_draw(seed)
        return lambda n, k: asked.append(n * k) or numbers(n, k)

    unbounded = shell.sample("interior", 200, draw(0))
    assert max(asked) > 2 * 4096  # the size the batches are held to below
    monkeypatch.setattr(geometry, "MOST_DRAWN_AT_ONCE", 4096)
    asked.clear()
    bounded = shell.sample("interior", 200, draw(0))
    assert max(asked) <= 4096 and len(asked) > 20
    assert torch.equal(bounded, unbounded)  # the same stream of numbers, so the same first 200 points inside
    r = bounded.norm(dim=1)
    assert r.min() >= 0.999 and r.max() <= 1
    # one that would take more proposals than allowed says how thin it is; an empty one, that it may be empty
    monkeypatch.setattr(geometry, "MOST_PROPOSALS", 50_000)
    with pytest.raises(ConfigError, match=r"only 1\.\de-03 of the proposals .* fall inside, so 200 points would take "
                                          r"about 1\.\de\+05 proposals \(at most 5\.0e\+04"):
        shell.sample("interior", 200, draw(0))
    with pytest.raises(ConfigError, match="almost no proposal falls inside; is the shape empty"):
        (Disk([0.0, 0.0], 1.0) & Disk([3.0, 0.0], 1.0)).sample("interior", 10, draw(0))


# --------------------------------------------------------------------------- nested CSG


def test_nested_csg_boundary_is_uniform_in_length():
    # (L) | Disk([-1, -1], 1/2): the L keeps 8 - 1 = 7 of its perimeter, the disk 3/4 of its circle.
    shape = csg_l() | Disk([-1.0, -1.0], 0.5)
    b = shape.sample("boundary", N, make_draw(7))
    on_l = (csg_l().signed_distance(b).abs() <= 1e-12).double().mean().item()
    p = 7 / (7 + 0.75 * math.pi)
    assert abs(on_l - p) < _tol(p, N), (on_l, p)


def test_nested_csg_boundary_points_are_distinct():
    shape = csg_l() & Disk([-1.0, -1.0], 1.0)
    b = shape.sample("boundary", 1000, make_draw(0))
    assert shape.signed_distance(b).abs().max() <= 1e-12  # they are on the boundary ...
    assert len(torch.unique(b, dim=0)) == len(b)  # ... and all distinct


@pytest.mark.parametrize("seed", range(8))
def test_a_nested_part_that_draws_no_share_of_a_batch_gives_no_points(seed):
    # The tiny disks' share of the boundary is about 1e-4: in most batches one of them gets no
    # proposals, which the union (itself CSG) must answer with no points, not an error.
    shape = Box([0.0, 0.0], [1.0, 1.0]) - (Disk([0.3, 0.3], 3e-4) | Disk([0.7, 0.7], 3e-4))
    b = shape.sample("boundary", 400, make_draw(seed))
    assert b.shape == (400, 2) and shape.signed_distance(b).abs().max() <= 1e-12
    assert (Disk() - Disk(radius=0.5)).sample("interior", 0, make_draw(seed)).shape == (0, 2)


def test_a_shape_far_from_the_origin_contains_its_own_boundary_points():
    # Coordinates of 1e5 carry round-off of 1e-11: the tolerance scales with them, not only
    # with the shape's size.
    disk = Disk((1e5, 0.0), 1.0)
    points = disk.sample("boundary", 500, lambda m, k: torch.rand(m, k, dtype=torch.float64))
    assert disk.contains(points).all()
    assert not disk.contains(torch.tensor([[1e5 + 1.001, 0.0]], dtype=torch.float64)).any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_on_boundary_tells_the_parts_of_a_csg_boundary_apart(dtype):
    """Boundary points of a square with a hole, rounded to the training dtype: each lies on
    exactly one of the two parts, and on_boundary says which (float32 puts the hole's points
    up to 4e-8 off the circle)."""
    square, hole = Box([0.0, 0.0], [1.0, 1.0]), Disk(center=(0.5, 0.5), radius=0.2)
    x = (square - hole).sample("boundary", 4000, lambda m, k: torch.rand(m, k, dtype=torch.float64,
                                                                         generator=torch.Generator().manual_seed(0)))
    on_the_circle = ((x - 0.5).norm(dim=1) - 0.2).abs() < 1e-9
    x = x.to(dtype)
    assert torch.equal(hole.on_boundary(x), on_the_circle) and torch.equal(square.on_boundary(x), ~on_the_circle)
    assert 0.2 < on_the_circle.float().mean() < 0.3  # the circle's share of the boundary's length, 1.26 of 5.26
    inside = (square - hole).sample("interior", 500, lambda m, k: torch.rand(m, k, dtype=torch.float64,
                                                                            generator=torch.Generator().manual_seed(1)))
    assert not hole.on_boundary(inside.to(dtype)).any()


@pytest.mark.parametrize("domain", [Disk((0.0, 0.0), 3.0), Polygon([[0.0, 0.0], [3.0, 0.3], [1.0, 2.0]]),
                                    Box(0.0, 1.0, dim=2) - Disk((0.5, 0.5), 0.3)], ids=["disk", "polygon", "csg"])
def test_boundary_points_in_float32_are_in_the_closed_domain(domain):
    # contains and on_boundary allow the same round-off of the points' dtype: a point on the
    # boundary is in the closed domain.
    x = domain.sample("boundary", 1000, lambda m, k: torch.rand(m, k, dtype=torch.float64,
                                                                generator=torch.Generator().manual_seed(0))).float()
    assert domain.on_boundary(x).all() and domain.contains(x).all()
    lo, hi = domain.bounds
    assert not domain.contains((hi + 0.01).float().expand(3, -1)).any()


@pytest.mark.parametrize("dim", [1100, 400])
def test_a_high_dimensional_box_spreads_its_boundary_points_over_every_face(dim):
    # The faces' areas overflow (2^1099) or, for a narrow box, underflow; their shares do not.
    for box in (Box([-1.0] * dim, [1.0] * dim), Box([0.0] * dim, [0.1] * dim)):
        b = box.boundary(torch.rand(4000, box.boundary_unit_dim, generator=torch.Generator().manual_seed(0),
                                    dtype=F64))
        lo, hi = box.bounds
        on = ((b - lo).abs() < 1e-15) | ((b - hi).abs() < 1e-15)
        assert on.any(dim=1).all()
        axes = on.double().sum(dim=0)
        assert (axes > 0).sum() > 0.9 * dim  # 4,000 points over 2d faces of equal area: nearly every axis


def test_faces_of_a_box_get_points_in_proportion_to_their_area():
    box = Box([0.0, 0.0, 0.0], [1.0, 2.0, 4.0])  # faces 8, 4 and 2 (each twice): shares 8/28, 4/28, 2/28
    b = box.boundary(torch.rand(N, 3, generator=torch.Generator().manual_seed(1), dtype=F64))
    lo, hi = box.bounds
    on = (((b - lo).abs() < 1e-15) | ((b - hi).abs() < 1e-15)).double().mean(dim=0)
    for axis, p in enumerate([16 / 28, 8 / 28, 4 / 28]):
        assert abs(on[axis].item() - p) < _tol(p, N)


def test_a_ball_in_high_dimensions_has_a_boundary_measure():
    # Γ(d/2) overflows a double beyond d = 343: the measure is then computed by logarithms
    def ball(d, radius=1.0):
        return Ball([0.0] * d, radius)

    assert ball(400).boundary_measure == pytest.approx(
        math.exp(math.log(2) + 200 * math.log(math.pi) - math.lgamma(200)), rel=1e-9)  # about 1e-273
    assert ball(2000).boundary_measure == 0.0  # 2 π^1000 / Γ(1000) underflows
    assert ball(400, radius=100.0).boundary_measure == math.inf
    assert ball(300).boundary_measure == pytest.approx(
        math.exp(math.log(2) + 150 * math.log(math.pi) - math.lgamma(150)), rel=1e-9)
