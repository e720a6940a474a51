"""Tests for the finite-difference reference of the lid-driven cavity (pinn.reference.cavity)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from pinn.pdes.navier_stokes import GHIA_RE100
from pinn.reference import cavity


def ghia():
    """Ghia's Re = 100 table: (is it u on x = 0.5, coordinate, velocity) per row."""
    rows = [r for r in GHIA_RE100.read_text().splitlines() if r and not r.startswith("#")]
    line, coord, velocity = zip(*csv.reader(rows[1:]))
    return np.array([name == "u_vertical" for name in line]), np.array(coord, float), np.array(velocity, float)


def test_the_table_is_ghias_as_printed():
    # Tables I and II of the paper (Re = 100), written out again: a mistyped entry in the file
    # would move the "vs Ghia" errors by too little for the tests below to notice.
    vertical, coord, velocity = ghia()
    assert coord[vertical].tolist() == [1.0, 0.9766, 0.9688, 0.9609, 0.9531, 0.8516, 0.7344, 0.6172, 0.5, 0.4531,
                                        0.2813, 0.1719, 0.1016, 0.0703, 0.0625, 0.0547, 0.0]
    assert velocity[vertical].tolist() == [1.0, 0.84123, 0.78871, 0.73722, 0.68717, 0.23151, 0.00332, -0.13641,
                                           -0.20581, -0.2109, -0.15662, -0.1015, -0.06434, -0.04775, -0.04192,
                                           -0.03717, 0.0]
    assert coord[~vertical].tolist() == [1.0, 0.9688, 0.9609, 0.9531, 0.9453, 0.9063, 0.8594, 0.8047, 0.5, 0.2344,
                                         0.2266, 0.1563, 0.0938, 0.0781, 0.0703, 0.0625, 0.0]
    assert velocity[~vertical].tolist() == [0.0, -0.05906, -0.07391, -0.08864, -0.10313, -0.16914, -0.22445, -0.24533,
                                            0.05454, 0.17527, 0.17507, 0.16077, 0.12317, 0.1089, 0.10091, 0.09233, 0.0]


def test_walls_hold_and_the_centrelines_converge_at_second_order():
    vertical, coord, _ = ghia()
    psi = {n: cavity.solve(n) for n in (16, 32, 64)}
    for p in psi.values():
        walls = np.concatenate([p[0], p[-1], p[:, 0], p[:, -1]])
        assert np.abs(walls).max() < 1e-20  # psi = 0 on the walls, to Newton's round-off
    values = {n: np.concatenate(cavity.centreline_velocities(p, coord[vertical], coord[~vertical])) for n, p in psi.items()}
    order = np.log2(np.linalg.norm(values[16] - values[32]) / np.linalg.norm(values[32] - values[64]))
    assert 1.8 < order < 2.3


def test_creeping_flow_is_mirror_symmetric_and_inertia_breaks_the_symmetry():
    # Stokes flow (Re -> 0) is symmetric about x = 1/2, and the asymmetry grows like Re; at
    # Re = 100 the vortex has moved downstream.
    stokes, inertial = cavity.solve(32, reynolds=1e-9), cavity.solve(32)
    assert np.abs(stokes - stokes[:, ::-1]).max() < 1e-10 * np.abs(stokes).max()
    assert np.abs(inertial - inertial[:, ::-1]).max() > 1e-2 * np.abs(inertial).max()


def test_converged_values_are_cached_and_a_percent_from_ghia(monkeypatch):
    vertical, coord, published = ghia()
    u, v = cavity.reference(coord[vertical], coord[~vertical])
    converged = np.concatenate([u, v])
    assert converged[0] == 1.0 and converged[16] == 0.0  # the lid and the bottom wall
    # The two are close, but Ghia's table is 1.12e-2 away (its velocities a little weak).
    assert 1.0e-2 < np.linalg.norm(published - converged) / np.linalg.norm(converged) < 1.25e-2
    assert u[coord[vertical] == 0.4531] == pytest.approx(-0.21398, abs=2e-5)  # Ghia: -0.21090
    assert list(Path(os.environ["PINN_CACHE"]).glob("cavity-*.npz"))  # the session's cache (conftest)

    def fail(*args, **kwargs):
        raise AssertionError("reference() recomputed instead of loading the cache")

    monkeypatch.setattr(cavity, "solve", fail)
    assert np.array_equal(np.concatenate(cavity.reference(coord[vertical], coord[~vertical])), converged)


def test_higher_reynolds_numbers_converge_by_continuation():
    psi = cavity.solve(64, reynolds=1000.0)  # from rest, Newton's method alone does not converge here
    assert np.isfinite(psi).all() and -0.12 < psi.min() < -0.10  # Ghia, 129²: -0.1179


def test_bad_grids_and_non_convergence_are_refused():
    with pytest.raises(ValueError, match="even number of intervals"):
        cavity.solve(33)
    with pytest.raises(RuntimeError, match="did not converge in 1 steps"):
        cavity.solve(16, max_steps=1)
