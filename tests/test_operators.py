"""The operators are exact: float64, closed-form fields, and torch.func as a second opinion.

"Exact" means error == 0 where every floating-point operation involved is exact (derivatives
of sin and cos, polynomials at dyadic points); elsewhere the error is round-off, <= 1e-12
relative.
"""

import numpy as np
import pytest
import torch

from pinn.operators import STRATEGIES, curl, div, grad, hessian, jacobian, laplacian, partial

RTOL = 1e-12


pytestmark = pytest.mark.usefixtures("float64")  # every tensor here is float64 unless a test says otherwise


def close(actual, expected, rtol=RTOL):
    """Round-off agreement: max |a - e| <= rtol * (1 + max |e|)."""
    err = (actual - expected).abs().max().item()
    return err <= rtol * (1.0 + expected.abs().max().item())


def points(n, d, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * (2 * torch.rand(n, d, generator=gen) - 1)).requires_grad_(True)


def dyadic_points(d):
    """Points k/4 on a grid: every product and sum of the test polynomials is exact in float64."""
    values = torch.arange(-8, 9, dtype=torch.float64) / 4
    grid = torch.cartesian_prod(*[values[::3]] * d) if d > 1 else values.reshape(-1, 1)
    return grid.clone().requires_grad_(True)


def mlp(in_dim, out_dim, width=16, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, width), torch.nn.Tanh(),
        torch.nn.Linear(width, width), torch.nn.Tanh(),
        torch.nn.Linear(width, out_dim),
    )


# ----------------------------------------------------------------------------------------------
# The worked examples of the background note, asserted exactly.


class TestBackgroundExamples:
    def test_sin_derivatives_at_zero(self):
        x = torch.zeros(1, 1, requires_grad=True)
        u = torch.sin(x)
        assert (grad(u, x) - torch.cos(x)).abs().item() == 0
        assert (partial(u, x, 0, 0) + torch.sin(x)).abs().item() == 0

    def test_sin_derivatives_on_grid(self):
        # x = 0, 0.001, ..., 1: the elementwise second derivative of sin is -sin, exactly.
        x = (torch.arange(1001, dtype=torch.float64) / 1000).reshape(-1, 1).requires_grad_(True)
        u = torch.sin(x)
        assert torch.equal(grad(u, x), torch.cos(x))
        assert torch.equal(partial(u, x, 0, 0), -torch.sin(x))
        for strategy in STRATEGIES:
            assert torch.equal(laplacian(u, x, strategy=strategy), -torch.sin(x))

    def test_partials_of_product(self):
        # f = (x + y)(y + 3) at (1, 2): f_x = y + 3 = 5, f_y = 2y + x + 3 = 8.
        p = torch.tensor([[1.0, 2.0]], requires_grad=True)
        f = (p[:, :1] + p[:, 1:]) * (p[:, 1:] + 3)
        g = grad(f, p)
        assert g[0, 0].item() == 5
        assert g[0, 1].item() == 8
        assert partial(f, p, 0).item() == 5
        assert partial(f, p, 1).item() == 8

    @pytest.mark.parametrize("strategy", ["ones", "batched", "loop"])
    def test_div_grad_of_dot_product_is_6(self, strategy):
        # f = x . x in 3-D: grad f = 2x has a diagonal Jacobian, so v = ones and v = identity agree.
        x = torch.ones(1, 3, requires_grad=True)
        f = (x * x).sum(dim=1, keepdim=True)
        assert torch.equal(grad(f, x), 2 * x)
        assert div(grad(f, x), x, strategy=strategy).item() == 6
        assert laplacian(f, x, strategy=strategy).item() == 6
        many = dyadic_points(3)
        f = (many * many).sum(dim=1, keepdim=True)
        assert torch.equal(laplacian(f, many, strategy=strategy), torch.full((many.shape[0], 1), 6.0))

    def test_ones_shortcut_is_wrong_for_non_diagonal_jacobian(self):
        # f = x y z: the Laplacian is 0, but the Hessian's off-diagonal entries are x, y, z,
        # and v = ones sums them in: 2(x + y + z). The identity picks the diagonal only.
        x = dyadic_points(3)
        f = x[:, 0:1] * x[:, 1:2] * x[:, 2:3]
        zero = torch.zeros(x.shape[0], 1)
        assert torch.equal(laplacian(f, x, strategy="loop"), zero)
        assert torch.equal(laplacian(f, x, strategy="batched"), zero)
        wrong = laplacian(f, x, strategy="ones")
        assert torch.equal(wrong, 2 * x.sum(dim=1, keepdim=True))
        assert not torch.equal(wrong, zero)


