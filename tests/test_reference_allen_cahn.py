"""The ETDRK4 Fourier reference for Allen–Cahn: orders, data, symmetry, cache, interpolation."""

import numpy as np
import pytest

from pinn.reference import allen_cahn
from pinn.reference.allen_cahn import initial, interpolate, reference, solve


def test_grid_times_and_initial_snapshot():
    x, t, u = solve(n=64, dt=1e-3, t_end=0.01, snapshots=3)
    assert np.array_equal(x, -1 + 2 * np.arange(64) / 64)
    assert np.allclose(t, [0, 0.005, 0.01], rtol=0, atol=1e-15) and t[-1] == 0.01
    assert u.shape == (3, 64) and u.dtype == np.float64
    assert np.array_equal(u[0], x**2 * np.cos(np.pi * x))


def test_projected_initial_data_are_the_exact_fourier_coefficients():
    # Sampling a fine grid aliases only the coefficients' far tail into the low modes.
    n = 4096
    x = -1 + 2 * np.arange(n) / n
    sampled = np.fft.rfft(initial(x))[:64] / n
    exact = allen_cahn._initial_coefficients(n)[:64] / n
    assert np.abs(sampled - exact).max() < 1e-7


def test_etdrk4_is_fourth_order_in_time():
    n, t_end = 128, 1.0

    def final(dt):
        return solve(n=n, dt=dt, t_end=t_end, snapshots=2)[2][-1]

    exact = final(0.02 / 32)
    errors = [np.abs(final(dt) - exact).max() for dt in (0.02, 0.01, 0.005)]
    assert errors[-1] > 1e-12  # still above round-off
    orders = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all(np.abs(orders - 4) < 0.5), (errors, orders)


def test_spatial_convergence_is_faster_than_algebraic():
    # At the benchmark eps the corner of the initial data at x = +-1 has width sqrt(eps t), so
    # grids coarser than 256 points do not resolve it at short times; doubling n from 256
    # gains far more than the factor 16 of a fourth-order method.
    t_end = 0.1
    x, t, fine = solve(n=4096, dt=1e-3, t_end=t_end, snapshots=2)
    errors = []
    for n in (256, 512, 1024):
        _, _, u = solve(n=n, dt=1e-3, t_end=t_end, snapshots=2)
        errors.append(np.abs(u[-1] - fine[-1, :: 4096 // n]).max())
    assert errors[0] > 1e-6
    assert errors[1] < errors[0] / 100 and errors[2] < errors[1] / 100, errors
    assert errors[2] < 1e-9


def test_step_is_shortened_to_hit_snapshots():
    # dt = 0.003 does not divide the spacing 0.005; two steps of 0.0025 are taken instead.
    _, _, a = solve(n=64, dt=0.003, t_end=0.02, snapshots=5)
    _, _, b = solve(n=64, dt=0.0025, t_end=0.02, snapshots=5)
    assert np.array_equal(a, b)


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError):
        solve(n=64, snapshots=1)
    with pytest.raises(ValueError):
        solve(n=64, dt=0.0)


def test_reference_is_bounded_symmetric_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PINN_CACHE", str(tmp_path))
    x, t, u = reference()
    assert x.shape == (512,) and t.shape == (201,) and u.shape == (201, 512)
    assert np.array_equal(x, -1 + 2 * np.arange(512) / 512)
    assert np.array_equal(u[0], initial(x))
    assert np.abs(u).max() <= 1.01
    mirror = (-np.arange(512)) % 512  # index of -x_j on the periodic grid
    assert np.abs(u - u[:, mirror]).max() < 1e-12  # the initial data are even
    # The benchmark's final state: plateaus near -1 at the ends, fronts, and a maximum near 0.99.
    assert u[-1, 0] == pytest.approx(-1, abs=1e-5) and 0.98 < u[-1].max() < 1.0
    # A value that pins the equation's coefficients: with eps = 2e-4 instead of 1e-4 the
    # solution moves by 6e-3; the solver's own error is about 1e-11.
    assert u[-1, 256] == pytest.approx(0.0295797, abs=1e-6)  # u(0, 1)
    # The requested grid is a subset of the solver's; the same values as a direct coarse solve
    # to the coarse solve's accuracy.
    _, _, coarse = solve(n=512, snapshots=201)
    assert np.abs(coarse - u).max() < 1e-3 and np.abs(coarse[-1] - u[-1]).max() < 1e-5

    assert len(list(tmp_path.glob("allen_cahn-*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("reference() recomputed instead of loading the cache")

    monkeypatch.setattr(allen_cahn, "solve", fail)
    x2, t2, u2 = reference()
    assert np.array_equal(x2, x) and np.array_equal(t2, t) and np.array_equal(u2, u)


def test_interpolate_reproduces_nodes_and_trigonometric_polynomials():
    x, t, u = solve(n=128, dt=1e-3, t_end=0.05, snapshots=11)
    grid_x, grid_t = np.meshgrid(x, t)
    nodes = np.stack([grid_x.ravel(), grid_t.ravel()], axis=1)
    assert np.abs(interpolate(x, t, u, nodes) - u.ravel()).max() < 1e-13

    # Halfway between snapshots: the mean of the two at the nodes.
    mid = np.stack([x, np.full_like(x, 0.5 * (t[3] + t[4]))], axis=1)
    assert np.abs(interpolate(x, t, u, mid) - 0.5 * (u[3] + u[4])).max() < 1e-13

    # Any trigonometric polynomial of degree below n/2 is reproduced between nodes too,
    # exactly in x and linearly in t.
    def poly(x_, t_):
        return (1 + t_) * (0.3 + np.cos(np.pi * x_) - 0.5 * np.sin(7 * np.pi * x_))

    rng = np.random.default_rng(0)
    points = np.stack([rng.uniform(-1, 1, 500), rng.uniform(0, t[-1], 500)], axis=1)
    values = poly(x[None, :], t[:, None])
    assert np.abs(interpolate(x, t, values, points) - poly(points[:, 0], points[:, 1])).max() < 1e-12

    with pytest.raises(ValueError):
        interpolate(x, t, u, np.array([[0.0, 0.06]]))
