"""Each built-in equation (of the forward problems) is the one its source publishes. The equations are written here again,
from the published formulas and with derivatives from ``torch.func``, independently of
``pinn.operators``, the engines and each class's own source term: on a random network every
class's residual must agree with them under both exact engines, and each closed-form solution,
also written here again, must make them vanish."""

import math

import pytest
import torch
from torch.func import hessian, jacrev, vmap

from pinn.derivatives import AutogradEngine, ForwardEngine
from pinn.models import MLP
from pinn.pdes import AllenCahn, Burgers, Cavity, Heat, Helmholtz, Kovasznay, Poisson, PoissonBall, PoissonLShape, Wave
from pinn.sampling import SobolSampler


def derivatives(f, x):
    """``f``'s values ``(N, m)``, Jacobians ``(N, m, d)`` and Hessians ``(N, m, d, d)`` at ``x``,
    for ``f`` mapping points ``(N, d)`` to outputs ``(N, m)`` row by row."""
    def one(point):
        return f(point[None])[0]

    return f(x), vmap(jacrev(one))(x), vmap(hessian(one))(x)


def trace(H):
    """The Laplacian of every output, ``(N, m)``."""
    return H.diagonal(dim1=-2, dim2=-1).sum(-1)


# --------------------------------------------------------------------------- the equations, as published
# Each maps (pde, x, U, J, H) to the residual (N, k), in the library's sign convention, the
# columns in the order of the PDE's interior terms. Points are (x_1, ..., x_d) or (x, t).

def poisson_product(pde, x, U, J, H):  # -Δu = d (kπ)² Π sin(kπ x_i)
    d, k = x.shape[1], pde.k
    return -trace(H) - d * (k * math.pi) ** 2 * torch.sin(k * math.pi * x).prod(1, keepdim=True)


def poisson_sum(pde, x, U, J, H):  # -Δu = (kπ)² Σ sin(kπ x_i) / √d
    d, k = x.shape[1], pde.k
    return -trace(H) - (k * math.pi) ** 2 * torch.sin(k * math.pi * x).sum(1, keepdim=True) / math.sqrt(d)


def hu_solution(pde, x):
    """Hu et al. (2023): u = (1 - |x|²) Σ c_i sin(x_i + cos x_{i+1} + x_{i+1} cos x_i)."""
    a, b = x[:, :-1], x[:, 1:]
    g = (pde.coefficients.to(x) * torch.sin(a + torch.cos(b) + b * torch.cos(a))).sum(1, keepdim=True)
    return (1 - x.square().sum(1, keepdim=True)) * g


def poisson_ball(pde, x, U, J, H):  # -Δu = f, f = -Δ of the solution above
    _, _, H_star = derivatives(lambda y: hu_solution(pde, y), x)
    return -trace(H) + trace(H_star)


def lshape(pde, x, U, J, H):  # -Δu = 1
    return -trace(H) - 1.0


def helmholtz(pde, x, U, J, H):  # Δu + k²u = q (Wang, Teng & Perdikaris 2021)
    k, a1, a2 = pde.k, pde.a1, pde.a2
    s = torch.sin(a1 * math.pi * x[:, :1]) * torch.sin(a2 * math.pi * x[:, 1:])
    q = -(a1 * math.pi) ** 2 * s - (a2 * math.pi) ** 2 * s + k**2 * s
    return trace(H) + k**2 * U - q


def heat(pde, x, U, J, H):  # u_t = α Δ_x u, time last
    d = x.shape[1] - 1
    return J[:, :, d] - pde.alpha * sum(H[:, :, i, i] for i in range(d))


def wave(pde, x, U, J, H):  # u_tt = c² u_xx
    return H[:, :, 1, 1] - pde.c**2 * H[:, :, 0, 0]


def burgers(pde, x, U, J, H):  # u_t + u u_x = (0.01/π) u_xx (Raissi et al. 2019)
    return J[:, :, 1] + U * J[:, :, 0] - 0.01 / math.pi * H[:, :, 0, 0]


def allen_cahn(pde, x, U, J, H):  # u_t - 1e-4 u_xx + 5u³ - 5u = 0 (Raissi et al. 2019)
    return J[:, :, 1] - 1e-4 * H[:, :, 0, 0] + 5 * U**3 - 5 * U


def navier_stokes(pde, x, U, J, H):
    """(u·∇)u + ∇p - Δu / Re = 0 and ∇·u = 0, outputs (u, v, p)."""
    u, v = U[:, 0:1], U[:, 1:2]
    (u_x, u_y), (v_x, v_y), (p_x, p_y) = ((J[:, i, 0:1], J[:, i, 1:2]) for i in range(3))
    lap = trace(H)
    return torch.cat([u * u_x + v * u_y + p_x - lap[:, 0:1] / pde.reynolds,
                      u * v_x + v * v_y + p_y - lap[:, 1:2] / pde.reynolds,
                      u_x + v_y], dim=1)