# ----------------------------------------------------------------------------------------------
# Closed-form fields for every operator.


class TestPolynomialsExact:
    """u = x0² x1 + 3 x1³ - x0 x2 + 2 at dyadic points: every operation is exact."""

    @staticmethod
    def field(x):
        x0, x1, x2 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        return x0**2 * x1 + 3 * x1**3 - x0 * x2 + 2

    def test_grad(self):
        x = dyadic_points(3)
        x0, x1, x2 = x.detach().unbind(1)
        expected = torch.stack([2 * x0 * x1 - x2, x0**2 + 9 * x1**2, -x0], dim=1)
        assert torch.equal(grad(self.field(x), x), expected)

    @pytest.mark.parametrize("strategy", ["loop", "batched"])
    def test_laplacian_and_hessian(self, strategy):
        x = dyadic_points(3)
        x0, x1, _ = x.detach().unbind(1)
        assert torch.equal(laplacian(self.field(x), x, strategy=strategy), (20 * x1).unsqueeze(1))
        H = hessian(self.field(x), x, strategy=strategy)
        one, zero = torch.ones_like(x0), torch.zeros_like(x0)
        expected = torch.stack([
            torch.stack([2 * x1, 2 * x0, -one], dim=1),
            torch.stack([2 * x0, 18 * x1, zero], dim=1),
            torch.stack([-one, zero, zero], dim=1),
        ], dim=1)
        assert torch.equal(H, expected)

    def test_partials_any_order(self):
        x = dyadic_points(3)
        x0, x1, _ = x.detach().unbind(1)
        u = self.field(x)
        assert torch.equal(partial(u, x, 0, 1), (2 * x0).unsqueeze(1))
        assert torch.equal(partial(u, x, 1, 0), (2 * x0).unsqueeze(1))
        assert torch.equal(partial(u, x, 1, 1, 1), torch.full_like(x1, 18.0).unsqueeze(1))
        assert torch.equal(partial(u, x, 0, 0, 1), torch.full_like(x1, 2.0).unsqueeze(1))
        assert torch.equal(partial(u, x, 2, 2), torch.zeros_like(x1).unsqueeze(1))  # linear in x2

    def test_div_and_jacobian_of_vector_field(self):
        # v = (x0 x1, x1² x2, x2 x0): J is full, div = x1 + 2 x1 x2 + x0.
        x = dyadic_points(3)
        x0, x1, x2 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        v = torch.cat([x0 * x1, x1**2 * x2, x2 * x0], dim=1)
        a0, a1, a2 = x.detach().unbind(1)
        expected_div = (a1 + 2 * a1 * a2 + a0).unsqueeze(1)
        for strategy in ("loop", "batched"):
            assert torch.equal(div(v, x, strategy=strategy), expected_div)
        zero = torch.zeros_like(a0)
        expected_J = torch.stack([
            torch.stack([a1, a0, zero], dim=1),
            torch.stack([zero, 2 * a1 * a2, a1**2], dim=1),
            torch.stack([a2, zero, a0], dim=1),
        ], dim=1)
        assert torch.equal(jacobian(v, x), expected_J)
        assert torch.equal(jacobian(v, x, strategy="batched"), expected_J)

    def test_curl_2d_and_3d(self):
        x = dyadic_points(2)
        a, b = x[:, 0:1], x[:, 1:2]
        v = torch.cat([-(b**2), a * b], dim=1)  # scalar curl: b - (-2b) = 3b
        assert torch.equal(curl(v, x), 3 * b.detach())
        x = dyadic_points(3)
        x0, x1, x2 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        A = torch.cat([x1 * x2, x0**2, x0 * x1 * x2], dim=1)
        a0, a1, a2 = x.detach().unbind(1)
        expected = torch.stack([a0 * a2, a1 - a1 * a2, 2 * a0 - a2], dim=1)
        assert torch.equal(curl(A, x), expected)

    def test_vector_laplacian_is_per_component(self):
        x = dyadic_points(2)
        a, b = x[:, 0:1], x[:, 1:2]
        u = torch.cat([a**2 * b, b**3, a * b], dim=1)
        expected = torch.cat([2 * b, 6 * b, torch.zeros_like(b)], dim=1).detach()
        assert laplacian(u, x).shape == (x.shape[0], 3)
        assert torch.equal(laplacian(u, x), expected)


