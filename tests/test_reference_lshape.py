"""Tests for the finite-difference reference solver on the L-shape (pinn.reference.lshape)."""

from __future__ import annotations

import numpy as np
import pytest

from pinn.reference import lshape


def exact(x, y):
    return np.sin(np.pi * x) * np.cos(np.pi * y / 2) + np.exp(x * y)


def source(x, y):
    """-Δ of ``exact``, by hand: (π² + π²/4) sin(πx) cos(πy/2) - (x² + y²) e^{xy}."""
    return 1.25 * np.pi**2 * np.sin(np.pi * x) * np.cos(np.pi * y / 2) - (x * x + y * y) * np.exp(x * y)


def closed_l(x, y):
    """The closed L-shape: [-1, 1]^2 without (0, 1] x (0, 1]."""
    return (np.abs(x) <= 1) & (np.abs(y) <= 1) & ~((x > 0) & (y > 0))


def on_boundary(x, y):
    outer = (np.abs(x) == 1) | (np.abs(y) == 1)
    reentrant = ((x == 0) & (y >= 0)) | ((y == 0) & (x >= 0))
    return closed_l(x, y) & (outer | reentrant)


def nodes(xs, ys):
    return np.meshgrid(xs, ys, indexing="ij")


@pytest.fixture(scope="module")
def benchmark():
    """The f = 1, g = 0 solutions for the self-convergence study, solved once."""
    return {n: lshape.solve(n) for n in (32, 64, 128, 256)}


def test_manufactured_smooth_solution_converges_at_second_order():
    errors = []
    for n in (16, 32, 64):
        xs, ys, U = lshape.solve(n, f=source, g=exact)
        X, Y = nodes(xs, ys)
        errors.append(np.nanmax(np.abs(U - exact(X, Y))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 2) < 0.2), (errors, orders)
    assert errors[-1] < 3e-4


def test_grid_boundary_values_and_nan_outside():
    n = 8
    g = lambda x, y: 1 + x + 2 * y**2  # noqa: E731
    xs, ys, U = lshape.solve(n, f=lambda x, y: x - y, g=g)
    assert xs.shape == ys.shape == (2 * n + 1,) and U.shape == (2 * n + 1, 2 * n + 1)
    assert xs.dtype == ys.dtype == U.dtype == np.float64
    assert xs[0] == -1 and xs[n] == 0 and xs[-1] == 1 and np.allclose(np.diff(xs), 1 / n)
    X, Y = nodes(xs, ys)
    inside, boundary = closed_l(X, Y), on_boundary(X, Y)
    assert np.array_equal(U[boundary], g(X, Y)[boundary])  # exactly, not to a tolerance
    assert np.all(np.isnan(U[~inside]))
    assert np.all(np.isfinite(U[inside]))
    # Every boundary point of the polygon is reached: 8n outer + 2n re-entrant edge nodes.
    assert boundary.sum() == 8 * n


def test_constant_data_is_accepted_as_floats():
    xs, ys, U = lshape.solve(4, f=0.0, g=2.5)
    X, Y = nodes(xs, ys)
    assert np.allclose(U[closed_l(X, Y)], 2.5, rtol=0, atol=1e-14)  # harmonic: u = g everywhere


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_grid_size_is_rejected(n):
    with pytest.raises(ValueError):
        lshape.solve(n)


def test_benchmark_self_convergence_reflects_the_corner(benchmark):
    """The corner singularity u ~ r^(2/3) sin(2θ/3) sets the orders measured here.

    Max norm over all nodes: about 2/3 (the difference peaks at the corner's neighbours);
    away from the corner (r >= 1/4) and in the RMS: about 4/3.
    """
    sizes = sorted(benchmark)
    worst, far, rms = [], [], []
    for coarse, fine in zip(sizes[:-1], sizes[1:]):
        xs, ys, U = benchmark[coarse]
        V = benchmark[fine][2][::2, ::2]  # the fine solution at the coarse nodes
        X, Y = nodes(xs, ys)
        D = np.abs(U - V)
        worst.append(np.nanmax(D))
        far.append(np.nanmax(D[np.hypot(X, Y) >= 0.25]))
        rms.append(np.sqrt(np.nanmean(D**2)))
    for measure in (worst, far, rms):
        assert np.all(np.diff(measure) < 0), measure
    order = lambda e: np.log2(np.array(e[:-1]) / np.array(e[1:]))  # noqa: E731
    assert np.all((order(worst) > 0.55) & (order(worst) < 0.8)), order(worst)  # measured 0.66
    assert np.all((order(far) > 1.2) & (order(far) < 1.5)), order(far)  # measured 1.33
    assert np.all((order(rms) > 1.2) & (order(rms) < 1.5)), order(rms)  # measured 1.33


