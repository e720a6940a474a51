r"""Poisson's equation on the L-shaped domain by second-order finite differences.

The domain is DeepXDE's L-shape,

.. math::

    \Omega = [-1, 1]^2 \setminus (0, 1] \times (0, 1],

the polygon with vertices :math:`(0,0), (1,0), (1,-1), (-1,-1), (-1,1), (0,1)`, and the problem is

.. math::

    -\Delta u = f \ \text{in } \Omega, \qquad u = g \ \text{on } \partial\Omega,

with the benchmark :math:`f = 1`, :math:`g = 0`.

Scheme
------
The uniform grid of spacing :math:`h = 1/n` covers :math:`[-1, 1]^2` with :math:`2n + 1` nodes per
axis, so the re-entrant edges :math:`x = 0` and :math:`y = 0` are grid lines and the L-shape is
a union of grid cells. At every interior node the 5-point stencil

.. math::

    \frac{4 u_{i,j} - u_{i+1,j} - u_{i-1,j} - u_{i,j+1} - u_{i,j-1}}{h^2} = f(x_i, y_j)

is imposed; neighbours on the boundary take their value from :math:`g` and move to the right-hand
side. The resulting symmetric positive-definite sparse system (about :math:`3 (2n-1)^2 / 4`
unknowns) is solved directly with SuperLU (:func:`scipy.sparse.linalg.spsolve`).

Accuracy
--------
The truncation error is :math:`\tfrac{h^2}{12}(u_{xxxx} + u_{yyyy})`, so for a smooth solution the
discrete maximum principle gives a max-norm error of :math:`O(h^2)`; a manufactured smooth
solution confirms this (observed orders 2.00 from :math:`n = 16` to :math:`128`). The benchmark
solution is not smooth: near the re-entrant corner :math:`u \sim r^{2/3} \sin(2\theta/3)`
(:math:`\theta` measured from the edge :math:`y = 0, x > 0` into the domain), whose second
derivatives blow up like :math:`r^{-4/3}`, and this lowers the observed order. Measured by
self-convergence (the difference between the :math:`n` and :math:`2n` solutions at the common
nodes, for :math:`n = 16, \dots, 256`):

* in the max norm over all nodes the order is :math:`2/3` (0.66 to 0.67); the largest difference
  sits at the nodes next to the corner, where :math:`u` itself is of size :math:`h^{2/3}`;
* away from the corner (nodes with :math:`r \ge 1/4`) and in the root-mean-square over all nodes
  the order is :math:`4/3` (1.31 to 1.41), the pollution the corner spreads over the domain.

At :math:`n = 256` (the default of :func:`reference`) the self-convergence difference to
:math:`n = 512` is :math:`5 \times 10^{-4}` in the max norm (at the corner). The error itself,
estimated against the Richardson extrapolation of the :math:`n = 512` and :math:`n = 1024`
solutions with the order :math:`4/3` (and, in brackets, :math:`2/3`), is :math:`8.5 \times 10^{-4}`
(:math:`1.1 \times 10^{-3}`) in the max norm, :math:`4.5 \times 10^{-5}` (:math:`5.6 \times
10^{-5}`) for :math:`r \ge 1/4`, and a relative L2 error of :math:`2.0 \times 10^{-4}`
(:math:`2.5 \times 10^{-4}`) on the nodes where :class:`pinn.pdes.PoissonLShape` measures a
network's error, against a maximum of :math:`u` of about :math:`0.149` (measured 2026-11-28).
The solve takes about one second on two CPU cores.

Cache
-----
:func:`reference` computes the benchmark once per grid size and stores it with
:func:`pinn.reference.cache.cached` under ``$PINN_CACHE`` (default ``~/.cache/pinn``); later calls
load the saved arrays.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pinn.reference.cache import cached

#: A float, or a vectorised callable ``f(x, y) -> array`` evaluated at arrays of node coordinates.
Data = float | Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _evaluate(data: Data, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``data`` at the points ``(x, y)`` as a float64 array of ``x``'s shape."""
    value = data(x, y) if callable(data) else data
    return np.broadcast_to(np.asarray(value, dtype=np.float64), x.shape).copy()