class TestTrigonometricRoundOff:
    """u = sin(a x0) cos(b x1) exp(c x2): derivatives to round-off."""

    a, b, c = 1.3, 0.7, -0.4

    def field(self, x):
        return torch.sin(self.a * x[:, 0:1]) * torch.cos(self.b * x[:, 1:2]) * torch.exp(self.c * x[:, 2:3])

    def test_grad_laplacian_hessian(self):
        x = points(200, 3, scale=3.0)
        s0, c0 = torch.sin(self.a * x[:, 0]), torch.cos(self.a * x[:, 0])
        s1, c1 = torch.sin(self.b * x[:, 1]), torch.cos(self.b * x[:, 1])
        e = torch.exp(self.c * x[:, 2])
        u_expected = (s0 * c1 * e).detach()
        g_expected = torch.stack([self.a * c0 * c1 * e, -self.b * s0 * s1 * e, self.c * s0 * c1 * e], dim=1).detach()
        u = self.field(x)
        assert close(grad(u, x), g_expected)
        lap_expected = ((self.c**2 - self.a**2 - self.b**2) * u_expected).unsqueeze(1)
        for strategy in ("loop", "batched"):
            assert close(laplacian(u, x, strategy=strategy), lap_expected)
        H = hessian(u, x)
        assert close(H[:, 0, 1], (-self.a * self.b * c0 * s1 * e).detach())
        assert close(H[:, 1, 2], (-self.b * self.c * s0 * s1 * e).detach())
        assert close(H[:, 2, 2], (self.c**2 * u_expected))
        assert close(partial(u, x, 0, 2), (self.a * self.c * c0 * c1 * e).detach().unsqueeze(1))

    def test_curl_and_div_closed_form(self):
        x = points(100, 3, scale=2.0)
        x0, x1, x2 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        A = torch.cat([torch.sin(x1 * x2), torch.cos(x0) * x2, torch.exp(x0 * x1)], dim=1)
        a0, a1, a2 = (t.detach() for t in (x0, x1, x2))
        expected = torch.cat([
            a0 * torch.exp(a0 * a1) - torch.cos(a0),
            a1 * torch.cos(a1 * a2) - a1 * torch.exp(a0 * a1),
            -torch.sin(a0) * a2 - a2 * torch.cos(a1 * a2),
        ], dim=1)
        assert close(curl(A, x), expected)
        assert close(div(A, x), torch.zeros_like(a0))  # each A_i is independent of x_i


# ----------------------------------------------------------------------------------------------
# Identities, symmetry and torch.func on networks.