def test_benchmark_is_positive_and_symmetric_about_the_diagonal(benchmark):
    xs, ys, U = benchmark[64]
    X, Y = nodes(xs, ys)
    interior = closed_l(X, Y) & ~on_boundary(X, Y)
    assert np.all(U[interior] > 0)
    assert np.all(U[on_boundary(X, Y)] == 0)
    # (x, y) -> (y, x) maps the L-shape to itself, so U equals its transpose; the other
    # diagonal, (x, y) -> (-y, -x), swaps the removed quadrant with (-1, 0)^2 and is no symmetry.
    assert np.array_equal(np.isnan(U), np.isnan(U.T))
    assert np.allclose(U, U.T, rtol=0, atol=1e-14, equal_nan=True)
    assert not np.allclose(U, U[::-1, ::-1].T, equal_nan=True)
    # The maximum lies on the symmetry line, in the lower-left square.
    k = np.nanargmax(U)
    assert X.flat[k] == Y.flat[k] < 0


def test_interpolate_reproduces_nodes_and_bilinear_functions():
    n = 8
    xs, ys, U = lshape.solve(n, f=source, g=exact)
    X, Y = nodes(xs, ys)
    inside = closed_l(X, Y)
    at_nodes = np.column_stack([X[inside], Y[inside]])
    assert np.array_equal(lshape.interpolate(xs, ys, U, at_nodes), U[inside])

    bilinear = lambda x, y: 0.3 - 1.2 * x + 0.7 * y + 2.1 * x * y  # noqa: E731
    B = np.where(inside, bilinear(X, Y), np.nan)
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, size=(4000, 2))
    points = points[closed_l(points[:, 0], points[:, 1])]
    # Points on the re-entrant edges and corners, where the cell must be picked on the domain side.
    t = np.linspace(0, 1, 17)
    edges = np.concatenate([
        np.column_stack([np.zeros_like(t), t]), np.column_stack([t, np.zeros_like(t)]),
        [[-1, -1], [1, -1], [-1, 1], [1, 0], [0, 1], [0, 0], [-1, 0.3], [0.3, -1]],
    ])
    for p in (points, edges):
        values = lshape.interpolate(xs, ys, B, p)
        assert np.all(np.isfinite(values))
        assert np.allclose(values, bilinear(p[:, 0], p[:, 1]), rtol=0, atol=1e-13)


def test_interpolate_gives_nan_outside():
    xs, ys, U = lshape.solve(4)
    outside = np.array([[0.5, 0.5], [1e-9, 1e-9], [1.0, 1.0], [1.5, 0.0], [0.0, -1.2], [-2, -2], [0.25, 1.0]])
    assert np.all(np.isnan(lshape.interpolate(xs, ys, U, outside)))
    mixed = lshape.interpolate(xs, ys, U, np.array([[0.5, 0.5], [-0.5, -0.5]]))
    assert np.isnan(mixed[0]) and mixed[1] == U[2, 2]


def test_reference_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("PINN_CACHE", str(tmp_path))
    first = lshape.reference(16)
    files = list(tmp_path.glob("lshape-*.npz"))
    assert len(files) == 1
    for got, want in zip(first, lshape.solve(16)):
        assert np.array_equal(got, want, equal_nan=True)

    def fail(*args, **kwargs):
        raise AssertionError("reference() recomputed instead of loading the cache")

    monkeypatch.setattr(lshape, "solve", fail)
    second = lshape.reference(16)
    for got, want in zip(second, first):
        assert np.array_equal(got, want, equal_nan=True)
    # A different grid size is a different cache entry.
    monkeypatch.undo()
    monkeypatch.setenv("PINN_CACHE", str(tmp_path))
    lshape.reference(8)
    assert len(list(tmp_path.glob("lshape-*.npz"))) == 2


def test_an_edited_solver_does_not_reuse_its_predecessors_cache(tmp_path, monkeypatch):
    import importlib.util

    from pinn.reference.cache import cached

    monkeypatch.setenv("PINN_CACHE", str(tmp_path / "cache"))

    def solver(version: int):  # a solver module, as edited over time
        path = tmp_path / f"solver{version}.py"
        path.write_text(f"import numpy as np\n\ndef compute():\n    return {{'u': np.full(3, {version}.0)}}\n")
        spec = importlib.util.spec_from_file_location(f"solver{version}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.compute

    assert cached("demo", {"n": 3}, solver(1))["u"].tolist() == [1.0, 1.0, 1.0]
    assert cached("demo", {"n": 3}, solver(1))["u"].tolist() == [1.0, 1.0, 1.0]
    assert cached("demo", {"n": 3}, solver(2))["u"].tolist() == [2.0, 2.0, 2.0]
    assert len(list((tmp_path / "cache").glob("demo-*.npz"))) == 2
