r"""Reference solution of the Allen–Cahn benchmark by a Fourier spectral method with ETDRK4.

Equation (Raissi, Perdikaris & Karniadakis 2019; Wang et al., jaxpi):

.. math::

    u_t = \varepsilon\,u_{xx} + 5u - 5u^3, \quad x \in [-1, 1) \text{ periodic},\ t \in [0, 1],
    \qquad u(x, 0) = x^2 \cos(\pi x), \quad \varepsilon = 10^{-4}.

Method. Fourier pseudo-spectral in space on :math:`x_j = -1 + 2j/n` (wavenumbers
:math:`k = \pi m`), so the linear part :math:`\hat L = -\varepsilon k^2` is diagonal; the cubic
term is evaluated on the grid. Time stepping is ETDRK4 (Cox & Matthews 2002) with the
:math:`\varphi`-function coefficients evaluated by the contour integral of Kassam & Trefethen
(2005): a mean over :math:`M = 32` points on the upper half of a unit circle around each
:math:`h\hat L` (the real part doubles them to 64 on the full circle, as :math:`\hat L` is
real), which avoids the cancellation of the explicit formulas for small :math:`|h\hat L|`.
The step is shortened, if needed, so that every snapshot time is reached by a whole number of
steps.

The periodic extension of :math:`x^2\cos(\pi x)` is continuous at :math:`x = \pm 1` but its
slope jumps from :math:`-2` to :math:`2`. Starting from the grid samples would alias that corner
into the low modes, an :math:`O(n^{-2})` error that never decays (measured: :math:`10^{-4}` at
:math:`n = 2048`, :math:`t = 0.005`, still :math:`4\cdot10^{-10}` at :math:`t = 1`). The solver
therefore starts from the exact Fourier coefficients of the initial data (the :math:`L^2`
projection, in closed form); the returned snapshot at :math:`t = 0` is the initial data itself.

Expected order: fourth order in time; spectral in space once diffusion has smoothed the corner
(its width is :math:`\sqrt{\varepsilon t}`) and the fronts, of width about
:math:`\sqrt{2\varepsilon/5} \approx 0.0063`, are resolved. Asymptotically the spatial
convergence becomes algebraic of high order (about :math:`n^{-4.5}` observed): the corner's
modes beyond the grid are damped within :math:`t \sim 1/(\varepsilon k^2)`, but until then the
cubic term couples them into the resolved modes. At :math:`n \ge 2048` that residue is below
:math:`2\cdot10^{-11}`.

Measured (maximum over the grid and the 201 snapshots unless stated; float64; one core):

* Time: at :math:`n = 512` the error at :math:`t = 1` is :math:`5.6\cdot10^{-9}`,
  :math:`3.5\cdot10^{-10}`, :math:`2.3\cdot10^{-11}` for :math:`h = 0.005, 0.0025, 0.00125`
  (observed order 4.0). At :math:`n = 4096` the default :math:`h = 5\cdot10^{-4}` differs from
  :math:`h/2` by :math:`2\cdot10^{-12}` at :math:`t = 1` and :math:`6\cdot10^{-12}` overall.
* Space, against :math:`n = 8192`: :math:`n = 512` has :math:`1.4\cdot10^{-6}` at :math:`t = 1`
  (the fronts are under-resolved) and :math:`4.5\cdot10^{-4}` at :math:`t = 0.005` next to the
  corner (relative :math:`L^2` error over all snapshots :math:`2.8\cdot10^{-6}`);
  :math:`n = 1024`: :math:`6\cdot10^{-12}` at :math:`t = 1`, :math:`4\cdot10^{-5}` at
  :math:`t = 0.005`; :math:`n = 2048`: :math:`10^{-13}` and :math:`1.6\cdot10^{-7}`;
  :math:`n = 4096`: :math:`3\cdot10^{-12}` at every snapshot.
* :func:`reference` therefore solves on ``REFERENCE_GRID`` = 4096 points at the default step and
  returns the values at the requested grid points: about :math:`10^{-11}` accurate at every
  snapshot, in about 3.4 s (:func:`solve` at :math:`n = 512` takes 0.7 s).

Cache: :func:`reference` stores its arrays with :func:`pinn.reference.cache.cached` under
``$PINN_CACHE`` (default ``~/.cache/pinn``), keyed by the grid, the snapshots, :math:`h` and
:math:`\varepsilon`.
"""

from __future__ import annotations

import numpy as np

from pinn.reference.cache import cached

#: Benchmark diffusion coefficient.
EPS = 1e-4

#: Default time step: ten steps per snapshot for the benchmark's 201 snapshots on [0, 1].
DT = 5e-4

#: Points of the grid :func:`reference` solves on before sampling the requested grid.
REFERENCE_GRID = 4096