class TestIdentitiesOnNetworks:
    def test_curl_of_gradient_vanishes(self):
        for d in (2, 3):
            x = points(64, d)
            phi = mlp(d, 1)(x)
            g = grad(phi, x)
            assert close(curl(g, x), torch.zeros(64, 1 if d == 2 else 3), rtol=1e-13)

    def test_div_of_curl_vanishes(self):
        x = points(64, 3)
        A = mlp(3, 3)(x)
        assert close(div(curl(A, x), x), torch.zeros(64, 1), rtol=1e-13)

    def test_hessian_symmetric(self):
        x = points(64, 4)
        H = hessian(mlp(4, 1)(x), x)
        assert (H - H.transpose(1, 2)).abs().max().item() <= RTOL * H.abs().max().item()

    def test_strategies_agree_on_network(self):
        x = points(32, 3)
        net = mlp(3, 2)
        u = net(x)
        loop = laplacian(u, x)
        assert close(laplacian(u, x, strategy="batched"), loop)
        v = net(x)[:, :1].repeat(1, 3) * x  # a non-diagonal Jacobian: "ones" must disagree
        assert close(div(v, x, strategy="batched"), div(v, x))
        assert not close(div(v, x, strategy="ones"), div(v, x), rtol=1e-3)


class TestAgainstTorchFunc:
    @pytest.fixture
    def setup(self):
        d, m = 3, 2
        net = mlp(d, m, width=12, seed=3)
        x = points(24, d, seed=5)

        def f(p):  # one point (d,) -> (m,)
            return net(p.unsqueeze(0)).squeeze(0)

        return net, x, f

    def test_grad_jacobian(self, setup):
        net, x, f = setup
        J_ref = torch.func.vmap(torch.func.jacrev(f))(x.detach())  # (N, m, d)
        assert close(jacobian(net(x), x), J_ref)
        assert close(grad(net(x)[:, 1:2], x), J_ref[:, 1])

    def test_hessian_laplacian_partial(self, setup):
        net, x, f = setup
        H_ref = torch.func.vmap(torch.func.hessian(f))(x.detach())  # (N, m, d, d)
        u = net(x)
        for k in range(2):
            assert close(hessian(u[:, k : k + 1], x), H_ref[:, k])
            assert close(partial(u[:, k : k + 1], x, 2, 0), H_ref[:, k, 2, 0].unsqueeze(1))
        lap_ref = torch.diagonal(H_ref, dim1=-2, dim2=-1).sum(-1)
        assert close(laplacian(u, x), lap_ref)
        assert close(laplacian(u, x, strategy="batched"), lap_ref)

    def test_third_order_partial(self, setup):
        net, x, f = setup
        T_ref = torch.func.vmap(torch.func.jacfwd(torch.func.hessian(f)))(x.detach())  # (N, m, d, d, d)
        assert close(partial(net(x)[:, :1], x, 0, 1, 2), T_ref[:, 0, 0, 1, 2].unsqueeze(1))


# ----------------------------------------------------------------------------------------------
# Results keep their graph.


