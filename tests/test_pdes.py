"""Each exact solution makes every residual vanish in float64."""

import math

import pytest
import torch

from pinn.derivatives import AutogradEngine
from pinn.errors import ConfigError
from pinn.pdes import Poisson


@pytest.mark.parametrize("solution", ["product", "sum"])
@pytest.mark.parametrize("dim,k", [(1, 1.0), (2, 1.0), (2, 2.0), (3, 1.0), (5, 0.5), (50, 1.0)])
def test_poisson_exact_solution_has_zero_residual(dim, k, solution):
    pde = Poisson(dim=dim, k=k, solution=solution)
    gen = torch.Generator().manual_seed(0)
    x = pde.domain.interior(torch.rand(300, dim, generator=gen, dtype=torch.float64))
    points = {"interior": x, "boundary": pde.domain.boundary(torch.rand(100, dim, generator=gen, dtype=torch.float64))}
    losses = pde.losses(pde.exact, points, AutogradEngine())
    scale = dim * (k * math.pi) ** 2  # size of the source term
    assert losses["pde"].item() <= (1e-13 * scale) ** 2
    assert losses["boundary"].item() == 0
    xg = x.clone().requires_grad_(True)
    residual = pde.residual(pde.exact(xg), xg)
    assert residual.shape == (300, 1)
    assert residual.abs().max().item() <= 1e-13 * scale


def test_poisson_residual_detects_a_wrong_solution():
    pde = Poisson(dim=2)
    x = pde.domain.interior(torch.rand(50, 2, dtype=torch.float64)).requires_grad_(True)
    wrong = 1.01 * pde.exact(x)
    assert pde.residual(wrong, x).abs().max().item() > 1e-3


def test_poisson_boundary_data_vanish_for_integer_k():
    pde = Poisson(dim=3, k=2)
    xb = pde.domain.boundary(torch.rand(200, 3, dtype=torch.float64))
    assert pde.exact(xb).abs().max().item() < 1e-14


@pytest.mark.parametrize("kwargs,match", [
    ({"dim": 0}, "pde.dim"),
    ({"dim": -2}, "pde.dim"),
    ({"k": 0}, "pde.k"),
    ({"lo": 1.0, "hi": -1.0}, "lo < hi"),
    ({"solution": "gauss"}, "product, sum"),
])
def test_poisson_rejects_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Poisson(**kwargs)


def test_sum_solution_stays_of_order_one_in_high_dimensions():
    for dim in (10, 1000):
        pde = Poisson(dim=dim, solution="sum")
        x = pde.domain.interior(torch.rand(4000, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
        rms = pde.exact(x).square().mean().sqrt().item()
        assert abs(rms - 2**-0.5) < 0.05
