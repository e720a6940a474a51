"""Boundary, initial and data conditions: residuals against closed-form fields, and engine agreement."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from pinn.conditions import Dirichlet, Initial, InitialVelocity, Neumann, Periodic, PointData, Robin, mean_square
from pinn.derivatives import AutogradEngine, ForwardEngine
from pinn.errors import PDEError
from pinn.geometry import Box, Disk, Interval, SpaceTime
from pinn.models import MLP

F64 = torch.float64
AUTOGRAD = AutogradEngine()


def make_draw(seed):
    g = torch.Generator().manual_seed(seed)
    return lambda n, k: torch.rand(n, k, generator=g, dtype=F64)


def col(x, i):
    return x[:, i : i + 1]


def const(c):
    return lambda x: torch.full_like(x[:, :1], c)


def squared_radius(x):  # u = x^2 + y^2: du/dn = 2r on a circle of radius r about the origin
    return x.square().sum(dim=1, keepdim=True)


def xy(x):
    return col(x, 0) * col(x, 1)


# --------------------------------------------------------------------------- 1. Dirichlet


def test_dirichlet_residual_is_model_minus_value():
    x = Box([0, 0], [1, 2]).sample("boundary", 200, make_draw(0))

    def model(p):
        return torch.sin(col(p, 0)) * col(p, 1)

    assert torch.equal(Dirichlet(model).residual(model, x, AUTOGRAD), torch.zeros(200, 1, dtype=F64))
    g = lambda p: col(p, 0) ** 2  # noqa: E731
    r = Dirichlet(g).residual(model, x)
    assert r.shape == (200, 1)
    assert torch.equal(r, model(x) - g(x))
    assert r.abs().max() > 0.1
    assert Dirichlet(g).loss(model, x, AUTOGRAD).item() == pytest.approx(r.square().mean().item(), rel=1e-15)


def test_dirichlet_components_select_outputs():
    x = Disk().sample("boundary", 100, make_draw(1))

    def model(p):  # two outputs: x^2 and 3y
        return torch.cat([col(p, 0) ** 2, 3 * col(p, 1)], dim=1)

    second = Dirichlet(lambda p: 3 * col(p, 1), components=[1]).residual(model, x, AUTOGRAD)
    assert second.shape == (100, 1)
    assert torch.equal(second, torch.zeros(100, 1, dtype=F64))
    first = Dirichlet(lambda p: 3 * col(p, 1), components=[0]).residual(model, x, AUTOGRAD)
    assert torch.equal(first, col(x, 0) ** 2 - 3 * col(x, 1))
    both = Dirichlet(lambda p: torch.cat([col(p, 0) ** 2, 3 * col(p, 1)], dim=1)).residual(model, x, AUTOGRAD)
    assert both.shape == (100, 2) and torch.equal(both, torch.zeros(100, 2, dtype=F64))
    swapped = Dirichlet(lambda p: torch.cat([3 * col(p, 1), col(p, 0) ** 2], dim=1), components=[1, 0])
    assert torch.equal(swapped.residual(model, x, AUTOGRAD), torch.zeros(100, 2, dtype=F64))


def test_initial_is_dirichlet_on_the_initial_slice():
    st = SpaceTime(Interval(0, 1), 0.0, 1.0)
    x0 = st.sample("initial", 50, make_draw(2))

    def model(p):
        return torch.sin(math.pi * col(p, 0)) * torch.exp(-col(p, 1))

    assert torch.equal(Initial(lambda p: torch.sin(math.pi * col(p, 0))).residual(model, x0, AUTOGRAD),
                       torch.zeros(50, 1, dtype=F64))
    later = x0 + torch.tensor([0.0, 0.5], dtype=F64)
    r = Initial(lambda p: torch.sin(math.pi * col(p, 0))).residual(model, later, AUTOGRAD)
    assert torch.allclose(r, torch.sin(math.pi * col(later, 0)) * (math.exp(-0.5) - 1), atol=1e-15)


# --------------------------------------------------------------------------- 2. Neumann


def test_neumann_on_a_circle():
    disk = Disk([0.0, 0.0], 1.5)
    x = disk.sample("boundary", 300, make_draw(3))
    cond = Neumann(const(3.0), disk.normal)  # 2r = 3
    r = cond.residual(squared_radius, x, AUTOGRAD)
    assert r.shape == (300, 1)
    assert r.abs().max() < 1e-13
    u, du_dn = cond.normal_derivative(squared_radius, x, AUTOGRAD)
    assert torch.allclose(u, torch.full((300, 1), 2.25, dtype=F64), atol=1e-14)
    assert torch.allclose(du_dn, torch.full((300, 1), 3.0, dtype=F64), atol=1e-13)
    wrong = Neumann(const(2.0), disk.normal).residual(squared_radius, x, AUTOGRAD)
    assert torch.allclose(wrong, torch.ones(300, 1, dtype=F64), atol=1e-13)


def _box_faces(x):
    return {"x=0": x[:, 0] == 0, "x=1": x[:, 0] == 1, "y=0": x[:, 1] == 0, "y=1": x[:, 1] == 1}


def test_neumann_on_each_face_of_the_unit_square():
    box = Box([0.0, 0.0], [1.0, 1.0])
    x = box.sample("boundary", 400, make_draw(4))
    # u = xy, grad u = (y, x): du/dn = -y on x=0, y on x=1, -x on y=0, x on y=1.
    expected = {"x=0": -col(x, 1), "x=1": col(x, 1), "y=0": -col(x, 0), "y=1": col(x, 0)}
    _, du_dn = Neumann(const(0.0), box.normal).normal_derivative(xy, x, AUTOGRAD)
    for face, mask in _box_faces(x).items():
        assert mask.sum() > 50, face
        assert torch.allclose(du_dn[mask], expected[face][mask], atol=1e-15, rtol=0), face

    def g(p):  # the matching data, face by face
        on = _box_faces(p)
        out = torch.zeros_like(p[:, :1])
        for face, mask in on.items():
            sign = -1.0 if face.endswith("=0") else 1.0
            other = col(p, 1) if face.startswith("x") else col(p, 0)
            out[mask] = sign * other[mask]
        return out

    r = Neumann(g, box.normal).residual(xy, x, AUTOGRAD)
    assert r.abs().max() < 1e-15
    wrong = Neumann(lambda p: g(p) + 0.25, box.normal).residual(xy, x, AUTOGRAD)
    assert torch.allclose(wrong, torch.full((400, 1), -0.25, dtype=F64), atol=1e-15)
    # An inward normal flips the sign: the residual is then -2 du/dn.
    inward = Neumann(g, lambda p: -box.normal(p)).residual(xy, x, AUTOGRAD)
    assert torch.allclose(inward, -2 * du_dn, atol=1e-15)


def test_neumann_component_of_a_vector_field():
    disk = Disk([0.0, 0.0], 1.5)
    x = disk.sample("boundary", 100, make_draw(5))

    def model(p):  # component 1 is x^2 + y^2
        return torch.cat([xy(p), squared_radius(p)], dim=1)

    assert Neumann(const(3.0), disk.normal, component=1).residual(model, x, AUTOGRAD).abs().max() < 1e-13
    assert Neumann(const(3.0), disk.normal, component=0).residual(model, x, AUTOGRAD).abs().max() > 1.0


# --------------------------------------------------------------------------- 3. Robin


def test_robin_on_a_circle():
    disk = Disk([0.0, 0.0], 1.5)
    x = disk.sample("boundary", 200, make_draw(6))
    alpha, beta = 2.0, -0.5  # alpha u + beta du/dn = 2 * 2.25 - 0.5 * 3 = 3
    r = Robin(alpha, beta, const(3.0), disk.normal).residual(squared_radius, x, AUTOGRAD)
    assert r.shape == (200, 1) and r.abs().max() < 1e-13
    off = Robin(alpha, beta, const(0.0), disk.normal).residual(squared_radius, x, AUTOGRAD)
    assert torch.allclose(off, torch.full((200, 1), 3.0, dtype=F64), atol=1e-13)


def test_robin_combines_value_and_flux_on_the_square():
    box = Box([0.0, 0.0], [1.0, 1.0])
    x = box.sample("boundary", 200, make_draw(7))
    alpha, beta = 0.75, 1.25
    _, du_dn = Neumann(const(0.0), box.normal).normal_derivative(xy, x, AUTOGRAD)
    r = Robin(alpha, beta, const(0.0), box.normal).residual(xy, x, AUTOGRAD)
    assert torch.allclose(r, alpha * xy(x) + beta * du_dn, atol=1e-15)
    assert r.abs().max() > 0.5
    matching = Robin(alpha, beta, lambda p: alpha * xy(p) + beta * du_dn, box.normal)
    assert matching.residual(xy, x, AUTOGRAD).abs().max() < 1e-15
    # beta = 0 is a Dirichlet condition scaled by alpha
    r0 = Robin(alpha, 0.0, const(1.0), box.normal).residual(xy, x, AUTOGRAD)
    assert torch.allclose(r0, alpha * xy(x) - 1.0, atol=1e-15)


def test_robin_coefficients_may_vary_along_the_boundary():
    disk = Disk([0.0, 0.0], 1.5)
    x = disk.sample("boundary", 200, make_draw(9))
    alpha = lambda p: 1 + p[:, :1] ** 2  # noqa: E731
    beta = lambda p: p[:, 1:]  # noqa: E731
    # u = |x|²: u = 2.25 and du/dn = 3 on the circle
    r = Robin(alpha, beta, lambda p: 2.25 * alpha(p) + 3 * beta(p), disk.normal).residual(squared_radius, x, AUTOGRAD)
    assert r.shape == (200, 1) and r.abs().max() < 1e-13
    with pytest.raises(ValueError, match=r"the Robin beta must be a function of the points .* keep the column"):
        Robin(alpha, lambda p: p[:, 1], const(0.0), disk.normal).residual(squared_radius, x, AUTOGRAD)
    # a tensor of values is checked as a function's values are: (N,) would make the residual (N, N)
    with pytest.raises(ValueError, match=r"the Robin alpha must be .* it returned \(200,\), not \(200, 1\)"):
        Robin(torch.ones(200, dtype=x.dtype), 1.0, const(0.0), disk.normal).residual(squared_radius, x, AUTOGRAD)
    with pytest.raises(ValueError, match=r"the Robin alpha must be .* it returned str, not \(200, 1\); give a number"):
        Robin("1", 1.0, const(0.0), disk.normal).residual(squared_radius, x, AUTOGRAD)
    r = Robin(alpha(x), beta(x), lambda p: 2.25 * alpha(p) + 3 * beta(p), disk.normal).residual(squared_radius, x, AUTOGRAD)
    assert r.shape == (200, 1) and r.abs().max() < 1e-13
    with pytest.raises(ValueError, match="Robin condition: alpha and beta are both 0, which leaves 0 = g"):
        Robin(0, 0.0, const(1.0), disk.normal)  # a residual of -g, which nothing can train


@pytest.mark.parametrize("condition", [Neumann, lambda g, normal: Robin(1.0, 1.0, g, normal)], ids=["Neumann", "Robin"])
def test_a_normal_of_the_wrong_shape_is_named(condition):
    # An (N, 1) "normal" would broadcast against the (N, d) gradient and sum its components.
    disk = Disk([0.0, 0.0], 1.5)
    x = disk.sample("boundary", 20, make_draw(9))
    bad = condition(const(3.0), lambda p: torch.ones(len(p), 1, dtype=p.dtype))
    with pytest.raises(ValueError, match=r"the normal must be a function of the points \(N, d\) -> \(N, d\); "
                                         r"for points of shape \(20, 2\) it returned \(20, 1\)"):
        bad.residual(squared_radius, x, AUTOGRAD)


# --------------------------------------------------------------------------- 4. Periodic


def _periodic_points(n=200, seed=8):
    st = SpaceTime(Interval(-1, 1), 0.0, 1.0)
    return st, st.sample("boundary", n, make_draw(seed))


def test_periodic_field_has_zero_residual():
    _, b = _periodic_points()
    assert set(b[:, 0].tolist()) == {-1.0, 1.0}

    def model(p):  # period 2 in x: value and x-derivative agree at x = -1 and x = 1
        return torch.sin(math.pi * col(p, 0)) * col(p, 1)

    r = Periodic(axis=0, lo=-1, hi=1).residual(model, b, AUTOGRAD)
    assert r.shape == (200, 2)
    assert r.abs().max() < 1e-12


def test_non_periodic_fields_have_nonzero_residuals():
    _, b = _periodic_points()
    x, tt = col(b, 0), col(b, 1)
    r = Periodic(axis=0, lo=-1, hi=1).residual(lambda p: col(p, 0) * col(p, 1), b, AUTOGRAD)
    # u = x t: u(1, t) - u(-1, t) = 2t, with the sign of x; the x-derivative t is periodic.
    assert torch.allclose(col(r, 0), 2 * x * tt, atol=1e-15)
    assert torch.allclose(col(r, 1), torch.zeros_like(tt), atol=1e-15)
    assert col(r, 0).abs().max() > 1.0
    # u = x^2 t: the value is periodic, the derivative 2 x t is not.
    r2 = Periodic(axis=0, lo=-1, hi=1).residual(lambda p: col(p, 0) ** 2 * col(p, 1), b, AUTOGRAD)
    assert torch.allclose(col(r2, 0), torch.zeros_like(tt), atol=1e-15)
    assert torch.allclose(col(r2, 1), 4 * x * tt, atol=1e-14)
    values_only = Periodic(axis=0, lo=-1, hi=1, derivative=False).residual(lambda p: col(p, 0) ** 2 * col(p, 1), b, AUTOGRAD)
    assert values_only.shape == (200, 1) and values_only.abs().max() < 1e-15


def test_periodic_ignores_points_off_the_faces():
    st, b = _periodic_points()
    inside = st.sample("interior", 50, make_draw(9))
    mixed = torch.cat([inside[:25], b, inside[25:]])

    def model(p):
        return col(p, 0) * col(p, 1)

    cond = Periodic(axis=0, lo=-1, hi=1)
    assert torch.equal(cond.residual(model, mixed, AUTOGRAD), cond.residual(model, b, AUTOGRAD))
    with pytest.raises(ValueError, match="none of its 50 points"):
        cond.residual(model, inside, AUTOGRAD)


def test_periodic_finds_float32_points_a_rounding_off_the_face():
    b = torch.tensor([[1.0, 0.3], [-1.0, 0.3], [0.5, 0.2]], dtype=torch.float32)
    b[0, 0] = torch.nextafter(b[0, 0], torch.tensor(2.0))  # one float32 step beyond the face
    r = Periodic(axis=0, lo=-1, hi=1).residual(lambda p: col(p, 0) * col(p, 1), b, AUTOGRAD)
    assert r.shape == (2, 2)  # both face points kept, the interior one left out


@pytest.mark.parametrize("make", [
    lambda g: (Dirichlet(g), "Dirichlet"),
    lambda g: (Neumann(g, lambda x: torch.ones_like(x) / 2**0.5), "Neumann"),
    lambda g: (Robin(1.0, 1.0, g, lambda x: torch.ones_like(x) / 2**0.5), "Robin"),
    lambda g: (InitialVelocity(g), "initial velocity"),
], ids=["dirichlet", "neumann", "robin", "initial velocity"])
def test_data_without_the_column_dimension_is_refused(make):
    # (N,) data against an (N, 1) field would broadcast to an (N, N) residual, and a finite, wrong loss.
    condition, name = make(lambda x: torch.sin(x[:, 0]))
    x = torch.rand(7, 2, dtype=F64)
    with pytest.raises(ValueError, match=rf"the {name} data must be .*\(N, 1\); for points of shape \(7, 2\) "
                                         r"it returned \(7,\), not \(7, 1\)"):
        condition.residual(lambda p: col(p, 0) * col(p, 1), x, AUTOGRAD)


def test_dirichlet_data_of_one_column_applies_to_every_component():
    x = torch.rand(5, 2, dtype=F64)
    r = Dirichlet(lambda p: col(p, 0)).residual(lambda p: torch.cat([p, p], dim=1), x)
    assert r.shape == (5, 4) and torch.equal(r[:, 1:2], col(x, 1) - col(x, 0))
    with pytest.raises(ValueError, match=r"\(N, 4\); for points of shape \(5, 2\) it returned \(5, 2\)"):
        Dirichlet(lambda p: p).residual(lambda p: torch.cat([p, p], dim=1), x)
    # constants broadcast as they should: a number, a 0-d tensor, one row for every point
    for constant in (0.5, np.float32(0.5), torch.tensor(0.5, dtype=F64), torch.full((1, 4), 0.5, dtype=F64)):
        r = Dirichlet(lambda p: constant).residual(lambda p: torch.cat([p, p], dim=1), x)
        assert torch.equal(r, torch.cat([x, x], dim=1) - 0.5)


def test_periodic_along_time_axis():
    # axis=1 (here: a periodic time), period 2 on [0, 2]: cos(pi t) x is periodic, t x is not.
    pts = torch.tensor([[0.3, 0.0], [0.7, 2.0], [0.1, 1.0]], dtype=F64)  # the last is on neither face
    r = Periodic(axis=1, lo=0, hi=2).residual(lambda p: torch.cos(math.pi * col(p, 1)) * col(p, 0), pts, AUTOGRAD)
    assert r.shape == (2, 2) and r.abs().max() < 1e-15
    r = Periodic(axis=1, lo=0, hi=2).residual(lambda p: col(p, 1) * col(p, 0), pts, AUTOGRAD)
    assert torch.allclose(col(r, 0), torch.tensor([[-0.6], [1.4]], dtype=F64), atol=1e-15)


# --------------------------------------------------------------------------- 5. InitialVelocity


def test_initial_velocity():
    st = SpaceTime(Interval(0, 1), 0.0, 1.0)
    x0 = st.sample("initial", 100, make_draw(10))
    assert (x0[:, 1] == 0).all()

    def model(p):  # u_t = 3 sin x
        return torch.sin(col(p, 0)) * (1 + 3 * col(p, 1))

    r = InitialVelocity(lambda p: 3 * torch.sin(col(p, 0))).residual(model, x0, AUTOGRAD)
    assert r.shape == (100, 1) and r.abs().max() < 1e-15
    r0 = InitialVelocity(const(0.0)).residual(model, x0, AUTOGRAD)
    assert torch.allclose(r0, 3 * torch.sin(col(x0, 0)), atol=1e-15)
    assert r0.abs().max() > 1.0

    def two(p):  # component 1 has u_t = 2 x t, zero at t = 0
        return torch.cat([model(p), col(p, 0) * col(p, 1) ** 2], dim=1)

    assert InitialVelocity(const(0.0), component=1).residual(two, x0, AUTOGRAD).abs().max() < 1e-15


# --------------------------------------------------------------------------- 6. PointData


def _observations():
    g = torch.Generator().manual_seed(11)
    points = torch.rand(7, 2, generator=g, dtype=F64)
    values = torch.rand(7, 1, generator=g, dtype=F64)
    return points, values


def test_point_data_residual():
    points, values = _observations()
    data = PointData(points, values)
    r = data.residual(xy)
    assert torch.equal(r, xy(points) - values)
    assert r.abs().max() > 0.01
    assert data.loss(xy).item() == pytest.approx((xy(points) - values).square().mean().item(), rel=1e-15)
    exact = PointData(points, xy(points))
    assert torch.equal(exact.residual(xy), torch.zeros(7, 1, dtype=F64))
    two = PointData(points, values, components=[1])
    assert torch.equal(two.residual(lambda p: torch.cat([p, xy(p)], dim=1)), col(points, 1) - values)


def test_point_data_is_a_module_with_buffers():
    points, values = _observations()
    data = PointData(points, values)
    assert isinstance(data, nn.Module)
    assert dict(data.named_buffers()).keys() == {"points", "values"}
    assert set(data.state_dict()) == {"points", "values"}
    assert torch.equal(data.state_dict()["points"], points)
    points[0, 0] = 42.0  # the buffers are copies
    assert data.points[0, 0] != 42.0
    data.to(torch.float32)
    assert data.points.dtype == torch.float32 and data.values.dtype == torch.float32
    r = data.residual(xy)
    assert r.dtype == torch.float32
    # Loaded into a fresh condition, the buffers come back.
    other = PointData(torch.zeros(7, 2, dtype=torch.float32), torch.zeros(7, 1, dtype=torch.float32))
    other.load_state_dict(data.state_dict())
    assert torch.equal(other.residual(xy), r)


@pytest.mark.parametrize("points,values", [
    (torch.zeros(5, 2), torch.zeros(4, 1)),
    (torch.zeros(5), torch.zeros(5, 1)),
    (torch.zeros(5, 2), torch.zeros(5)),
    (torch.zeros(0, 2), torch.zeros(0, 1)),
], ids=["rows", "1d-points", "1d-values", "empty"])
def test_point_data_rejects_bad_shapes(points, values):
    with pytest.raises(ValueError, match="same P > 0"):
        PointData(points, values)


def test_outputs_a_condition_names_must_be_the_networks():
    points, values = _observations()
    two_outputs = lambda p: torch.cat([p[:, :1], p[:, 1:]], dim=1)  # noqa: E731
    x = torch.rand(5, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"PointData: it observes 2 outputs \(components=\[0, 1\]\), but its values "
                                         r"are \(7, 1\); give one column per output"):
        PointData(points, values, components=[0, 1]).residual(two_outputs)  # (P, 1) would broadcast over both
    for condition, says in [
        (Dirichlet(const(0.0), components=[2]), r"Dirichlet condition: output 2 is not one of the network's: give an "
                                                r"index from 0 to 1 \(it has 2 outputs\)"),
        (Dirichlet(const(0.0), components=[-1]), "output -1 is not one of the network's"),
        (Dirichlet(const(0.0), components=[]), "components is empty"),
        (Neumann(const(0.0), Disk().normal, component=-1), "Neumann condition: output -1 is not one of the network's"),
        (InitialVelocity(const(0.0), component=2), "InitialVelocity condition: output 2 is not one of the network's"),
        (Periodic(axis=2, lo=0.0, hi=1.0), "axis 2 is not a coordinate of the points; give one from 0 to 1"),
    ]:
        with pytest.raises(ValueError, match=says):
            condition.residual(two_outputs, x, AUTOGRAD)
    for condition in (Dirichlet(const(0.0)), InitialVelocity(const(0.0))):
        with pytest.raises(ValueError, match=r"the network must return \(N, m\) outputs; it returned shape \(5,\)"):
            condition.residual(lambda p: p[:, 0], x, AUTOGRAD)
    with pytest.raises(ValueError, match="Periodic condition: need finite lo < hi"):
        Periodic(axis=0, lo=0.0, hi=float("inf"))


# --------------------------------------------------------------------------- 7. empty point sets


@pytest.mark.parametrize("cond", [
    Dirichlet(const(0.0)),
    Neumann(const(0.0), Disk().normal),
    Robin(1.0, 1.0, const(0.0), Disk().normal),
    Periodic(axis=0, lo=-1, hi=1),
    InitialVelocity(const(0.0)),
], ids=lambda c: type(c).__name__)
def test_loss_on_an_empty_point_set(cond):
    with pytest.raises(ValueError, match=f"{type(cond).__name__} condition got an empty point set"):
        cond.loss(squared_radius, torch.zeros(0, 2, dtype=F64), AUTOGRAD)


# --------------------------------------------------------------------------- 8. engines agree


ENGINES = [ForwardEngine(second="laplacian"), ForwardEngine(second="diagonal"), ForwardEngine(second="hessian")]


def _mlp(out_dim=1, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLP(2, out_dim, width=8, depth=2).double()


def _engine_cases():
    disk = Disk([0.25, -0.25], 1.5)
    st = SpaceTime(Interval(-1, 1), 0.0, 1.0)
    draw = make_draw(12)
    on_circle = disk.sample("boundary", 64, draw)
    on_faces = st.sample("boundary", 64, draw)
    initial = st.sample("initial", 64, draw)
    g = lambda p: torch.sin(col(p, 0)) * col(p, 1)  # noqa: E731  arbitrary data, so residuals are not trivially zero
    return {
        "neumann": (Neumann(g, disk.normal), on_circle),
        "robin": (Robin(0.7, -1.3, g, disk.normal), on_circle),
        "periodic": (Periodic(axis=0, lo=-1, hi=1), on_faces),
        "periodic-time": (Periodic(axis=1, lo=0, hi=1), torch.cat([on_faces[:, :1], (on_faces[:, 1:] > 0.5).double()], 1)),
        "initial-velocity": (InitialVelocity(g), initial),
        "neumann-component": (Neumann(g, disk.normal, component=1), on_circle),
        "initial-velocity-component": (InitialVelocity(g, component=1), initial),
        "periodic-two-outputs": (Periodic(axis=0, lo=-1, hi=1), on_faces),
    }


@pytest.mark.parametrize("name", list(_engine_cases()))
@pytest.mark.parametrize("engine", ENGINES, ids=repr)
def test_engines_agree(name, engine):
    cond, x = _engine_cases()[name]
    model = _mlp(out_dim=2 if ("component" in name or "two" in name) else 1)
    reference = cond.residual(model, x, AUTOGRAD)
    assert reference.abs().max() > 1e-3  # a random network does not satisfy the condition
    r = cond.residual(model, x, engine)
    assert r.shape == reference.shape
    assert torch.allclose(r, reference, atol=1e-12, rtol=0), (r - reference).abs().max()


def test_engine_residuals_train_through():
    """The residuals keep their graph under both engines, and the parameter gradients agree."""
    cond, x = _engine_cases()["robin"]
    grads = []
    for engine in (AUTOGRAD, ForwardEngine(second="laplacian")):
        model = _mlp()
        cond.loss(model, x, engine).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().max() > 1e-6
    assert torch.allclose(grads[0], grads[1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mean_square_is_the_mean_of_squares_with_the_same_gradient(dtype):
    """The loss of every term: the same value as r.square().mean() and, for a loss that reaches it
    with weight 1 (the fixed default), the same gradient to the last bit, in one operation
    where autograd's takes four; weighted, to round-off; and differentiable again."""
    torch.manual_seed(0)
    r = torch.randn(2000, 3, dtype=dtype, requires_grad=True)
    plain = r.square().mean()
    (expected,) = torch.autograd.grad(plain, r)
    value = mean_square(r)
    (got,) = torch.autograd.grad(value, r)
    assert torch.equal(value, plain) and torch.equal(got, expected)
    (weighted,) = torch.autograd.grad(0.3 * mean_square(r), r)
    torch.testing.assert_close(weighted, torch.autograd.grad(0.3 * r.square().mean(), r)[0], rtol=2e-7, atol=0)
    (g,) = torch.autograd.grad(mean_square(r), r, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), r)  # d/dr of sum(2r/n): 2/n everywhere
    torch.testing.assert_close(gg, torch.full_like(r, 2 / r.numel()))
    per_row = torch.func.vmap(torch.func.grad(mean_square))(r)  # reverse-mode transforms take it too
    torch.testing.assert_close(per_row, torch.func.vmap(torch.func.grad(lambda v: v.square().mean()))(r), rtol=0,
                               atol=0)
    model = MLP(2, 1, width=4, depth=1).to(F64)
    x = torch.rand(5, 2, dtype=F64)
    _, u = ForwardEngine().evaluate(model, x)  # a carrier of derivatives: its values' mean square
    assert mean_square(u).grad_fn is not None and torch.equal(mean_square(u), u.value.square().mean())


