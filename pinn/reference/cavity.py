r"""Reference solution of the lid-driven cavity by finite differences, converged to about 1e-5.

Problem: steady incompressible flow in the unit square, the lid :math:`y = 1` moving with
:math:`u = 1` along its whole length (Ghia, Ghia & Shin 1982, whose lid speed jumps at the top
corners), no slip on the other walls.

Method. Stream function and vorticity (:math:`u = \psi_y`, :math:`v = -\psi_x`,
:math:`\omega = v_x - u_y`),

.. math::
    \Delta\psi + \omega = 0, \qquad \tfrac{1}{Re}\Delta\omega - (\psi_y\omega_x - \psi_x\omega_y) = 0,

with second-order central differences on a uniform :math:`(n+1)^2` grid, :math:`\psi = 0` on the
walls and Thom's wall vorticity :math:`\omega_w = -2\psi_1/h^2 - 2U/h` (:math:`\psi_1` the value
one step inside, :math:`U` the wall's tangential speed: 1 on the lid, 0 elsewhere). The coupled
nonlinear system is solved by Newton's method with a sparse direct solve of each step, from
rest (converges in 4 to 6 steps at Re = 100); above Re = 400, by continuation in Re (doubling
from 100, each solve starting from the last). Velocities on the centrelines are central
differences of :math:`\psi`, interpolated along the line by a cubic spline; Richardson
extrapolation of two grids, :math:`(4 f_{2n} - f_n)/3`, removes the :math:`h^2` term.

Measured at Re = 100 (Ghia's 34 centreline points, relative L2 over them as in
:class:`pinn.pdes.Cavity`; float64, one core):

* Observed order 2.03 from n = 64, 128, 256 and 2.01 from 128, 256, 512.
* The extrapolation from n = 128, 256 (what :func:`reference` returns, 17 s) differs from the
  one from n = 256, 512 by at most 1.9e-6 (n = 512 takes 119 s): the values are good to about
  1e-5. A single grid is not: n = 128 is 1.4e-3 away, n = 512 8.7e-5.
* The minimum of :math:`u` on :math:`x = 0.5` is -0.214042 at :math:`y = 0.4581`.
* Ghia's published table is 1.12e-2 away from these values: its velocities are smaller in
  magnitude, by up to 0.009 in :math:`v` (at :math:`x = 0.859`) and 0.005 in :math:`u`
  (at :math:`y = 0.852`); its minimum of :math:`u` is -0.21090 at :math:`y = 0.4531`.

Cache: :func:`reference` stores its values with :func:`pinn.reference.cache.cached`.
"""

from __future__ import annotations

import numpy as np

from pinn.reference.cache import cached

#: The grids whose Richardson extrapolation :func:`reference` returns.
GRIDS = (128, 256)


def _between_corners(index: np.ndarray, n: int) -> np.ndarray:
    return (index > 0) & (index < n)


