"""Property-based tests: on random polynomials at dyadic points the operators are exact.

A polynomial with small integer coefficients and exponents, evaluated at multiples of 1/4,
involves only numbers that float64 represents exactly, so its derivatives computed by
autograd must equal the closed-form ones bit for bit.
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pinn.operators import grad, hessian, laplacian, partial

Poly = dict  # {exponents (tuple of d ints): integer coefficient}


def derivative(poly: Poly, i: int) -> Poly:
    out: Poly = {}
    for exps, coef in poly.items():
        if exps[i] > 0:
            lowered = exps[:i] + (exps[i] - 1,) + exps[i + 1 :]
            out[lowered] = out.get(lowered, 0) + coef * exps[i]
    return out


def evaluate(poly: Poly, x: torch.Tensor) -> torch.Tensor:
    """(N, 1); monomials built by repeated multiplication, so autograd sees only products."""
    total = torch.zeros(x.shape[0], 1, dtype=x.dtype)
    for exps, coef in poly.items():
        term = torch.full((x.shape[0], 1), float(coef), dtype=x.dtype)
        for i, e in enumerate(exps):
            for _ in range(e):
                term = term * x[:, i : i + 1]
        total = total + term
    return total


@st.composite
def problems(draw):
    d = draw(st.integers(1, 3))
    exps = st.tuples(*[st.integers(0, 3)] * d)
    # At least one monomial must involve x: a constant is "not computed from x", an error.
    poly = draw(st.dictionaries(exps, st.integers(-5, 5), min_size=1, max_size=5).filter(lambda p: any(map(any, p))))
    quarters = st.integers(-8, 8).map(lambda k: k / 4)
    rows = draw(st.lists(st.tuples(*[quarters] * d), min_size=1, max_size=8))
    x = torch.tensor(rows, dtype=torch.float64).reshape(-1, d).requires_grad_(True)
    return poly, x


@settings(max_examples=60, deadline=None)
@given(problems())
def test_gradient_laplacian_hessian_exact(problem):
    poly, x = problem
    d = x.shape[1]
    u = evaluate(poly, x)
    xd = x.detach()
    expected_grad = torch.cat([evaluate(derivative(poly, i), xd) for i in range(d)], dim=1)
    assert torch.equal(grad(u, x), expected_grad)
    expected_lap = sum(evaluate(derivative(derivative(poly, i), i), xd) for i in range(d))
    assert torch.equal(laplacian(u, x), expected_lap)
    assert torch.equal(laplacian(u, x, strategy="batched"), expected_lap)
    expected_hess = torch.stack(
        [torch.cat([evaluate(derivative(derivative(poly, i), j), xd) for j in range(d)], dim=1) for i in range(d)], dim=1
    )
    assert torch.equal(hessian(u, x), expected_hess)


@settings(max_examples=60, deadline=None)
@given(problems(), st.lists(st.integers(0, 2), min_size=1, max_size=3))
def test_mixed_partials_exact(problem, indices):
    poly, x = problem
    indices = [i % x.shape[1] for i in indices]
    expected = poly
    for i in indices:
        expected = derivative(expected, i)
    assert torch.equal(partial(evaluate(poly, x), x, *indices), evaluate(expected, x.detach()))