#: Points on the half circle of the contour integral for the ETDRK4 coefficients.
CONTOUR_POINTS = 32


def initial(x: np.ndarray) -> np.ndarray:
    r"""The initial data :math:`u(x, 0) = x^2 \cos(\pi x)`."""
    return x**2 * np.cos(np.pi * x)


def _initial_coefficients(n: int) -> np.ndarray:
    r"""``rfft`` coefficients of the truncated Fourier series of :math:`x^2\cos(\pi x)` on [-1, 1).

    With :math:`I_j = \int_{-1}^{1} x^2 \cos(\pi j x)\,dx = 4(-1)^j/(\pi j)^2` (and
    :math:`I_0 = 2/3`), the exact coefficients are :math:`c_m = (I_{m+1} + I_{m-1})/4`. On the grid
    :math:`x_j = -1 + 2j/n` the ``rfft`` of the series is :math:`n\,c_m(-1)^m`; the Nyquist mode
    appears twice (:math:`\pm n/2`) in the symmetric truncation.
    """
    m = np.arange(n // 2 + 1)

    def integral(j: np.ndarray) -> np.ndarray:
        j = j.astype(np.float64)
        out = np.full_like(j, 2.0 / 3.0)
        nonzero = j != 0
        out[nonzero] = 4.0 * np.cos(np.pi * j[nonzero]) / (np.pi * j[nonzero]) ** 2
        return out

    c = 0.25 * (integral(m + 1) + integral(m - 1))
    v = n * c * np.where(m % 2 == 0, 1.0, -1.0)
    if n % 2 == 0:
        v[-1] *= 2.0
    return v.astype(np.complex128)


def _etdrk4_coefficients(lin: np.ndarray, h: float) -> tuple[np.ndarray, ...]:
    r"""ETDRK4 coefficients for the diagonal linear operator ``lin`` and step ``h``.

    Each :math:`\varphi`-type function is averaged over points :math:`h\hat L + e^{i\theta}` on
    the upper half circle; the real part of the mean equals the full-circle mean for real
    :math:`\hat L`, and the contour keeps the formulas away from their removable singularity at 0.
    """
    theta = np.pi * (np.arange(1, CONTOUR_POINTS + 1) - 0.5) / CONTOUR_POINTS
    z = h * lin[:, None] + np.exp(1j * theta)[None, :]
    ez = np.exp(z)
    q = h * np.real(np.mean((np.exp(z / 2) - 1) / z, axis=1))
    f1 = h * np.real(np.mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3, axis=1))
    f2 = h * np.real(np.mean((2 + z + ez * (z - 2)) / z**3, axis=1))
    f3 = h * np.real(np.mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3, axis=1))
    return np.exp(h * lin), np.exp(h * lin / 2), q, f1, f2, f3