def solve(n: int, reynolds: float = 100.0, *, tol: float = 1e-12, max_steps: int = 30) -> np.ndarray:
    """The stream function ``(n + 1, n + 1)``, indexed ``[j, i]`` at ``(x_i, y_j) = (i, j) / n``."""
    # scipy is imported here and below: importing it takes a quarter second that a run whose
    # reference is cached, or that never asks for one, need not pay.
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    if n < 4 or n % 2:
        raise ValueError(f"the grid needs an even number of intervals n >= 4 (the centrelines are grid lines); got {n}")
    h, m = 1.0 / n, n + 1
    eye = sp.identity(m, format="csr")
    d1 = sp.diags([-np.ones(m - 1), np.ones(m - 1)], [-1, 1], shape=(m, m)) / (2 * h)
    d2 = sp.diags([np.ones(m - 1), -2 * np.ones(m), np.ones(m - 1)], [-1, 0, 1], shape=(m, m)) / h**2
    dx, dy = sp.kron(eye, d1, format="csr"), sp.kron(d1, eye, format="csr")  # node k = i + m j
    lap = (sp.kron(eye, d2) + sp.kron(d2, eye)).tocsr()
    j, i = np.divmod(np.arange(m * m), m)
    inside = (i > 0) & (i < n) & (j > 0) & (j < n)
    # Thom's formula on each wall (not at the corners, whose vorticity no interior stencil reads):
    # ω_w + 2 ψ_1 / h² + 2 U / h = 0, with ψ_1 one node inside.
    wall = {"bottom": (j == 0) & _between_corners(i, n), "top": (j == n) & _between_corners(i, n),
            "left": (i == 0) & _between_corners(j, n), "right": (i == n) & _between_corners(j, n)}
    step_in = {"bottom": m, "top": -m, "left": 1, "right": -1}
    rows = np.concatenate([np.flatnonzero(wall[w]) for w in wall])
    cols = np.concatenate([np.flatnonzero(wall[w]) + step_in[w] for w in wall])
    thom = sp.csr_matrix((np.full(rows.size, 2 / h**2), (rows, cols)), shape=(m * m, m * m))
    lid = np.where(wall["top"], 2.0 / h, 0.0)

    interior, walls = sp.diags(inside.astype(float)), sp.diags((~inside).astype(float))
    psi, omega = np.zeros(m * m), np.zeros(m * m)
    # Newton's method from rest converges up to Re of a few hundred; beyond, continue in Re,
    # doubling it from 100 and starting each solve from the last.
    path = [reynolds] if reynolds <= 400 else [*100.0 * 2.0 ** np.arange(np.ceil(np.log2(reynolds / 100))), reynolds]
    for re in path:
        nu = 1.0 / re
        for _ in range(max_steps):
            psi_x, psi_y, omega_x, omega_y = dx @ psi, dy @ psi, dx @ omega, dy @ omega
            residual = np.concatenate([
                np.where(inside, lap @ psi + omega, psi),
                np.where(inside, nu * (lap @ omega) - (psi_y * omega_x - psi_x * omega_y), omega + thom @ psi + lid),
            ])
            jacobian = sp.bmat([
                [interior @ lap + walls, interior],
                [interior @ (sp.diags(omega_y) @ dx - sp.diags(omega_x) @ dy) + walls @ thom,
                 interior @ (nu * lap - sp.diags(psi_y) @ dx + sp.diags(psi_x) @ dy) + walls],
            ], format="csc")
            update = spsolve(jacobian, -residual)
            psi, omega = psi + update[: m * m], omega + update[m * m:]
            if np.abs(update).max() < tol * max(1.0, np.abs(omega).max()):
                break
        else:
            raise RuntimeError(f"Newton's method did not converge in {max_steps} steps (n = {n}, Re = {re})")
    return psi.reshape(m, m)


def centreline_velocities(psi: np.ndarray, u_at_y: np.ndarray, v_at_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``u(0.5, y)`` at ``u_at_y`` and ``v(x, 0.5)`` at ``v_at_x`` from a stream function of :func:`solve`."""
    n = psi.shape[0] - 1
    h, mid, s = 1.0 / n, n // 2, np.linspace(0.0, 1.0, n + 1)
    u = np.concatenate([[0.0], (psi[2:, mid] - psi[:-2, mid]) / (2 * h), [1.0]])  # ψ_y on x = 0.5
    v = np.concatenate([[0.0], -(psi[mid, 2:] - psi[mid, :-2]) / (2 * h), [0.0]])  # -ψ_x on y = 0.5
    from scipy.interpolate import CubicSpline
    return CubicSpline(s, u)(u_at_y), CubicSpline(s, v)(v_at_x)


def reference(u_at_y, v_at_x, reynolds: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Converged ``u(0.5, y)`` and ``v(x, 0.5)``: Richardson extrapolation of the grids ``GRIDS``
    (wall values exact), computed once and cached."""
    u_at_y, v_at_x = np.asarray(u_at_y, dtype=np.float64), np.asarray(v_at_x, dtype=np.float64)

    def compute():
        coarse, fine = (centreline_velocities(solve(n, reynolds), u_at_y, v_at_x) for n in GRIDS)
        u, v = ((4 * f - c) / 3 for f, c in zip(fine, coarse))
        u[u_at_y == 0.0], u[u_at_y == 1.0], v[(v_at_x == 0.0) | (v_at_x == 1.0)] = 0.0, 1.0, 0.0
        return {"u": u, "v": v}

    params = {"reynolds": reynolds, "grids": list(GRIDS), "u_at_y": u_at_y.tolist(), "v_at_x": v_at_x.tolist()}
    values = cached("cavity", params, compute)
    return values["u"], values["v"]
