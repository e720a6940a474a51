"""Reference solutions computed by the project with classical methods (no downloads).

* :mod:`pinn.reference.lshape`: Poisson's equation on the L-shaped domain by finite differences.
* :mod:`pinn.reference.burgers`: viscous Burgers by the Cole–Hopf transform and quadrature.
* :mod:`pinn.reference.allen_cahn`: Allen–Cahn by a Fourier spectral method with ETDRK4.
* :mod:`pinn.reference.cavity`: the lid-driven cavity by finite differences (stream function and
  vorticity, Newton's method), Richardson-extrapolated.

Each is computed on first use and cached on disk (:mod:`pinn.reference.cache`).
"""
