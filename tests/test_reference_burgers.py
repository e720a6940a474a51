"""The Cole–Hopf reference solution of the Burgers benchmark: data, quadrature, residual, symmetry."""

import numpy as np
import pytest

from pinn.reference.burgers import NODES, solution

NU = 0.01 / np.pi


def test_initial_condition_is_exact_and_shapes_broadcast():
    x = np.linspace(-1, 1, 101)
    assert np.array_equal(solution(x, np.zeros_like(x)), -np.sin(np.pi * x))
    u = solution(x[:, None], np.array([0.0, 0.5, 1.0]))
    assert u.shape == (101, 3) and u.dtype == np.float64
    assert np.array_equal(u[:, 0], -np.sin(np.pi * x))
    assert np.ndim(solution(0.3, 0.2)) == 0


def test_negative_time_is_rejected():
    with pytest.raises(ValueError):
        solution(np.array([0.0]), np.array([-0.1]))


def test_boundary_values_vanish():
    t = np.linspace(0, 1, 101)
    for side in (-1.0, 1.0):
        assert np.abs(solution(np.full_like(t, side), t)).max() < 1e-12


def test_quadrature_converges_geometrically_including_the_front():
    # A uniform grid plus points inside the front at x = 0, where |u_x| reaches 152 at t = 0.51.
    x = np.concatenate([np.linspace(-1, 1, 201), np.linspace(-0.03, 0.03, 61)])
    for t in (0.25, 0.51, 1.0):
        reference = solution(x, np.full_like(x, t), nodes=1000)
        errors = [np.abs(solution(x, t, nodes=n) - reference).max() for n in (30, 45, 60, 80)]
        default = np.abs(solution(x, t) - reference).max()
        above_round_off = [e for e in errors if e > 1e-13]
        assert above_round_off, f"t={t}: the coarsest rule is already at round-off: {errors}"
        assert all(b < a / 10 for a, b in zip(above_round_off, above_round_off[1:])), (t, errors)
        assert default < 1e-12, (t, default)
    assert NODES >= 100  # 100 nodes reach 3e-15 at t = 1, the hardest time


def _residual(x, t, h):
    """u_t + u u_x - nu u_xx by centred differences of step h in x and in t."""
    u = solution(x, t)
    ut = (solution(x, t + h) - solution(x, t - h)) / (2 * h)
    ux = (solution(x + h, t) - solution(x - h, t)) / (2 * h)
    uxx = (solution(x + h, t) - 2 * u + solution(x - h, t)) / h**2
    return ut + u * ux - NU * uxx


def test_pde_residual_of_finite_differences_falls_at_second_order():
    # Smooth points, away from the front at x = 0 and from t = 0.
    x = np.array([0.5, -0.4, 0.7, -0.8, 0.3, 0.6])
    t = np.array([0.3, 0.6, 0.9, 0.2, 0.1, 0.95])
    residuals = [_residual(x, t, h) for h in (1e-2, 5e-3, 2.5e-3)]
    for coarse, fine in zip(residuals, residuals[1:]):
        order = np.log2(np.abs(coarse / fine))
        assert np.all(np.abs(order - 2) < 0.3), order
    assert np.abs(residuals[-1]).max() < 5e-4  # O(h^2) truncation only


def test_solution_at_t1_is_odd_with_its_front_at_the_origin():
    x = np.linspace(0, 1, 2001)
    right, left = solution(x, 1.0), solution(-x, 1.0)
    assert np.abs(right + left).max() < 1e-12
    assert right[0] == pytest.approx(0, abs=1e-12)
    both = np.concatenate([-x[::-1], x])
    u = np.concatenate([left[::-1], right])
    peak = np.argmax(np.abs(u))
    assert abs(both[peak]) < 0.05 and 0.6 < abs(u[peak]) < 0.8  # |u| = 0.713 at |x| = 0.027
    assert np.all(right[1:-1] < 0) and np.all(left[1:-1] > 0)  # u < 0 right of the front, > 0 left


def test_steepest_slope_matches_the_literature_value():
    # Basdevant et al. (1986): max |u_x| = 152.00516 at x = 0, t = 1.6037 / pi.
    t = 1.6037 / np.pi
    slopes = [(solution(h, t) - solution(-h, t)) / (2 * h) for h in (1e-4, 5e-5)]
    slope = slopes[1] + (slopes[1] - slopes[0]) / 3  # Richardson: removes the h^2 term
    assert slope == pytest.approx(-152.00516, abs=2e-4)


def test_quadrature_scales_with_the_viscosity():
    # 160 nodes serve the benchmark viscosity; at a thirtieth of it the default grows with
    # nu^(-1/2) and stays at round-off (160 nodes there: 2e-3 at t = 1).
    x = np.linspace(-1, 1, 401)
    t = np.ones_like(x)
    nu = 0.0003 / np.pi
    fine = solution(x, t, nu=nu, nodes=8000)
    assert np.abs(solution(x, t, nu=nu) - fine).max() < 1e-12
    assert np.abs(solution(x, t, nu=nu, nodes=NODES) - fine).max() > 1e-4