class TestGraphIsKept:
    def test_laplacian_trains_the_network(self):
        net = mlp(2, 1)
        x = points(16, 2)
        laplacian(net(x), x).square().mean().backward()
        weights = [m.weight for m in net if isinstance(m, torch.nn.Linear)]
        assert all(w.grad is not None and w.grad.abs().sum().item() > 0 for w in weights)
        assert net[-1].bias.grad is None  # the Laplacian does not see the output bias

    def test_differentiate_a_result_again(self):
        x = dyadic_points(2)
        u = x[:, 0:1] ** 4 * x[:, 1:2]  # Δu = 12 x0² x1, ∇Δu = (24 x0 x1, 12 x0²)
        lap = laplacian(u, x)
        a, b = x.detach().unbind(1)
        assert torch.equal(grad(lap, x), torch.stack([24 * a * b, 12 * a**2], dim=1))

    def test_linear_field_has_zero_second_derivatives(self):
        x = points(8, 3)
        u = x @ torch.tensor([[1.0], [2.0], [3.0]])
        assert torch.equal(laplacian(u, x), torch.zeros(8, 1))
        assert torch.equal(hessian(u, x), torch.zeros(8, 3, 3))
        assert torch.equal(partial(u, x, 1, 2), torch.zeros(8, 1))

    @pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
    def test_operators_called_while_evaluating_give_the_same_numbers_and_graph(self, mode):
        # A field computed with gradients, its operators taken under no_grad or inference_mode:
        # every operator, second derivatives included, as outside it, and still trainable.
        net = mlp(3, 3)
        x = points(8, 3)
        v = net(x)
        u = v[:, :1]
        operators = {"grad": lambda: grad(u, x), "laplacian": lambda: laplacian(v, x),
                     "hessian": lambda: hessian(u, x, strategy="batched"), "partial": lambda: partial(u, x, 0, 1, 1),
                     "div": lambda: div(v, x, strategy="batched"), "jacobian": lambda: jacobian(v, x),
                     "curl": lambda: curl(v, x)}
        expected = {name: operator() for name, operator in operators.items()}
        with mode():
            got = {name: operator() for name, operator in operators.items()}
            assert torch.is_grad_enabled() is False  # the caller's mode is left as it was
        for name in operators:
            assert torch.equal(got[name], expected[name]), name
            assert got[name].requires_grad and not got[name].is_inference(), name
        got["laplacian"].sum().backward()
        assert net[0].weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
# Misuse fails loudly, with the fix in the message.