def test_data_may_be_a_number_and_must_be_a_number_or_a_function():
    x = torch.rand(6, 2, dtype=F64)

    def model(p):
        return col(p, 0) * col(p, 1)

    normal = lambda p: torch.ones_like(p) / 2**0.5  # noqa: E731
    for number in (0.5, 2, np.float64(0.5)):
        for condition, function in [(Dirichlet(number), Dirichlet(const(number))),
                                    (Neumann(number, normal), Neumann(const(number), normal)),
                                    (Robin(1.0, 2.0, number, normal), Robin(1.0, 2.0, const(number), normal)),
                                    (InitialVelocity(number), InitialVelocity(const(number)))]:
            assert torch.equal(condition.residual(model, x, AUTOGRAD), function.residual(model, x, AUTOGRAD))
    for bad, got in [("0", "str"), (True, "bool"), (None, "NoneType"),
                     (torch.zeros(6, 1), "Tensor; values observed at fixed points are PointData")]:
        for make, what in [(Dirichlet, "the Dirichlet data"), (Initial, "the Initial data"),
                           (lambda v: Neumann(v, normal), "the Neumann data"),
                           (lambda v: Robin(1.0, 1.0, v, normal), "the Robin data"),
                           (InitialVelocity, "the initial velocity data")]:
            with pytest.raises(PDEError, match=rf"^{what} must be a number or a function of the points \(N, d\) -> "
                                               rf"\(N, k\), such as lambda x: .*; got {got}$"):
                make(bad)