# --------------------------------------------------------------------------- the closed forms, as published

def heat_solution(pde, x):  # e^{-α d n²π² t} Π sin(nπ x_i)
    d, n = x.shape[1] - 1, pde.n
    return torch.exp(-pde.alpha * d * (n * math.pi) ** 2 * x[:, -1:]) * torch.sin(n * math.pi * x[:, :-1]).prod(1, keepdim=True)


def wave_solution(pde, x):  # sin(πx) cos(cπt) + ½ sin(4πx) cos(4cπt)
    s, t, c = x[:, :1], x[:, 1:], pde.c
    return torch.sin(math.pi * s) * torch.cos(c * math.pi * t) + 0.5 * torch.sin(4 * math.pi * s) * torch.cos(4 * c * math.pi * t)


def kovasznay_solution(pde, x):  # Kovasznay (1948)
    re = pde.reynolds
    lam = re / 2 - math.sqrt(re**2 / 4 + 4 * math.pi**2)
    e, y = torch.exp(lam * x[:, :1]), 2 * math.pi * x[:, 1:]
    return torch.cat([1 - e * torch.cos(y), lam / (2 * math.pi) * e * torch.sin(y), 0.5 * (1 - e**2)], dim=1)


CASES = {  # name: (problem, its equation, its closed form if any)
    "poisson_product": (lambda: Poisson(dim=3, k=2.0), poisson_product,
                        lambda pde, x: torch.sin(2 * math.pi * x).prod(1, keepdim=True)),
    "poisson_sum": (lambda: Poisson(dim=5, k=0.5, solution="sum"), poisson_sum,
                    lambda pde, x: torch.sin(0.5 * math.pi * x).sum(1, keepdim=True) / math.sqrt(5)),
    "poisson_ball": (lambda: PoissonBall(dim=4, coefficient_seed=2, hard_constraint=False), poisson_ball, hu_solution),
    "poisson_lshape": (lambda: PoissonLShape(), lshape, None),
    "helmholtz": (lambda: Helmholtz(), helmholtz,
                  lambda pde, x: torch.sin(math.pi * x[:, :1]) * torch.sin(4 * math.pi * x[:, 1:])),
    "helmholtz_k4": (lambda: Helmholtz(k=4.0, a1=2, a2=3), helmholtz,
                     lambda pde, x: torch.sin(2 * math.pi * x[:, :1]) * torch.sin(3 * math.pi * x[:, 1:])),
    "heat_1d": (lambda: Heat(), heat, heat_solution),
    "heat_2d": (lambda: Heat(dim=2, alpha=0.05, n=2), heat, heat_solution),
    "wave": (lambda: Wave(), wave, wave_solution),
    "burgers": (lambda: Burgers(), burgers, None),
    "allen_cahn": (lambda: AllenCahn(), allen_cahn, None),
    "kovasznay": (lambda: Kovasznay(), navier_stokes, kovasznay_solution),
    "kovasznay_re40": (lambda: Kovasznay(reynolds=40.0), navier_stokes, kovasznay_solution),
    "cavity": (lambda: Cavity(), navier_stokes, None),
}


def sample(pde, n=64):
    sampler = SobolSampler(n_interior=n, n_boundary=8, n_initial=8)
    return sampler.sample(pde.domain, torch.Generator().manual_seed(0), pde.point_sets)


@pytest.mark.parametrize("name", CASES)
def test_every_residual_is_the_published_equation_under_both_exact_engines(name, float64):
    make, equation, _ = CASES[name]
    pde = make()
    torch.manual_seed(0)
    model = MLP(pde.dim, pde.n_outputs, width=16, depth=2).double()
    points = sample(pde)
    x = points["interior"]
    published = equation(pde, x, *derivatives(model, x))
    forward = ForwardEngine()
    forward.check_pde(pde)
    for engine in (AutogradEngine(), forward):
        terms = pde.residuals(model, points, engine)
        ours = torch.cat([terms[t] for t in pde.interior_terms], dim=1)
        assert ours.shape == published.shape
        error = (ours - published).abs().max().item()
        assert error <= 1e-12 * (1 + published.abs().max().item()), (type(engine).__name__, error)


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case[2] is not None])
def test_every_closed_form_solution_is_the_published_one_and_solves_the_published_equation(name, float64):
    make, equation, solution = CASES[name]
    pde = make()
    x = sample(pde, 256)["interior"]
    assert (pde.exact(x) - solution(pde, x)).abs().max().item() <= 1e-14
    U, J, H = derivatives(lambda y: solution(pde, y), x)
    scale = 1 + trace(H).abs().max().item()  # the size of the terms that cancel
    assert equation(pde, x, U, J, H).abs().max().item() <= 1e-13 * scale
    # and a solution a little off does not (not a multiple of it: the linear equations take those)
    off = derivatives(lambda y: solution(pde, y) + 1e-2 * y[:, :1] ** 2, x)
    assert equation(pde, x, *off).abs().max().item() > 1e-5 * scale