def solve(
    n: int = 512, dt: float = DT, t_end: float = 1.0, snapshots: int = 201, eps: float = EPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Solve the Allen–Cahn benchmark on ``n`` grid points.

    Args:
        n: grid points on :math:`[-1, 1)`.
        dt: largest time step; it is shortened so that the snapshot spacing is a whole number
            of steps.
        t_end: final time.
        snapshots: number of equally spaced output times in :math:`[0, t_{end}]` (at least 2).
        eps: diffusion coefficient :math:`\varepsilon`.

    Returns:
        ``(x, t, u)``: ``x`` of shape ``(n,)`` with :math:`x_j = -1 + 2j/n`, ``t`` of shape
        ``(snapshots,)`` and ``u`` of shape ``(snapshots, n)``; ``u[0]`` is the initial data.
    """
    if n < 4 or snapshots < 2 or t_end <= 0 or dt <= 0:
        raise ValueError("need n >= 4, snapshots >= 2, t_end > 0 and dt > 0")
    x = -1.0 + 2.0 * np.arange(n) / n
    t = np.linspace(0.0, t_end, snapshots)
    spacing = t_end / (snapshots - 1)
    steps = max(1, int(np.ceil(spacing / dt - 1e-9)))  # whole steps per snapshot, h <= dt
    h = spacing / steps

    k = np.pi * np.fft.rfftfreq(n, d=1.0 / n)  # wavenumbers of the period-2 domain
    e, e2, q, f1, f2, f3 = _etdrk4_coefficients(-eps * k**2, h)

    def nonlinear(v: np.ndarray) -> np.ndarray:
        u = np.fft.irfft(v, n)
        return np.fft.rfft(5.0 * u - 5.0 * u**3)

    u = np.empty((snapshots, n))
    u[0] = initial(x)
    v = _initial_coefficients(n)
    for s in range(1, snapshots):
        for _ in range(steps):
            nv = nonlinear(v)
            a = e2 * v + q * nv
            na = nonlinear(a)
            b = e2 * v + q * na
            nb = nonlinear(b)
            c = e2 * a + q * (2.0 * nb - nv)
            nc = nonlinear(c)
            v = e * v + f1 * nv + 2.0 * f2 * (na + nb) + f3 * nc
        u[s] = np.fft.irfft(v, n)
    return x, t, u


def reference(n: int = 512, snapshots: int = 201) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The accurate benchmark solution at ``n`` grid points and ``snapshots`` times on [0, 1].

    Solved with :func:`solve` at the default step on a grid of at least ``REFERENCE_GRID`` points
    (a multiple of ``n``, so the requested grid is a subset of it) and sampled at
    :math:`x_j = -1 + 2j/n`. Computed once and cached on disk with
    :func:`pinn.reference.cache.cached`.
    """
    fine = n * max(1, -(-REFERENCE_GRID // n))  # smallest multiple of n >= REFERENCE_GRID
    params = {"n": n, "solve_n": fine, "snapshots": snapshots, "dt": DT, "t_end": 1.0, "eps": EPS}

    def compute() -> dict[str, np.ndarray]:
        x, t, u = solve(n=fine, dt=DT, t_end=1.0, snapshots=snapshots, eps=EPS)
        stride = fine // n
        return {"x": x[::stride], "t": t, "u": u[:, ::stride]}

    arrays = cached("allen_cahn", params, compute)
    return arrays["x"], arrays["t"], arrays["u"]


#: Points evaluated together by :func:`interpolate`; bounds its (points, modes) work arrays.
_CHUNK = 2048


def interpolate(x: np.ndarray, t: np.ndarray, u: np.ndarray, points: np.ndarray) -> np.ndarray:
    r"""Evaluate snapshots ``u`` at arbitrary ``points``, for plots.

    Trigonometric interpolation in :math:`x` (the periodic grid ``x`` of :func:`solve`) at each
    snapshot, exact at grid points, then linear interpolation in :math:`t` between the two
    neighbouring snapshots.

    Measured on :func:`reference` (512 points, 201 snapshots) against a 4096-point solution,
    away from the grid points and between snapshots: maximum error :math:`10^{-3}` at early times
    next to the corner at :math:`x = \pm 1` (narrower than the grid spacing there),
    :math:`2.4\cdot10^{-5}` for :math:`t \ge 0.1`, relative :math:`L^2` error
    :math:`1.6\cdot10^{-5}`. Good for plots, not as an error reference; 100 000 points take
    about 0.5 s.

    Args:
        x: grid of shape ``(n,)``, equally spaced from -1 with period 2.
        t: snapshot times of shape ``(S,)``, increasing.
        u: snapshots of shape ``(S, n)``.
        points: ``(P, 2)`` array of :math:`(x, t)`, with :math:`t` in ``[t[0], t[-1]]``.

    Returns:
        Values of shape ``(P,)``.
    """
    points = np.asarray(points, dtype=np.float64)
    px, pt = points[:, 0], points[:, 1]
    if np.any(pt < t[0] - 1e-12) or np.any(pt > t[-1] + 1e-12):
        raise ValueError("points have times outside the snapshots")
    n = x.size
    # Real-form Fourier weights: modes 0 < m < n/2 appear twice (+-m), the Nyquist mode once,
    # so the interpolant is real and reproduces the grid values.
    coeff = np.fft.rfft(u, axis=1) / n
    coeff[:, 1:(n + 1) // 2] *= 2.0
    modes = coeff.shape[1]
    # e^{i pi m s} for m = B a + b is the product of e^{i pi B a s} and e^{i pi b s}: two small
    # tables of exponentials and one product per entry instead of one exponential per entry.
    block = int(np.ceil(np.sqrt(modes)))
    low, high = np.arange(block), block * np.arange(-(-modes // block))

    # Left snapshot and weight of the right one; the last interval includes t[-1].
    left = np.clip(np.searchsorted(t, pt, side="right") - 1, 0, t.size - 2)
    w = np.clip((pt - t[left]) / (t[left + 1] - t[left]), 0.0, 1.0)

    out = np.empty(px.size)
    for start in range(0, px.size, _CHUNK):
        sl = slice(start, start + _CHUNK)
        angle = np.pi * (px[sl] - x[0])  # phases e^{i pi m (x - x_0)}, m = 0 .. modes - 1
        phase = np.exp(1j * np.outer(angle, high))[:, :, None] * np.exp(1j * np.outer(angle, low))[:, None, :]
        phase = phase.reshape(angle.size, -1)[:, :modes]
        at_left = np.einsum("pm,pm->p", coeff[left[sl]], phase).real
        at_right = np.einsum("pm,pm->p", coeff[left[sl] + 1], phase).real
        out[sl] = (1.0 - w[sl]) * at_left + w[sl] * at_right
    return out