def test_components_may_name_one_output_and_must_name_outputs():
    model = MLP(2, 3, width=8, depth=1).double()
    x = torch.rand(10, 2, dtype=torch.float64)
    assert torch.equal(Dirichlet(0.0, components=1).residual(model, x), Dirichlet(0.0, components=[1]).residual(model, x))
    assert torch.equal(PointData(x, torch.zeros(10, 1, dtype=torch.float64), components=2).residual(model),
                       PointData(x, torch.zeros(10, 1, dtype=torch.float64), components=[2]).residual(model))
    for bad in ("0", [0.5], True, [True]):
        with pytest.raises(PDEError, match=r"Dirichlet condition: components must be output indices, as \[0\]"):
            Dirichlet(0.0, components=bad)


def test_periodic_derivative_must_be_true_or_false():
    # "no" is a non-empty string: it would switch slope matching on
    with pytest.raises(PDEError, match="Periodic condition: derivative must be True or False; got 'no'"):
        Periodic(0, -1.0, 1.0, derivative="no")


@pytest.mark.parametrize("shape", [(21, 1), (20, 1, 1)])
def test_data_of_the_wrong_rows_is_told_the_rows_not_the_column(shape):
    x = torch.rand(20, 2, dtype=torch.float64)
    with pytest.raises(PDEError, match=r"give one row per point \(20\) and one column per output"):
        Dirichlet(lambda p: torch.zeros(shape, dtype=torch.float64)).residual(MLP(2, 1, width=4, depth=1).double(), x)