class TestMisuse:
    def test_x_without_requires_grad(self):
        x = torch.rand(4, 2)
        u = x.sum(1, keepdim=True)
        for op in (grad, laplacian, hessian):
            with pytest.raises(ValueError, match="requires_grad"):
                op(u, x)
        with pytest.raises(ValueError, match="requires_grad"):
            div(x, x)

    def test_flat_scalar_field(self):
        x = points(4, 2)
        with pytest.raises(ValueError, match=r"shape \(N, m\).*reshape\(-1, 1\)"):
            grad(x.sum(1), x)

    def test_row_count_mismatch(self):
        x = points(4, 2)
        with pytest.raises(ValueError, match="N = 4"):
            laplacian(x[:3, :1], x)

    def test_points_must_be_2d(self):
        x = torch.rand(4, requires_grad=True)
        with pytest.raises(ValueError, match=r"\(N, d\)"):
            grad(torch.sin(x), x)
        with pytest.raises(ValueError, match=r"\(N, d\)"):
            div(x * x, x)

    def test_points_must_be_real(self):
        # Autograd differentiates complex tensors too, but gives the conjugate of d/dz.
        x = torch.tensor([[1 + 1j, 2 - 1j]], dtype=torch.complex128, requires_grad=True)
        for op, field in [(grad, (x**2).sum(1, keepdim=True)), (laplacian, (x**2).sum(1, keepdim=True)), (div, x**2)]:
            with pytest.raises(ValueError, match="x must hold real floating-point coordinates .*; got torch.complex128"):
                op(field, x)

    def test_vector_field_where_scalar_needed(self):
        x = points(4, 2)
        v = x * 2
        for op in (grad, hessian):
            with pytest.raises(ValueError, match="scalar field"):
                op(v, x)
        with pytest.raises(ValueError, match="scalar field"):
            partial(v, x, 0)

    def test_a_slice_past_the_outputs_is_named(self):
        x = points(4, 2)
        u = torch.sin(x[:, :1])  # one output
        for op in (grad, laplacian, hessian, jacobian):
            with pytest.raises(ValueError, match=r"[uv] has no components \(shape \(4, 0\)\): a slice past the network's "
                                                 r"outputs\? A PDE's n_outputs"):
                op(u[:, 1:2], x)

    def test_div_needs_one_component_per_coordinate(self):
        x = points(4, 3)
        with pytest.raises(ValueError, match=r"\(N, 3\)"):
            div(x[:, :2] * 2, x)

    def test_u_not_computed_from_x(self):
        x = points(4, 2)
        with pytest.raises(ValueError, match="not computed from x"):
            grad(torch.ones(4, 1), x)
        with torch.no_grad():
            u = mlp(2, 1)(x)
        with pytest.raises(ValueError, match="not computed from x"):
            laplacian(u, x)
        u = mlp(2, 1)(x.detach())  # depends on the weights, not on x
        with pytest.raises(ValueError, match="does not depend on x"):
            grad(u, x)
        with pytest.raises(ValueError, match="does not depend on x"):
            laplacian(u, x)

    def test_a_complex_field_is_refused(self):
        # autograd would differentiate its real part alone: d/dx e^{ix} came out as -sin x
        x = points(3, 1)
        for operator in (grad, laplacian, jacobian):
            with pytest.raises(ValueError, match=r"[uv] must be a real floating-point field .* got torch.complex128"):
                operator(torch.exp(1j * x), x)

    @pytest.mark.parametrize("strategy", ["loop", "batched"])
    def test_components_that_do_not_depend_on_x_have_zero_derivatives(self, strategy):
        # The derivative of a linear field, or a component computed without x: zeros, not an error
        # (autograd cannot tell these apart from a field computed from x.detach() by mistake).
        x = points(4, 2)
        v = mlp(2, 2)(x.detach())
        w = torch.cat([x[:, :1] * x[:, 1:], v[:, 1:]], dim=1)
        assert torch.equal(jacobian(w, x, strategy=strategy)[:, 1], torch.zeros(4, 2, dtype=x.dtype))
        assert torch.equal(div(w, x, strategy=strategy), x[:, 1:].detach())
        linear = x @ torch.tensor([[1.0], [2.0]], dtype=x.dtype, requires_grad=True)
        assert torch.equal(div(grad(linear, x), x, strategy=strategy), torch.zeros(4, 1, dtype=x.dtype))

    def test_points_without_grad_under_a_forward_engine_name_the_fix(self):
        x = torch.rand(4, 2, dtype=torch.float64)  # as a forward engine hands them over
        with pytest.raises(ValueError, match=r"apply the operators to the field the engine returned"):
            grad(mlp(2, 1)(x) ** 2, x)

    def test_curl_dimension(self):
        x = points(4, 4)
        with pytest.raises(ValueError, match=r"\(N, 2\) or \(N, 3\)"):
            curl(x * 1.0, x)

    def test_partial_indices(self):
        x = points(4, 2)
        u = x.prod(1, keepdim=True)
        with pytest.raises(ValueError, match="at least one"):
            partial(u, x)
        with pytest.raises(ValueError, match=r"\[0, 2\)"):
            partial(u, x, 2)
        # NumPy's integers are integers (from np.argmax, or a loop over np.arange)
        assert torch.equal(partial(u, x, np.int64(0), np.int32(1)), partial(u, x, 0, 1))

    def test_unknown_strategy_lists_the_valid_ones(self):
        x = points(4, 2)
        with pytest.raises(ValueError, match="loop, batched, ones"):
            laplacian(x.sum(1, keepdim=True), x, strategy="fast")


def test_pointwise_gradient_matches_single_point_evaluation():
    # v = 1 over the batch gives each row its own gradient because the network is pointwise.
    net = mlp(3, 1)
    x = points(10, 3)
    batched = grad(net(x), x)
    for i in range(10):
        xi = x[i : i + 1].detach().clone().requires_grad_(True)
        assert close(grad(net(xi), xi), batched[i : i + 1])


def test_float32_sin_derivatives_exact():
    x = (torch.arange(1001, dtype=torch.float32) / 1000).reshape(-1, 1).requires_grad_(True)
    u = torch.sin(x)
    assert torch.equal(grad(u, x), torch.cos(x))
    assert torch.equal(laplacian(u, x), -torch.sin(x))