def _masks(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(2n+1, 2n+1)`` masks ``(in_domain, boundary)`` of the nodes of the closed L-shape.

    Node ``(i, j)`` sits at ``(-1 + i/n, -1 + j/n)``; the removed quadrant is ``i > n, j > n``.
    """
    index = np.arange(2 * n + 1)
    i, j = index[:, None], index[None, :]
    in_domain = ~((i > n) & (j > n))
    on_edge = (
        (i == 0) | (i == 2 * n) | (j == 0) | (j == 2 * n)  # the outer square's sides
        | ((i == n) & (j >= n)) | ((j == n) & (i >= n))  # the two re-entrant edges
    )
    return in_domain, in_domain & on_edge


def solve(n: int, f: Data = 1.0, g: Data = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Solve :math:`-\Delta u = f` in the L-shape, :math:`u = g` on its boundary.

    5-point finite differences on the uniform grid of spacing :math:`h = 1/n` covering
    :math:`[-1, 1]^2` (``2n + 1`` nodes per axis).

    Args:
        n: grid cells per unit length (a positive integer).
        f: source term, a float or a vectorised callable ``f(x, y) -> array``.
        g: boundary data, a float or a vectorised callable ``g(x, y) -> array``.

    Returns:
        ``(xs, ys, U)``: node coordinates ``(2n+1,)`` each, and ``U`` ``(2n+1, 2n+1)`` with
        ``U[i, j]`` the approximation of ``u(xs[i], ys[j])`` at nodes of the closed L-shape
        (boundary nodes hold ``g`` exactly) and NaN at nodes outside it.
    """
    # scipy is imported here: importing it takes a tenth of a second that a run whose reference
    # is cached, or that never asks for one, need not pay.
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    n = _check_n(n)
    size = 2 * n + 1
    h = 1.0 / n
    # Integers over n rather than linspace, so that -1, 0 and 1 are hit exactly.
    xs = np.arange(-n, n + 1, dtype=np.float64) / n
    ys = xs.copy()
    in_domain, boundary = _masks(n)
    interior = in_domain & ~boundary

    U = np.full((size, size), np.nan)
    bi, bj = np.nonzero(boundary)
    U[bi, bj] = _evaluate(g, xs[bi], ys[bj])

    # Number the unknowns in the row-major order of np.nonzero; -1 marks every other node.
    ii, jj = np.nonzero(interior)
    m = ii.size
    number = np.full((size, size), -1, dtype=np.int64)
    number[ii, jj] = np.arange(m)

    # Scaled by h^2: 4 u_ij - (sum of neighbours) = h^2 f_ij.
    rhs = h * h * _evaluate(f, xs[ii], ys[jj])
    rows, cols, vals = [np.arange(m)], [np.arange(m)], [np.full(m, 4.0)]
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        # Interior nodes never touch the grid's edge or the removed quadrant, so every
        # neighbour is a node of the closed L-shape: an unknown or a boundary value.
        ni, nj = ii + di, jj + dj
        neighbour = number[ni, nj]
        unknown = neighbour >= 0
        rows.append(np.flatnonzero(unknown))
        cols.append(neighbour[unknown])
        vals.append(np.full(int(unknown.sum()), -1.0))
        known = ~unknown
        rhs[known] += U[ni[known], nj[known]]  # each row appears at most once per direction
    A = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, m)
    )
    # The matrix is symmetric, so a fill-reducing ordering of A^T + A suits it better than
    # SuperLU's default COLAMD (about twice as fast at n = 256).
    U[ii, jj] = spsolve(A, rhs, permc_spec="MMD_AT_PLUS_A")
    return xs, ys, U


def reference(n: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The benchmark ``solve(n)`` for ``f = 1``, ``g = 0``, cached on disk.

    Computed once per ``n`` and stored with :func:`pinn.reference.cache.cached` under the name
    ``"lshape"``; later calls (in any process) load it from ``$PINN_CACHE``.

    Returns:
        ``(xs, ys, U)`` as for :func:`solve`.
    """
    n = _check_n(n)

    def compute() -> dict[str, np.ndarray]:
        xs, ys, U = solve(n)
        return {"xs": xs, "ys": ys, "U": U}

    arrays = cached("lshape", {"n": n}, compute)
    return arrays["xs"], arrays["ys"], arrays["U"]


def interpolate(xs: np.ndarray, ys: np.ndarray, U: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a grid solution from :func:`solve` at points of the L-shape.

    The L-shape is a union of grid cells, so every point of the closed domain lies in a cell
    whose four corners are nodes of the domain; a point on a re-entrant edge is interpolated
    from the cell on the domain's side of it.

    Args:
        xs, ys: node coordinates ``(2n+1,)`` as returned by :func:`solve`.
        U: nodal values ``(2n+1, 2n+1)`` as returned by :func:`solve`.
        points: ``(P, 2)`` coordinates ``(x, y)``.

    Returns:
        ``(P,)`` interpolated values; NaN at points outside the closed L-shape.
    """
    xs, ys, U = np.asarray(xs, np.float64), np.asarray(ys, np.float64), np.asarray(U, np.float64)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = (xs.size - 1) // 2
    if xs.size != 2 * n + 1 or n < 1 or ys.shape != xs.shape or U.shape != (xs.size, ys.size):
        raise ValueError("expected the (xs, ys, U) of solve(n): 2n+1 nodes per axis, U (2n+1, 2n+1)")
    if not (np.allclose(xs, np.arange(-n, n + 1) / n) and np.allclose(ys, xs)):
        raise ValueError("xs and ys must be the uniform grid on [-1, 1] that solve() returns")

    # Positions in units of h from the corner (-1, -1). Rounding leaves a node a few ulps off
    # an integer; snapping it makes nodes reproduce U exactly and keeps boundary points inside.
    s = (points + 1.0) * n
    nearest = np.rint(s)
    close = np.abs(s - nearest) <= 64 * np.finfo(np.float64).eps * n  # s is at most 2n
    s = np.where(close, nearest, s)
    sx, sy = s[:, 0], s[:, 1]

    inside = (sx >= 0) & (sx <= 2 * n) & (sy >= 0) & (sy <= 2 * n) & ~((sx > n) & (sy > n))
    i = np.clip(np.floor(sx), 0, 2 * n - 1).astype(np.int64)
    j = np.clip(np.floor(sy), 0, 2 * n - 1).astype(np.int64)
    # A point of the domain whose cell is in the removed quadrant lies on x = 0 or y = 0 (s = n
    # exactly); use the cell to the left of (or below) that edge, whose corners are all defined.
    removed = inside & (i >= n) & (j >= n)
    left = removed & (sx == n)
    i[left] = n - 1
    j[removed & ~left] = n - 1
    tx, ty = sx - i, sy - j

    i0, j0 = np.where(inside, i, 0), np.where(inside, j, 0)  # keep outside points' indices valid
    value = (
        (1 - tx) * (1 - ty) * U[i0, j0]
        + tx * (1 - ty) * U[i0 + 1, j0]
        + (1 - tx) * ty * U[i0, j0 + 1]
        + tx * ty * U[i0 + 1, j0 + 1]
    )
    return np.where(inside, value, np.nan)
