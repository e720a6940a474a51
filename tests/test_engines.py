"""The forward engine agrees with autograd to float64 round-off; the stochastic one is unbiased."""

import contextlib
from unittest import mock

import pytest
import torch
from torch import nn

from pinn import derivatives
from pinn.balancing import LossBalance
from pinn.derivatives import AutogradEngine, ForwardEngine, OnePass, StochasticEngine, make_engine, one_pass_applies
from pinn.errors import ConfigError
from pinn.models import ACTIVATIONS, MLP, OutputTransform
from pinn.operators import curl, div, grad, hessian, jacobian, laplacian, partial
from pinn.optim import LBFGS, Adam, AdamLBFGS
from pinn.point_cache import PointCache
from pinn.pdes import (PDE, AllenCahn, Burgers, Cavity, Heat, HeatInverse, Helmholtz, Kovasznay, Poisson, PoissonBall,
                       PoissonInverse, PoissonLShape, Wave)
from pinn.sampling import SobolSampler
from pinn.trainer import Trainer


pytestmark = pytest.mark.usefixtures("float64")  # every tensor here is float64 unless a test says otherwise


def close(a, b, rtol=1e-12):
    return (a - b).abs().max().item() <= rtol * (1 + b.abs().max().item())


def both(model, x, second="hessian"):
    return AutogradEngine().evaluate(model, x), ForwardEngine(second=second).evaluate(model, x)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("second", ["laplacian", "diagonal", "hessian"])
def test_forward_agrees_with_autograd(activation, second):
    torch.manual_seed(0)
    model = MLP(3, 2, width=16, depth=3, activation=activation)
    x = 2 * torch.randn(40, 3)
    (xa, ua), (xf, uf) = both(model, x, second)
    assert torch.equal(uf.value, ua.detach()) or close(uf.value, ua)
    assert close(laplacian(uf, xf), laplacian(ua, xa))
    assert close(jacobian(uf, xf), jacobian(ua, xa))
    assert close(grad(uf[:, 1:2], xf), grad(ua[:, 1:2], xa))
    assert close(partial(uf[:, :1], xf, 2), partial(ua[:, :1], xa, 2))
    if second != "laplacian":
        assert close(partial(uf[:, :1], xf, 1, 1), partial(ua[:, :1], xa, 1, 1))
    if second == "hessian":
        assert close(hessian(uf[:, :1], xf), hessian(ua[:, :1], xa))
        assert close(partial(uf[:, 1:], xf, 0, 2), partial(ua[:, 1:], xa, 0, 2))


def test_forward_div_and_curl():
    torch.manual_seed(1)
    model = MLP(3, 3, width=12, depth=2)
    (xa, ua), (xf, uf) = both(model, torch.randn(20, 3))
    assert close(div(uf, xf), div(ua, xa))
    assert close(curl(uf, xf), curl(ua, xa))


def test_forward_softplus_linear_region_matches_autograd():
    model = nn.Sequential(nn.Linear(2, 4), nn.Softplus(beta=2.0, threshold=1.0), nn.Linear(4, 1))
    x = 5 * torch.randn(64, 2)  # many pre-activations beyond the threshold
    (xa, ua), (xf, uf) = both(model, x)
    assert close(laplacian(uf, xf), laplacian(ua, xa))


def test_same_first_training_steps_under_both_engines(tmp_path):
    params = []
    for engine in (AutogradEngine(), ForwardEngine()):
        torch.manual_seed(0)
        model = MLP(2, 1, width=10, depth=2)
        Trainer(max_steps=5, eval_every=5, n_test=50, progress=False).fit(
            pde=Poisson(dim=2), model=model, engine=engine, sampler=SobolSampler(n_interior=64, n_boundary=16),
            optimizer=Adam(lr=1e-2), generator=torch.Generator().manual_seed(0), run_dir=tmp_path / engine.name,
            dtype=torch.float64)
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert close(params[0], params[1], rtol=1e-10)


class Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


@pytest.mark.parametrize("engine", [ForwardEngine(), StochasticEngine()])
def test_unsupported_layer_is_refused_at_start(engine, tmp_path):
    model = nn.Sequential(nn.Linear(2, 4), Doubler(), nn.Linear(4, 1))
    with pytest.raises(ConfigError, match=r"cannot propagate layer '1' \(Doubler\).*derivatives.engine=autograd"):
        Trainer(max_steps=1, progress=False).fit(
            pde=Poisson(dim=2), model=model, engine=engine, sampler=SobolSampler(n_interior=8, n_boundary=4),
            optimizer=Adam(), generator=torch.Generator().manual_seed(0), run_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"layer '1' \(GELU\): its approximate='tanh' form has no rule"):
        ForwardEngine().evaluate(nn.Sequential(nn.Linear(2, 3), nn.GELU(approximate="tanh")), torch.randn(4, 2))


class ScaledMLP(MLP):
    def forward(self, x):
        return 10 * super().forward(x)


class SquaringLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x**2)


def _hooked():
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    model[1].register_forward_hook(lambda module, inputs, output: 2 * output)
    return model


def _patched():
    model = MLP(2, 1, width=5, depth=1)
    model.net[1].forward = torch.sin  # runs sin; the tanh rule would give tanh's derivatives
    return model


@pytest.mark.parametrize("model,match", [
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.SiLU(inplace=True), nn.Linear(3, 1)),
     r"layer '1' \(SiLU\): it works in place"),
    (_patched, r"layer 'net.1' \(Tanh\): its forward is replaced on the instance"),
    (lambda: ScaledMLP(2, 1, width=4, depth=1), r"layer 'model' \(ScaledMLP\): it overrides the forward"),
    (lambda: nn.Sequential(SquaringLinear(2, 3), nn.Tanh(), nn.Linear(3, 1)), r"layer '0' \(SquaringLinear\): it overrides"),
    (_hooked, r"layer '1' \(Tanh\): it has forward hooks"),
], ids=["in place", "patched instance", "overridden MLP", "overridden Linear", "hook"])
def test_layers_that_do_not_run_as_propagated_are_refused(model, match):
    # Each would otherwise give the value or the derivatives of another network than the one that runs.
    with pytest.raises(ConfigError, match=match):
        ForwardEngine().check(model())


class Tripled(MLP):
    def forward(self, x):
        return 3 * super().forward(x)


def _hooked_first_layer():
    model = MLP(2, 1, width=8, depth=2)
    model.net[0].register_forward_hook(lambda module, inputs, output: 2 * output)
    return model


@pytest.mark.parametrize("engine", [ForwardEngine(), ForwardEngine(second="hessian"), StochasticEngine(samples=2)]
                         + ([ForwardEngine(triton=True)] if derivatives.fused.triton is not None else []),
                         ids=["laplacian", "hessian", "stochastic", "triton"][:3 + (derivatives.fused.triton is not None)])
@pytest.mark.parametrize("model, layer", [(_hooked_first_layer, r"'net.0' \(Linear\): it has forward hooks"),
                                          (lambda: nn.Sequential(nn.Linear(2, 8), nn.SiLU(inplace=True), nn.Linear(8, 1)),
                                           r"'1' \(SiLU\): it works in place"),
                                          (lambda: Tripled(2, 1, width=8, depth=2), r"'model' \(Tripled\): it overrides"),
                                          (lambda: nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(),
                                                                 nn.Linear(8, 1)), r"'3' \(ReLU\); supported")],
                         ids=["hook", "in-place", "overridden", "no-rule"])
def test_evaluate_refuses_what_check_refuses_naming_the_layer(engine, model, layer):
    """Without the engine's check (a user's own loop, say), a layer the engine would not compute
    as it runs is refused all the same, never answered with another network's numbers."""
    for call in (lambda: engine.check(model()), lambda: engine.evaluate(model(), torch.randn(4, 2))):
        with pytest.raises(ConfigError, match=f"cannot propagate layer {layer}"):
            call()


@pytest.mark.parametrize("engine", [AutogradEngine(), ForwardEngine(second="hessian"), ForwardEngine(gram=True)],
                         ids=["autograd", "forward", "gram"])
def test_operator_results_are_tensors_of_their_own(engine):
    """A residual may change an operator's result in place, as with any tensor autograd returns,
    without changing what later operators read off the same field."""
    torch.manual_seed(0)
    x = torch.randn(3, 2)
    gram = isinstance(engine, ForwardEngine) and engine.gram is True
    linear = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))  # no activation: the seed's zero second derivatives
    for model in [MLP(2, 1, width=8, depth=2)] + ([] if gram else [linear]):
        xe, u = engine.evaluate(model, x)
        reads = [lambda: laplacian(u, xe)]
        if not gram:
            reads += [lambda: grad(u, xe), lambda: partial(u, xe, 1), lambda: partial(u, xe, 0, 1),
                      lambda: hessian(u, xe), lambda: jacobian(u, xe)]
        for read in reads:
            before = read().detach().clone()
            read().mul_(10).add_(1)
            assert torch.equal(read().detach(), before)


def test_a_hard_constraint_at_expanded_points():
    from pinn.models import OutputTransform

    torch.manual_seed(0)
    model = OutputTransform(MLP(2, 1, width=8, depth=2), lambda x: x[:, :1] ** 2, lambda x: torch.sin(x[:, 1:2]))
    x = torch.tensor([[0.3, -0.2]]).expand(4, 2)  # one point, repeated
    xa, ua = AutogradEngine().evaluate(model, x)
    for engine in (ForwardEngine(gram=False), ForwardEngine(gram=True)):
        xf, uf = engine.evaluate(model, x)
        assert close(laplacian(uf, xf), laplacian(ua, xa))
    StochasticEngine(samples=2).evaluate(model, x)


def test_hard_constraints_the_forward_engine_cannot_take_are_refused_before_training():
    from pinn.models import OutputTransform
    from pinn.pdes.base import VanishingOnBall

    def constrained(**parts):
        return OutputTransform(MLP(2, 1, width=4, depth=1), parts.get("base", lambda x: x[:, :1] * 0),
                               parts.get("scale", VanishingOnBall([0.0, 0.0])))

    # Inside a network its base and scale would see a layer's output as if it were the points.
    inside = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), constrained())
    with pytest.raises(ConfigError, match=r"layer '2' \(OutputTransform\): a hard constraint must wrap the whole"):
        ForwardEngine().check(inside)
    with pytest.raises(ConfigError, match="must wrap the whole network"):
        ForwardEngine().evaluate(inside, torch.randn(5, 2))
    # A base or scale that trains would be differentiated once, as a constant.
    with pytest.raises(ConfigError, match=r"its scale has trainable parameters \(net.0.weight, net.0.bias, net.2.weight, ...\)"):
        ForwardEngine().check(constrained(scale=MLP(2, 1, width=3, depth=1)))
    ForwardEngine().check(constrained(scale=MLP(2, 1, width=3, depth=1).requires_grad_(False)))
    ForwardEngine().check(OutputTransform(constrained(), lambda x: x[:, :1], lambda x: x[:, 1:]))  # nested: fine
    # A trained tensor it reaches from outside, as a closure does, which check() cannot see.
    amp = nn.Parameter(torch.tensor(2.0))
    with pytest.raises(ConfigError, match=r"hard constraint's base depends on a tensor that requires a gradient .* "
                                          r"derivatives.engine=autograd"):
        ForwardEngine().evaluate(constrained(base=lambda x: amp * x[:, :1]), torch.randn(5, 2))
    ForwardEngine().evaluate(constrained(base=lambda x: amp.detach() * x[:, :1]), torch.randn(5, 2))
    with pytest.raises(ConfigError, match=r"hard constraint's scale depends on a tensor that requires a gradient"):
        StochasticEngine().evaluate(constrained(scale=lambda x: amp * x[:, :1]), torch.randn(5, 2))
    with pytest.raises(ConfigError, match=r"layer '1' \(GELU\): its approximate='tanh' form has no rule"):
        ForwardEngine().check(nn.Sequential(nn.Linear(2, 3), nn.GELU(approximate="tanh"), nn.Linear(3, 1)))


@pytest.mark.parametrize("engine", [AutogradEngine(), ForwardEngine()], ids=["autograd", "forward"])
def test_a_hard_constraint_part_without_its_column_dimension_is_refused(engine):
    from pinn.models import OutputTransform

    # (N,) against the network's (N, 1) would broadcast to (N, N): a wrong field of the wrong shape.
    model = OutputTransform(MLP(2, 1, width=4, depth=1), lambda x: x[:, :1] * 0, lambda x: x[:, 0] * (1 - x[:, 0]))
    with pytest.raises(ValueError, match=r"scale must be a function of the points .* it returned \(5,\), not \(5, [1m]\); keep the column"):
        engine.evaluate(model, torch.rand(5, 2))


@pytest.mark.parametrize("base", [0.25, torch.tensor(0.25, dtype=torch.float64),
                                  torch.full((1, 1), 0.25, dtype=torch.float64)], ids=["number", "0-d", "one row"])
def test_a_constant_hard_constraint_base_broadcasts_under_both_engines(base):
    from pinn.models import OutputTransform

    torch.manual_seed(0)
    model = OutputTransform(MLP(2, 1, width=4, depth=1).double(), lambda x: base, lambda x: x[:, :1] * x[:, 1:])
    x = torch.rand(5, 2, dtype=torch.float64)
    results = []
    for engine in (AutogradEngine(), ForwardEngine(second="diagonal")):
        xe, u = engine.evaluate(model, x)
        results.append(torch.cat([u.value if hasattr(u, "jac") else u, grad(u, xe), laplacian(u, xe)], dim=1))
    assert results[0].shape == (5, 4) and torch.allclose(results[1], results[0], rtol=1e-12, atol=1e-14)


def test_operators_check_a_jet_against_its_points():
    x, u = ForwardEngine().evaluate(MLP(2, 3, width=8, depth=1), torch.randn(5, 2))
    with pytest.raises(ValueError, match="one component per coordinate"):
        div(u, x)  # three components, two coordinates
    with pytest.raises(ValueError, match="one component per coordinate"):
        curl(u, x)
    with pytest.raises(ValueError, match="u has 5 rows but x has 4 points"):
        laplacian(u, x[:4])
    with pytest.raises(ValueError, match="u has 5 rows but x has 4 points"):
        grad(u[:, :1], x[:4])
    with pytest.raises(IndexError, match=r"by a slice, u\[:, 0:1\]"):
        u[:, 0]
    with pytest.raises(IndexError, match=r"by a slice, u\[:, -1:\]"):
        u[:, -1]
    with pytest.raises(IndexError, match="selects no component"):
        u[:, 5:6]
    assert u[:, 1:3].shape == (5, 2) and u[:, [0, 2]].shape == (5, 2)


@pytest.mark.parametrize("engine", [ForwardEngine(second="hessian"), ForwardEngine(gram=True), StochasticEngine()],
                         ids=["forward", "gram", "stochastic"])
def test_operators_refuse_other_points_than_the_fields(engine):
    """A carrier reads its derivatives off itself, so without a check it would answer for some
    of x's columns, or for other points, as if given its own (autograd raises there too)."""
    torch.manual_seed(0)
    points = torch.rand(5, 3, dtype=torch.float64)
    x, u = engine.evaluate(MLP(3, 2, width=4, depth=1).double(), points)
    assert laplacian(u, x).shape == (5, 2)
    torch.testing.assert_close(laplacian(u[:, 1:], points), laplacian(u, x)[:, 1:], rtol=0, atol=0)  # the same points
    with pytest.raises(ValueError, match=r"u was computed at points with 3 coordinates, but x has 2 columns; pass the "
                                         r"points the engine returned .* use partial\(u, x, i\) and partial\(u, x, i, i\)"):
        laplacian(u, x[:, :2])
    with pytest.raises(ValueError, match=r"u was computed at other points than x \(another tensor of shape \(5, 3\)\)"):
        laplacian(u[:, :1], torch.rand(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="x has 1 column;"):
        laplacian(u, x[:, 1:2])

    def space_laplacian_by_mistake(points):
        x, u = engine.evaluate(MLP(3, 2, width=4, depth=1).double(), points)
        return laplacian(u, x[:, :2])

    with pytest.raises(ValueError, match="computed at points with 3 coordinates, but x has 2 columns"):
        torch.compile(space_laplacian_by_mistake, backend="eager")(points)  # compiled code too
    if engine.name == "forward" and not engine.gram:
        for operator, field in ((grad, u[:, :1]), (hessian, u[:, :1]), (jacobian, u)):
            with pytest.raises(ValueError, match="computed at points with 3 coordinates, but x has 2 columns"):
                operator(field, x[:, 1:])
        with pytest.raises(ValueError, match="computed at points with 3 coordinates, but x has 7 columns"):
            partial(u[:, :1], torch.rand(5, 7, dtype=torch.float64), 5)


def test_jets_compare_as_their_values_and_empty_point_sets_are_named():
    torch.manual_seed(0)
    x = torch.rand(5, 2, dtype=torch.float64)
    model = MLP(2, 1, width=4, depth=1).double()
    (_, exact), (_, u) = AutogradEngine().evaluate(model, x), ForwardEngine().evaluate(model, x)
    for compare in (lambda a: a == 0, lambda a: a != 0, lambda a: a < 0.1, lambda a: a <= 0.1, lambda a: a > 0.1,
                    lambda a: a >= 0.1, abs, lambda a: 2**a):
        assert torch.equal(compare(u), compare(exact))
    assert {u: 1}[u] == 1  # still hashable
    for engine in (ForwardEngine(), ForwardEngine(gram=True), StochasticEngine()):
        with pytest.raises(ValueError, match=r"no points to evaluate the field at: x has shape \(0, 2\); give a point set"):
            engine.evaluate(model, x[:0])


def test_a_jet_answers_tensor_methods_with_its_value():
    # A residual written with tensor methods reads the same under both engines.
    x = torch.rand(5, 2, dtype=torch.float64)
    model = MLP(2, 1, width=8, depth=1).double()
    results = []
    for engine in (AutogradEngine(), ForwardEngine()):
        _, u = engine.evaluate(model, x)
        assert u.dtype == torch.float64
        results.append(u.square().sum(dim=1, keepdim=True) + u.pow(3))
    assert torch.equal(results[0], results[1])
    with pytest.raises(AttributeError, match="has no attribute 'no_such_method'"):
        u.no_such_method()
    with pytest.raises(AttributeError, match="changing its value in place would leave its derivatives"):
        u.mul_(2)


def test_asking_for_what_is_not_carried_names_the_fix():
    model = MLP(2, 1, width=8, depth=1)
    x, u = ForwardEngine(second="laplacian").evaluate(model, torch.randn(5, 2))
    with pytest.raises(ConfigError, match="derivatives.second=diagonal"):
        partial(u, x, 0, 0)
    with pytest.raises(ConfigError, match="derivatives.second=hessian"):
        hessian(u, x)
    x, u = ForwardEngine(second="diagonal").evaluate(model, torch.randn(5, 2))
    with pytest.raises(ConfigError, match="derivatives.second=hessian"):
        partial(u, x, 0, 1)
    with pytest.raises(ConfigError, match="order 3 needs derivatives.engine=autograd"):
        partial(u, x, 0, 0, 0)
    x, u = StochasticEngine().evaluate(model, torch.randn(5, 2))
    with pytest.raises(ConfigError, match="estimates the Laplacian only"):
        grad(u, x)


ENGINE_NAMES = ("autograd", "forward", "stochastic")


def test_bad_engine_settings():
    from pinn.derivatives import make_engine

    with pytest.raises(ConfigError, match="unknown derivatives.engine 'taylor'; valid choices: autograd, forward"):
        make_engine("taylor")
    assert isinstance(make_engine("forward", second="hessian"), ForwardEngine)
    with pytest.raises(ConfigError, match="derivatives.second"):
        ForwardEngine(second="full")
    # settings of the other engines are checked too, and refused where they would be passed over
    for engine in ENGINE_NAMES:
        with pytest.raises(ConfigError, match="derivatives.samples must be an integer > 0; got -5"):
            make_engine(engine, samples=-5)
        with pytest.raises(ConfigError, match="unknown derivatives.second 'laplace'"):
            make_engine(engine, second="laplace")
    for engine, setting in (("autograd", dict(gram=True)), ("autograd", dict(second="hessian")),
                            ("stochastic", dict(gram=True)), ("stochastic", dict(second="diagonal"))):
        with pytest.raises(ConfigError, match=f"applies to the forward engine, not to the {engine} engine"):
            make_engine(engine, **setting)
    assert isinstance(make_engine("stochastic", second="laplacian"), StochasticEngine)
    with pytest.raises(ConfigError, match="derivatives.samples"):
        StochasticEngine(samples=0)


@pytest.mark.parametrize("samples", [1, 3])
def test_stochastic_laplacian_is_unbiased_with_the_variance_the_readme_gives(samples):
    # Mean: the exact Laplacian (directions scaled by 1/K instead of 1/sqrt(K) would give a
    # third of it at K = 3). Variance: (2/K) Σ_{i≠j} H_ij², the off-diagonal entries only
    # (Gaussian directions would add 2/K Σ_i H_ii²).
    torch.manual_seed(0)
    model = MLP(6, 1, width=16, depth=2).double()
    x = torch.randn(8, 6, dtype=torch.float64)
    exact = laplacian(*reversed(AutogradEngine().evaluate(model, x))).detach().squeeze(1)
    hessians = torch.func.vmap(torch.func.hessian(lambda y: model(y[None])[0, 0]))(x).detach()
    formula = 2 / samples * (hessians.square().sum((1, 2)) - hessians.diagonal(dim1=1, dim2=2).square().sum(1))
    engine, draws = StochasticEngine(samples=samples), 3000
    estimates = torch.stack([laplacian(*reversed(engine.evaluate(model, x))).detach() for _ in range(draws)])
    estimates = estimates.squeeze(-1)  # (draws, 8 points)
    mean, stderr = estimates.mean(0), estimates.std(0) / draws**0.5
    assert stderr.min() > 0  # a network's Hessian is not diagonal: single estimates do vary
    assert ((mean - exact).abs() <= 5 * stderr).all()
    ratio = estimates.var(0) / formula
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio


def test_stochastic_laplacian_is_exact_where_the_network_is_a_sum_of_one_dimensional_terms():
    # Each hidden unit sees one coordinate: no mixed partials, so vᵀHv = tr H for every ±1 draw.
    torch.manual_seed(0)
    model = MLP(5, 1, width=10, depth=1).double()
    with torch.no_grad():
        first = model.net[0].weight
        first.mul_((torch.arange(10)[:, None] % 5 == torch.arange(5)[None, :]).double())
    x = torch.randn(12, 5, dtype=torch.float64)
    exact = laplacian(*reversed(AutogradEngine().evaluate(model, x))).detach()
    for samples in (1, 2, 7):
        estimate = laplacian(*reversed(StochasticEngine(samples=samples).evaluate(model, x))).detach()
        assert close(estimate, exact), samples


def test_unbiased_loss_multiplies_two_independent_estimates():
    """Squaring an estimate overshoots the exact loss by the estimate's variance,
    (2/K) Σ_{i≠j} (∂ᵢⱼu)² averaged over the points; the product of two independent estimates
    (derivatives.unbiased=true) does not. Boundary terms hold no estimate and stay exact."""
    torch.manual_seed(0)
    pde = Poisson(dim=4, k=0.1)  # a small source: the residual is mostly the network's own Laplacian
    model = MLP(4, 1, width=16, depth=2)
    points = SobolSampler(n_interior=8, n_boundary=8).sample(pde.domain, torch.Generator().manual_seed(0),
                                                             pde.point_sets)
    exact = pde.losses(model, points, ForwardEngine())
    hessians = torch.func.vmap(torch.func.hessian(lambda y: model(y[None])[0, 0]))(points["interior"])
    off_diagonal = hessians.square().sum((1, 2)) - hessians.diagonal(dim1=1, dim2=2).square().sum(1)
    samples, draws = 2, 3000
    variance = (2 / samples * off_diagonal).mean()
    assert variance > 0.05 * exact["pde"]  # large enough for the bias to show
    trainer = Trainer(progress=False)
    for unbiased, expected in ((False, exact["pde"] + variance), (True, exact["pde"])):
        engine = StochasticEngine(samples=samples, unbiased=unbiased)
        terms = [trainer.losses(pde, model, engine, points)[1] for _ in range(draws)]
        pde_terms = torch.stack([t["pde"].detach() for t in terms])
        stderr = pde_terms.std() / draws**0.5
        assert variance > 10 * stderr  # the test can tell the two apart
        assert (pde_terms.mean() - expected).abs() <= 5 * stderr, (unbiased, pde_terms.mean(), expected, stderr)
        assert all(close(t["boundary"], exact["boundary"]) for t in terms[:5])


def test_unbiased_loss_is_refused_where_it_means_nothing(tmp_path):
    from pinn.derivatives import make_engine

    with pytest.raises(ConfigError, match="derivatives.unbiased=true applies to the stochastic engine"):
        make_engine("forward", unbiased=True)
    with pytest.raises(ConfigError, match="derivatives.unbiased must be true or false"):
        make_engine("stochastic", unbiased="yes")
    assert make_engine("stochastic", unbiased=True).unbiased

    class OnlyLosses(Poisson):
        residuals = PDE.residuals  # the base class's: this PDE defines losses() only

        def losses(self, model, points, engine):
            return Poisson.residuals(self, model, points, engine)

    def fit(pde, optimizer):
        Trainer(max_steps=4, progress=False).fit(
            pde=pde, model=MLP(2, 1, width=8, depth=2), engine=StochasticEngine(unbiased=True),
            sampler=SobolSampler(n_interior=16, n_boundary=8), optimizer=optimizer,
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path)

    with pytest.raises(ConfigError, match="derivatives.unbiased=true multiplies pointwise residuals"):
        fit(OnlyLosses(dim=2), Adam())
    # A line search minimises one step's loss, which here may be negative without a lower bound.
    with pytest.raises(ConfigError, match="not bounded below: an L-BFGS line search cannot use it.*optimizer=adam"):
        fit(Poisson(dim=2), AdamLBFGS(switch_step=3))
    fit(Poisson(dim=2), AdamLBFGS(switch_step=4))  # L-BFGS never reached: fine


def test_stochastic_directions_stay_the_same_within_an_lbfgs_step(tmp_path):
    """Every loss evaluation of one L-BFGS step (its line search included) takes the same random
    directions, so that the search follows one function; each step draws new ones."""
    seen = []

    class Recording(StochasticEngine):
        def evaluate(self, model, x):
            seen.append(torch.get_rng_state())  # where this evaluation's directions come from
            return super().evaluate(model, x)

    steps = []
    plan = LBFGS(max_iter=4)
    build = plan.build

    def counted(phase, params):  # each step's evaluations, between calls of its step()
        optimizer = build(phase, params)
        step = optimizer.step
        optimizer.step = lambda closure: steps.append(len(seen)) or step(closure)
        return optimizer

    plan.build = counted
    torch.manual_seed(0)
    Trainer(max_steps=3, progress=False, eval_every=100).fit(
        pde=Poisson(dim=3), model=MLP(3, 1, width=8, depth=2), engine=Recording(samples=2),
        sampler=SobolSampler(n_interior=16, n_boundary=8), optimizer=plan,
        generator=torch.Generator().manual_seed(0), run_dir=tmp_path)
    assert len(steps) == 3
    per_step = [seen[a:b] for a, b in zip(steps, steps[1:])]  # the first two steps' evaluations
    assert all(len(states) > 1 for states in per_step)  # several each
    for states in per_step:
        assert all(torch.equal(state, states[0]) for state in states)
    firsts = [seen[i] for i in steps]
    assert not torch.equal(firsts[0], firsts[1]) and not torch.equal(firsts[1], firsts[2])


def test_stochastic_laplacian_is_exact_for_a_separable_field():
    # Rademacher v has v_i² = 1, so vᵀHv = tr H whenever H is diagonal.
    class Separable(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))

        def forward(self, x):
            return sum(self.inner(x[:, i : i + 1]) for i in range(x.shape[1]))

    model = Separable()
    x = torch.randn(10, 5, requires_grad=True)
    exact = laplacian(model(x), x)
    # The engine cannot walk this custom module, but the Jet rules apply per coordinate:
    from pinn.jet import Jet, propagate

    signs = 2 * torch.randint(0, 2, (10, 3, 5)).double() - 1
    jet = Jet.seed(x.detach(), "laplacian", directions=signs / 3**0.5)
    columns = [propagate(model.inner, Jet(jet.value[:, i:i + 1], jet.jac[..., i:i + 1], "laplacian",
                                          jet.sec[:, i:i + 1], exact=False)) for i in range(5)]
    estimate = sum(c.sec for c in columns)
    assert close(estimate, exact)


@pytest.mark.parametrize("kind", ["shared", "per_point"])
def test_a_hard_constraint_along_random_directions_comes_from_its_jets_along_the_axes(kind):
    """A plain-function base or scale is differentiated along the coordinate axes once per point
    set (kept by the point cache); each evaluation's random directions then take its gradient's
    projections onto them, and its exact Laplacian as the estimate of its Laplacian."""
    from pinn.jet import Jet, _transform_jets
    from pinn.models import OutputTransform
    from pinn.point_cache import PointCache

    calls = []

    def base(x):
        calls.append(x.shape)
        return torch.sin(x[:, :1]) * x[:, 1:2].square() + torch.exp(x[:, 2:3]) * x[:, 3:]

    torch.manual_seed(0)
    x = torch.randn(7, 4)
    module = OutputTransform(MLP(4, 1, width=8, depth=1), base, lambda y: torch.cos(y).prod(dim=1, keepdim=True))
    gradient = torch.func.vmap(torch.func.jacrev(lambda p: base(p[None])[0]))(x)  # (N, 1, d)
    value, exact = base(x), _closed_form_second(base, x, None, "laplacian")
    calls.clear()
    with PointCache().active({"interior": x}):
        for _ in range(3):
            directions = _directions(kind, 7, 4)
            _, jet = _transform_jets(module, Jet.seed(x, "laplacian", directions=directions))
            assert not jet.exact and close(jet.value, value)
            assert close(jet.jac, torch.einsum("nkd,nmd->nkm", directions.expand(7, -1, -1), gradient))
            assert close(jet.sec, exact)
    assert len(calls) == 1 + 4  # its value, and a pass per axis, once
    # New points at every evaluation: d + 1 = 5 passes along the axes would cost more than the
    # K = 3 directions, which are then taken at every call (the estimate of the Laplacian, not it).
    with PointCache(uses_per_set=1).active({"interior": x}):
        directions = _directions(kind, 7, 4)
        _, jet = _transform_jets(module, Jet.seed(x, "laplacian", directions=directions))
    assert close(jet.sec, _closed_form_second(base, x, directions, "laplacian")) and not close(jet.sec, exact)


def test_the_stochastic_laplacian_inside_a_hard_constraint_is_unbiased():
    torch.manual_seed(0)
    model = OutputTransform(MLP(4, 1, width=16, depth=2), lambda y: torch.sin(y).sum(dim=1, keepdim=True),
                            lambda y: torch.exp(-y.square().sum(dim=1, keepdim=True)))
    x = torch.randn(8, 4)
    exact = laplacian(*reversed(AutogradEngine().evaluate(model, x))).detach().squeeze(1)
    engine, draws = StochasticEngine(samples=1), 3000
    with PointCache().active({"interior": x}):
        estimates = torch.stack([laplacian(*reversed(engine.evaluate(model, x))).detach() for _ in range(draws)])
    estimates = estimates.squeeze(-1)
    mean, stderr = estimates.mean(0), estimates.std(0) / draws**0.5
    assert stderr.max() > 0 and ((mean - exact).abs() <= 5 * stderr).all()


def _directions(kind, n, d):
    """The seed's directions: the coordinate axes, random ones shared by every point (the
    stochastic engine's), or random ones per point."""
    if kind == "axes":
        return None
    shape = (3, d) if kind == "shared" else (n, 3, d)
    return torch.randn(shape)


def _closed_form_second(f, x, directions, second):
    """``f``'s second derivatives along the directions, from ``torch.func.hessian`` point by point."""
    hess = torch.func.vmap(torch.func.hessian(lambda p: f(p[None])[0]))(x)  # (N, m, d, d)
    n, d = x.shape
    v = torch.eye(d).expand(n, -1, -1) if directions is None else directions.expand(n, -1, -1)
    full = torch.einsum("nkd,nmde,nle->nklm", v, hess, v)  # (N, K, K, m)
    if second == "hessian":
        return full
    diagonal = torch.diagonal(full, dim1=1, dim2=2).movedim(-1, 1)  # (N, K, m)
    return diagonal if second == "diagonal" else diagonal.sum(dim=1)


@pytest.mark.parametrize("second", ["laplacian", "diagonal", "hessian"])
@pytest.mark.parametrize("kind", ["axes", "shared", "per_point"])
def test_jet_of_a_function_matches_torch_func(second, kind):
    # The general path of Jet.of_function (a hard constraint's base and scale), on a function
    # with mixed second derivatives and two components.
    from pinn.jet import Jet

    def f(x):
        return torch.cat([torch.sin(x[:, :1]) * x[:, 1:2].square() + torch.exp(x[:, 2:3]),
                          x.square().sum(dim=1, keepdim=True) * x[:, :1]], dim=1)

    torch.manual_seed(0)
    x = torch.randn(7, 4)
    directions = _directions(kind, 7, 4)
    jet = Jet.of_function(f, Jet.seed(x, second, directions=directions))
    v = torch.eye(4).expand(7, -1, -1) if directions is None else directions.expand(7, -1, -1)
    jac = torch.einsum("nkd,nmd->nkm", v, torch.func.vmap(torch.func.jacrev(lambda p: f(p[None])[0]))(x))
    assert close(jet.value, f(x)) and close(jet.jac, jac)
    assert close(jet.sec, _closed_form_second(f, x, directions, second))


@pytest.mark.parametrize("use", [
    # a hard constraint's function without derivatives in closed form
    "from pinn.jet import Jet\n"
    "x = torch.rand(5, 2, dtype=torch.float64)\n"
    "jet = Jet.of_function(lambda y: y.sin().prod(dim=1, keepdim=True), Jet.seed(x))\n"
    "assert torch.allclose(jet.sec, -2 * x.sin().prod(dim=1, keepdim=True))",
    # the pre-flight check of a network the forward engine does not take (torch.func.hessian)
    "from pinn.preflight import preflight\n"
    "net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Softsign(), torch.nn.Linear(8, 1)).double()\n"
    "preflight('cpu', torch.float64, model=net, in_dim=2)",
], ids=["hard_constraint", "preflight"])
def test_torch_funcs_forward_mode_brings_no_warning_about_pytorchs_own_code(use):
    # PyTorch's first forward-mode product imports decompositions that call torch.jit.script,
    # which warns that it is deprecated (a FutureWarning, shown by default, from 2.14 on): a
    # line at the head of every run with a hard constraint, about nothing a user can change.
    # A fresh process each, since only the first import warns.
    import subprocess
    import sys

    code = ("import warnings\n"
            "warnings.filterwarnings('error', message='`torch.jit.script` is deprecated')\n"
            f"import torch\n{use}\nprint('no warning')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "no warning", result.stderr


@pytest.mark.parametrize("second", ["laplacian", "diagonal", "hessian"])
@pytest.mark.parametrize("kind", ["axes", "shared", "per_point"])
@pytest.mark.parametrize("center, radius", [([0.0] * 5, 1.0), ([0.3, -1.0, 0.0, 2.0, 0.5], 2.5)])
def test_ball_factor_derivatives_in_closed_form(second, kind, center, radius):
    from pinn.jet import Jet
    from pinn.pdes.base import VanishingOnBall

    factor = VanishingOnBall(center, radius)
    torch.manual_seed(1)
    x = torch.randn(9, 5)
    seed = Jet.seed(x, second, directions=_directions(kind, 9, 5))
    closed = factor.jet(seed)
    general = Jet.of_function(lambda y: factor(y), seed)  # a plain function: torch.func's path
    for name in ("value", "jac", "sec"):
        a, b = getattr(closed, name), getattr(general, name)
        assert a.shape == b.shape and close(a, b, rtol=1e-14), name
    assert close(factor(x), 1 - (x - torch.tensor(center)).square().sum(dim=1, keepdim=True) / radius**2)
    on_sphere = torch.tensor(center) + radius * nn.functional.normalize(torch.randn(20, 5), dim=1)
    assert factor(on_sphere).abs().max().item() < 1e-14
    with pytest.raises(ConfigError, match="radius"):
        VanishingOnBall(center, 0.0)


@pytest.mark.parametrize("second", ["laplacian", "diagonal", "hessian"])
@pytest.mark.parametrize("kind", ["axes", "shared", "per_point"])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_box_factor_derivatives_in_closed_form(second, kind, dim):
    """Exact along the axes, also on the faces (where a factor is zero, so that the product of
    the others cannot be had by division); along random directions the first derivatives are
    exact and the Laplacian's estimate is the Laplacian; torch.func takes the rest."""
    from pinn.jet import Jet
    from pinn.pdes.base import VanishingOnBox, vanishing_on_box

    lo, hi = torch.tensor([-1.0, 0.0, 0.5, -2.0, 0.1][:dim]), torch.tensor([1.0, 1.0, 2.0, 3.0, 0.7][:dim])
    factor = VanishingOnBox(lo, hi)
    torch.manual_seed(1)
    x = lo + (hi - lo) * torch.rand(9, dim)
    x[0], x[1, 0], x[2] = lo, hi[0], hi  # two corners and a face
    seed = Jet.seed(x, second, directions=_directions(kind, 9, dim))
    closed = factor.jet(seed)
    general = Jet.of_function(lambda y: factor(y), seed)  # a plain function: torch.func's path
    assert (closed is None) == (second == "hessian" or second == "diagonal" and kind != "axes")
    assert torch.equal(Jet.of_function(factor, seed).sec, (closed or general).sec)
    if closed is None:
        return
    exact = Jet.of_function(lambda y: factor(y), Jet.seed(x, second))  # along the axes
    assert torch.equal(closed.value, factor(x)) and closed.jac.shape == general.jac.shape
    assert close(closed.jac, general.jac, rtol=1e-14)
    assert close(closed.sec, general.sec if kind == "axes" else exact.sec, rtol=1e-14)
    assert close(factor(x), vanishing_on_box(x, lo, hi), rtol=1e-15) and factor(x)[[0, 1, 2]].abs().max() == 0
    with pytest.raises(ConfigError, match="lo < hi"):
        VanishingOnBox([0.0, 1.0], [1.0, 1.0])


@pytest.mark.parametrize("second", ["laplacian", "diagonal", "hessian"])
def test_zero_values_have_zero_derivatives_in_closed_form(second):
    from pinn.jet import Jet
    from pinn.pdes.base import ZeroValues

    zero = ZeroValues(2)
    seed = Jet.seed(torch.randn(5, 3), second, directions=torch.randn(4, 3))
    closed, general = zero.jet(seed), Jet.of_function(lambda y: zero(y), seed)
    for name in ("value", "jac", "sec"):
        a, b = getattr(closed, name), getattr(general, name)
        assert a.shape == b.shape and not a.any() and not b.any(), name


def test_jet_of_function_takes_a_closed_form_where_a_function_gives_one():
    from pinn.jet import Jet

    class Known:
        def __call__(self, x):
            raise AssertionError("of_function differentiated the function instead of asking for its jet")

        def jet(self, seed):
            return "its own jet"

    assert Jet.of_function(Known(), Jet.seed(torch.randn(3, 2))) == "its own jet"


@pytest.mark.parametrize("pde, gram", [(Poisson(dim=2), False), (Burgers(), False), (Poisson(dim=2), True),
                                       (PoissonBall(dim=2), True)],
                         ids=["laplacian", "diagonal", "gram", "gram-hard-constraint"])
def test_compiled_loss_matches_eager(pde, gram, tmp_path):
    losses = []
    for compile in (False, True):
        torch.manual_seed(0)
        metrics = Trainer(max_steps=3, eval_every=3, n_test=50, progress=False, compile=compile).fit(
            pde=pde, model=pde.constrain(MLP(2, 1, width=8, depth=1)), engine=ForwardEngine(gram=gram),
            sampler=SobolSampler(n_interior=32, n_boundary=8), optimizer=Adam(lr=1e-2),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path / str(compile), dtype=torch.float64)
        losses.append(metrics["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-10)


def test_a_compiled_loss_takes_loss_weights_updated_from_gradients(tmp_path):
    # The weights are re-estimated from each term's gradient, one backward pass per term over a
    # loss evaluation that keeps its graph; a compiled backward function may donate its buffers
    # to the first pass and refuse the next. Updated at steps 0 and 2 of 3 here.
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        balance = LossBalance(weighting="grad_norm", update_every=2)
        metrics = Trainer(max_steps=3, eval_every=3, n_test=50, progress=False, compile=compile).fit(
            pde=Poisson(dim=2), model=MLP(2, 1, width=8, depth=1), engine=ForwardEngine(),
            sampler=SobolSampler(n_interior=32, n_boundary=8), optimizer=Adam(lr=1e-2),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path / str(compile), dtype=torch.float64,
            balance=balance)
        results.append((metrics["loss"], balance.term_weights.clone()))
    (eager_loss, eager_weights), (compiled_loss, compiled_weights) = results
    assert not torch.equal(eager_weights, torch.ones_like(eager_weights)), "the weights were updated"
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-10)
    torch.testing.assert_close(compiled_weights, eager_weights, rtol=1e-10, atol=0)


@pytest.mark.skipif(torch.__version__ < "2.9", reason="the Dynamo of PyTorch 2.4.1 breaks these losses into "
                    "several graphs (3 to 9 breaks); 2.9.1 and later trace each whole")
@pytest.mark.parametrize("one_pass", [False, True], ids=["separate", "one-pass"])
@pytest.mark.parametrize("pde, gram", [(Poisson(dim=2), False), (Burgers(), False), (Cavity(), False),
                                       (Poisson(dim=20), "auto")], ids=["poisson", "burgers", "cavity", "gram"])
def test_forward_engine_losses_compile_into_one_graph(pde, gram, one_pass):
    # Residuals multiply a Jet by tensors (Burgers' u u_x, the Navier-Stokes convection terms):
    # torch.compile must trace them, not break the loss into pieces run one by one.
    torch.manual_seed(0)
    points = SobolSampler(n_interior=16, n_boundary=8, n_initial=8).sample(
        pde.domain, torch.Generator().manual_seed(0), pde.point_sets)
    model = MLP(points["interior"].shape[1], pde.n_outputs, width=8, depth=2)
    engine = ForwardEngine(gram=gram, one_pass=one_pass)
    engine.check_pde(pde)
    explained = torch._dynamo.explain(Trainer().losses)(pde, model, engine, points)
    torch._dynamo.reset()
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]


def test_torch_functions_see_a_jet_as_its_value():
    x, u = ForwardEngine().evaluate(MLP(2, 1, width=8, depth=1), torch.randn(5, 2))
    t = torch.randn(5, 1)
    assert torch.equal(t * u, t * u.value) and torch.equal(u * t, u.value * t)
    assert torch.equal(torch.sin(u), torch.sin(u.value))
    assert torch.equal(torch.cat([u, t], dim=1), torch.cat([u.value, t], dim=1))


def test_compile_with_autograd_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="trainer.compile=true needs derivatives=forward"):
        Trainer(max_steps=1, progress=False, compile=True).fit(
            pde=Poisson(dim=2), model=MLP(2, 1, width=8, depth=1), engine=AutogradEngine(),
            sampler=SobolSampler(n_interior=8, n_boundary=4), optimizer=Adam(),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path)


@pytest.mark.parametrize("second", ["laplacian", "diagonal"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS) + ["softplus_linear_region"])
def test_fused_activation_step_gradients(activation, second):
    # The hand-written backward (with each activation's third derivative) against finite differences.
    from pinn.jet import RULES, _Activate

    module = nn.Softplus(beta=2.0, threshold=1.0) if activation == "softplus_linear_region" else ACTIVATIONS[activation]()
    rule = RULES[type(module)]
    summed = second == "laplacian"
    torch.manual_seed(0)
    h = torch.randn(5, 4, requires_grad=True)
    jac = torch.randn(5, 3, 4, requires_grad=True)
    sec = torch.randn(5, 4, requires_grad=True) if summed else torch.randn(5, 3, 4, requires_grad=True)
    step = lambda h, j, s: _Activate.apply(h, j, s, module, rule, summed)  # noqa: E731
    assert torch.autograd.gradcheck(step, (h, jac, sec))
    # The first layer's step: second derivatives known to be zero (None), directions shared by
    # every point (jac broadcast along the points, so its squares are taken once).
    shared = torch.randn(3, 4, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, j: step(h, j.expand(5, -1, -1), None), (h, shared))
    # Outputs the loss does not reach get no gradient (None, not zeros): every subset of one
    # step's outputs, with and without known-zero second derivatives and shared directions.
    # Which terms are skipped does not depend on the activation: one is enough.
    if activation != "tanh":
        return

    def some_outputs(used, shared_directions, zero_second):
        def f(h, j, s):
            out = step(h, j.expand(5, -1, -1) if shared_directions else j, None if zero_second else s)
            return [out[i] for i in used]
        return f

    for used in ([0], [1], [2], [0, 1], [0, 2], [1, 2]):
        for shared_directions in (False, True):
            for zero_second in (False, True):
                inputs = (h, shared if shared_directions else jac, sec)
                assert torch.autograd.gradcheck(some_outputs(used, shared_directions, zero_second), inputs)


@pytest.mark.parametrize("second", ["laplacian", "diagonal"])
@pytest.mark.parametrize("reads", [("value",), ("grad",), ("second",), ("value", "second"), ("grad", "second")])
def test_parameter_gradients_when_the_loss_reads_some_derivatives(reads, second):
    # A residual that reads second derivatives but not the gradient (Poisson) leaves the last
    # layer's first derivatives without a gradient, and one that reads the gradient leaves every
    # second derivative without one; the parameter gradients must still be autograd's.
    torch.manual_seed(0)
    model = MLP(3, 1, width=8, depth=3)
    x = torch.randn(10, 3)
    grads = []
    for engine in (AutogradEngine(), ForwardEngine(second=second)):
        xe, u = engine.evaluate(model, x)
        seconds = (lambda: laplacian(u, xe).sin().sum()) if second == "laplacian" else (
            lambda: (partial(u, xe, 2, 2) * partial(u, xe, 0, 0).cos()).sum())
        parts = {"value": lambda: (u * 1).square().sum(), "grad": lambda: grad(u, xe).square().sum(), "second": seconds}
        model.zero_grad()
        sum(parts[name]() for name in reads).backward()
        # (a loss that does not read the value does not depend on the output's bias: no gradient
        # for it, under either engine)
        grads.append([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        assert close(b, a)


@pytest.mark.parametrize("second, random", [("laplacian", False), ("laplacian", True), ("diagonal", False),
                                            ("hessian", False)])
def test_known_zero_second_derivatives_skip_the_first_layers_product(second, random):
    # The seed's second derivatives are zero: propagating them as a known zero must give what
    # propagating a tensor of zeros gives, and skip the first layer's product with them,
    # forward (N x d by d x width) and backward (the same again, for the weight's gradient).
    from torch.utils.flop_counter import FlopCounterMode

    from pinn.jet import Jet, propagate

    torch.manual_seed(0)
    n, d, width = 64, 5, 16
    model = MLP(d, 1, width=width, depth=2)
    x = torch.randn(n, d)
    v = torch.randn(3, d) if random else None  # the stochastic engine's directions, shared by every point
    results, flops = [], []
    for known in (True, False):
        seed = Jet.seed(x, second, directions=v)
        assert seed.zero_second and seed.sec.untyped_storage().nbytes() == x.element_size()  # one scalar
        if not known:
            seed = Jet(seed.value, seed.jac, second, seed.sec.contiguous(), exact=seed.exact)
        model.zero_grad()
        with FlopCounterMode(display=False) as counter:
            out = propagate(model, seed)
            loss = (out.value.square().sum() + out.jac.square().sum() + out.operator("laplacian").square().sum())
            loss.backward()
        results.append([out.value, out.jac, out.sec] + [p.grad.clone() for p in model.parameters()])
        flops.append(counter.get_total_flops())
    for a, b in zip(*results):
        assert close(a, b)
    k = d if v is None else v.shape[0]
    carried = {"laplacian": 1, "diagonal": k, "hessian": k * k}[second]
    assert flops[1] - flops[0] == 2 * (2 * n * carried * d * width)


def test_the_output_layer_makes_only_what_the_residual_reads():
    # The output layer maps the value and each derivative by its weight when first read: a
    # residual reading the Laplacian alone skips the value's and the first derivatives' products.
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    n, d, width = 64, 5, 16
    model, x = MLP(d, 1, width=width, depth=2), torch.randn(n, d)
    flops = {}
    for reads in ("laplacian", "laplacian+value", "laplacian+value+gradient"):
        with FlopCounterMode(display=False) as counter:
            xe, u = ForwardEngine().evaluate(model, x)
            lap = laplacian(u, xe)
            if "value" in reads:
                value = u.value
            if "gradient" in reads:
                gradient = grad(u, xe)
        flops[reads] = counter.get_total_flops()
    assert flops["laplacian+value"] - flops["laplacian"] == 2 * n * width
    assert flops["laplacian+value+gradient"] - flops["laplacian+value"] == 2 * n * d * width
    xa, ua = AutogradEngine().evaluate(model, x)
    assert close(lap, laplacian(ua, xa)) and close(value, ua) and close(gradient, grad(ua, xa))


def test_a_product_read_under_no_grad_keeps_the_gradient_it_was_asked_for_with():
    model, x = MLP(3, 1, width=8, depth=2), torch.randn(10, 3)
    xe, u = ForwardEngine().evaluate(model, x)
    with torch.no_grad():
        u.jac, u.operator("laplacian")  # made here first
    assert u.jac.requires_grad and u.value.requires_grad and u.sec.requires_grad
    with torch.no_grad():
        _, v = ForwardEngine().evaluate(model, x)
    assert not v.jac.requires_grad  # asked for without gradients: none
    xe, w = ForwardEngine().evaluate(model, x)
    with torch.inference_mode():
        w.operator("laplacian")  # made here first: not as an inference tensor
    assert w.sec.requires_grad and not w.sec.is_inference()
    laplacian(w, xe).sum().backward()


def test_the_seed_shares_one_identity_made_outside_inference_mode():
    from pinn.jet import Jet

    x = torch.randn(4, 13)  # a size no other test seeds first
    with torch.inference_mode():
        first = Jet.seed(x.clone()).jac
    second = Jet.seed(x).jac
    assert second.data_ptr() == first.data_ptr() and torch.equal(second[0], torch.eye(13))
    model = MLP(13, 1, width=4, depth=1)
    xe, u = ForwardEngine().evaluate(model, x)
    laplacian(u, xe).sum().backward()  # an inference tensor could not be saved for this
    assert model.net[0].weight.grad is not None


def test_a_network_without_activation_gives_writable_zero_second_derivatives():
    # Nothing turns the seed's shared zero into a tensor of its own: operators must still hand
    # out ordinary tensors, which a residual may modify in place.
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    for second in ("laplacian", "diagonal", "hessian"):
        x, u = ForwardEngine(second=second).evaluate(model, torch.randn(6, 3))
        derivatives = [laplacian(u, x)]
        if second != "laplacian":
            derivatives.append(partial(u[:, 1:], x, 2, 2))
        if second == "hessian":
            derivatives += [hessian(u[:, :1], x), partial(u[:, 1:], x, 0, 2)]
        for derivative in derivatives:
            assert torch.equal(derivative.mul_(2), torch.zeros_like(derivative))


# ---------------------------------------------------------------- Laplacians from Gram matrices


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("d, depth", [(1, 1), (3, 2), (7, 3), (40, 4)])
def test_gram_laplacian_agrees_with_the_other_engines(activation, d, depth):
    from pinn.jet import GramLaplacian

    torch.manual_seed(0)
    for model in (MLP(d, 2, width=9, depth=depth, activation=activation),
                  MLP(d, 2, width=9, depth=depth, activation=activation, factorize=True)):
        x = 2 * torch.randn(30, d)
        xg, ug = ForwardEngine(gram=True).evaluate(model, x)
        xf, uf = ForwardEngine(gram=False).evaluate(model, x)
        xa, ua = AutogradEngine().evaluate(model, x)
        assert isinstance(ug, GramLaplacian) and not isinstance(uf, GramLaplacian)
        assert torch.equal(ug.value, uf.value)
        assert close(laplacian(ug, xg), laplacian(uf, xf)) and close(laplacian(ug, xg), laplacian(ua, xa))
        assert close(laplacian(ug[:, 1:], xg), laplacian(ua[:, 1:], xa))


@pytest.mark.parametrize("make", [lambda: nn.Linear(3, 2), lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh()),
                                  lambda: nn.Sequential(nn.Linear(3, 6), nn.Softplus(beta=2.0, threshold=1.0),
                                                        nn.Linear(6, 1))],
                         ids=["linear", "ends-with-activation", "softplus-linear-region"])
def test_gram_laplacian_of_short_chains(make):
    torch.manual_seed(0)
    model = make()  # in float64 (the fixture applies when the test runs, not when it is collected)
    x = 2 * torch.randn(30, 3)
    xg, ug = ForwardEngine(gram=True).evaluate(model, x)
    xa, ua = AutogradEngine().evaluate(model, x)
    assert torch.equal(ug.value, ua.detach()) and close(laplacian(ug, xg), laplacian(ua, xa))


def test_gram_laplacian_parameter_gradients_are_autograds():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Sequential(nn.Linear(8, 5), nn.SiLU()), nn.Linear(5, 1))
    x = torch.randn(20, 6)
    grads = []
    for engine in (AutogradEngine(), ForwardEngine(gram=True)):
        xe, u = engine.evaluate(model, x)
        model.zero_grad()
        ((laplacian(u, xe) + torch.sin(u)).square().mean() + (u * 1).sum()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        assert close(b, a)


def _transform(kind: str):
    """A hard constraint ``u = b + s N`` on a chain network, for the Gram-matrix tests: the
    constraints of the problem library, and variants of each part (a nonzero base, several
    components of the scale or the network, chains that end in an activation, a single linear
    layer, factorized layers)."""
    from pinn.models import OutputTransform
    from pinn.pdes.base import VanishingOnBall, vanishing_on_box

    if kind in ("ball", "box", "helmholtz"):
        pde = {"ball": lambda: PoissonBall(dim=6), "box": lambda: Poisson(dim=3, hard_constraint=True),
               "helmholtz": lambda: Helmholtz(hard_constraint=True)}[kind]()
        return pde.dim, pde.constrain(MLP(pde.dim, 1, width=7, depth=3, activation="gelu"))
    d = 4
    ball = VanishingOnBall([0.3, -0.2, 0.0, 0.5], 2.0)
    base = lambda x: torch.cat([x[:, :1] ** 3, torch.sin(x[:, 1:2]) * x[:, 2:3]], dim=1)  # noqa: E731
    lo, hi = torch.full((d,), -1.0), torch.full((d,), 1.0)
    two_scales = lambda x: torch.cat([ball(x), vanishing_on_box(x, lo, hi)], dim=1)  # noqa: E731
    net = {"base-two-outputs": lambda: MLP(d, 2, width=6, depth=2, activation="tanh"),
           "two-scales-two-outputs": lambda: MLP(d, 2, width=6, depth=2, activation="silu"),
           "ends-with-activation": lambda: nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, 2), nn.Tanh()),
           "one-linear-layer": lambda: nn.Linear(d, 2),
           "factorized": lambda: MLP(d, 2, width=6, depth=2, activation="sin", factorize=True)}[kind]()
    scale = two_scales if kind.startswith("two-scales") else ball
    return d, OutputTransform(net, base, scale)


@pytest.mark.parametrize("kind", ["ball", "box", "helmholtz", "base-two-outputs", "two-scales-two-outputs",
                                  "ends-with-activation", "one-linear-layer", "factorized"])
def test_gram_laplacian_inside_a_hard_constraint_agrees_with_autograd(kind):
    # Δ(b + sN) = Δb + sΔN + 2∇s·∇N + NΔs, with ∇s·∇N carried along the chain as one more direction.
    from pinn.jet import GramLaplacian

    torch.manual_seed(0)
    d, model = _transform(kind)
    x = torch.rand(40, d) * 1.2 - 0.6
    results = []
    for engine in (AutogradEngine(), ForwardEngine(gram=True)):
        engine.check(model)
        xe, u = engine.evaluate(model, x)
        assert isinstance(u, GramLaplacian) == isinstance(engine, ForwardEngine)
        laps = torch.cat([laplacian(u[:, j : j + 1], xe) for j in range(u.shape[1])], dim=1)
        model.zero_grad()
        (laps + torch.sin(u)).square().mean().backward()
        results.append((u.detach() if isinstance(u, torch.Tensor) else u.value, laps.detach(),
                        [p.grad.clone() for p in model.parameters()]))
    (value_a, lap_a, grads_a), (value_g, lap_g, grads_g) = results
    assert close(value_g, value_a) and close(lap_g, lap_a)
    for a, b in zip(grads_a, grads_g):
        assert close(b, a)


@pytest.mark.parametrize("engine", [AutogradEngine(), ForwardEngine(), ForwardEngine(gram=True),
                                    StochasticEngine(samples=2)], ids=repr)
def test_a_hard_constraint_keeps_the_networks_number_of_outputs(engine):
    # b and s have one component or as many as the network's outputs; more would silently turn
    # a scalar field into a vector one (b or s written with every coordinate, say)
    from pinn.models import OutputTransform

    x = torch.randn(5, 3)
    one = lambda x: torch.ones(x.shape[0], 1)  # noqa: E731
    three = lambda x: x * (1 - x)  # noqa: E731  (N, 3)
    for net, base, scale, what in [(MLP(3, 2, width=4, depth=1), three, one, "base"),
                                   (MLP(3, 2, width=4, depth=1), one, three, "scale"),
                                   (MLP(3, 1, width=4, depth=1), one, three, "scale"),
                                   (MLP(3, 1, width=4, depth=1), three, one, "base")]:
        model = OutputTransform(net, base, scale)
        m = net.net[-1].out_features
        with pytest.raises(ValueError, match=rf"hard constraint's {what} must be a function of the points \(N, d\) -> "
                                             rf"\(N, {m}\); .* returned \(5, 3\), not \(5, {m}\); give it (one|{m}) column"):
            engine.evaluate(model, x)
    # a row for all points is named as given, under every engine (the forward ones expand it)
    with pytest.raises(ValueError, match=r"base must be .* it returned \(1, 3\), not \(5, 1\); give it one column$"):
        engine.evaluate(OutputTransform(MLP(3, 1, width=4, depth=1), lambda x: torch.ones(1, 3), one), x)
    with pytest.raises(ValueError, match=r"the network inside a hard constraint must map points \(N, d\) to \(N, m\)"):
        AutogradEngine().evaluate(OutputTransform(lambda x: x[:, 0], one, one), x)
    for net in (MLP(3, 1, width=4, depth=1), MLP(3, 2, width=4, depth=1)):  # one component for all outputs: fine
        assert engine.evaluate(OutputTransform(net, one, lambda x: x[:, :1]), x)[1].shape == (5, net.net[-1].out_features)


def test_gram_auto_carries_gram_matrices_where_they_are_cheaper():
    from pinn.jet import GramLaplacian

    def carried(pde, model, d, **options):
        engine = ForwardEngine(**options)
        engine.check(model)
        engine.check_pde(pde)
        return type(engine.evaluate(model, torch.randn(4, d))[1])

    width10, width11 = MLP(20, 1, width=10, depth=2), MLP(20, 1, width=11, depth=2)
    assert carried(Poisson(dim=20), width10, 20) is GramLaplacian  # d = 20 >= 2 x 10
    assert carried(Poisson(dim=20), width11, 20) is not GramLaplacian
    assert carried(Poisson(dim=20), width10, 20, gram=False) is not GramLaplacian
    assert carried(Poisson(dim=20), width11, 20, gram=True) is GramLaplacian
    ball = PoissonBall(dim=20)  # inside a hard constraint: the network decides
    assert carried(ball, ball.constrain(width10), 20) is GramLaplacian
    assert carried(ball, ball.constrain(width11), 20) is not GramLaplacian
    heat = Heat()  # reads u_t, and u_xx apart from the other second derivatives
    assert carried(heat, MLP(heat.dim, 1, width=1, depth=2), heat.dim) is not GramLaplacian

    class PoissonWithFlux(Poisson):  # Laplacians only, but its (imagined) conditions read a gradient
        needs_gradient = True

    assert carried(PoissonWithFlux(dim=20), width10, 20) is not GramLaplacian
    with_features = MLP(20, 1, width=4, depth=2, fourier_features=4)  # not a chain of linear layers
    assert carried(Poisson(dim=20), with_features, 20) is not GramLaplacian


def test_gram_is_refused_where_it_cannot_apply():
    from pinn.jet import linear_chain

    with pytest.raises(ConfigError, match="derivatives.gram must be auto, true or false; got 'yes'"):
        ForwardEngine(gram="yes")
    with pytest.raises(ConfigError, match="carries Laplacians only.*derivatives.second=laplacian"):
        ForwardEngine(gram=True, second="diagonal")
    with pytest.raises(ConfigError, match="alternating linear layers.*derivatives.gram=auto or false"):
        ForwardEngine(gram=True).check(MLP(2, 1, width=4, depth=2, fourier_features=4))
    with pytest.raises(ConfigError, match="Burgers also needs exact first derivatives; set derivatives.gram"):
        ForwardEngine(gram=True).check_pde(Burgers())
    assert linear_chain(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))) is None  # two linear layers in a row
    assert linear_chain(nn.Sequential(nn.Tanh(), nn.Linear(2, 1))) is None
    assert linear_chain(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))) is None
    assert linear_chain(nn.Sequential(nn.Linear(2, 3), nn.SiLU(inplace=True), nn.Linear(3, 1))) is None
    hooked = MLP(2, 1, width=4, depth=2)
    hooked.net[1].register_forward_hook(lambda module, inputs, output: 2 * output)
    assert linear_chain(hooked) is None and linear_chain(MLP(2, 1, width=4, depth=2)) is not None
    for flag in (0, 1, "true"):  # YAML's true and false arrive as booleans; numbers and strings are refused
        with pytest.raises(ConfigError, match="derivatives.gram must be auto, true or false"):
            ForwardEngine(gram=flag)
    with pytest.raises(ConfigError, match="alternating linear layers"):  # also where check() was not called
        ForwardEngine(gram=True).evaluate(MLP(2, 1, width=4, depth=2, fourier_features=4), torch.randn(3, 2))
    # A Gram field gives its Laplacian only; asking for more names the setting.
    x, u = ForwardEngine(gram=True).evaluate(MLP(3, 3, width=4, depth=2), torch.randn(5, 3))
    for read in (lambda: grad(u[:, :1], x), lambda: hessian(u[:, :1], x), lambda: partial(u[:, :1], x, 0),
                 lambda: partial(u[:, :1], x, 1, 1), lambda: jacobian(u, x), lambda: div(u, x), lambda: curl(u, x)):
        with pytest.raises(ConfigError, match="computed this field's Laplacian from Gram matrices.*derivatives.gram=false"):
            read()
    # ... all of it: second derivatives per coordinate, or mixed ones, need a mode of their own too
    for read, needs in ((lambda: partial(u[:, :1], x, 1, 1), "derivatives.second=diagonal.*second_order = 'diagonal'"),
                        (lambda: partial(u[:, :1], x, 0, 1), "derivatives.second=hessian.*second_order = 'hessian'"),
                        (lambda: hessian(u[:, :1], x), "derivatives.second=hessian"),
                        (lambda: grad(u[:, :1], x), r"gram=false \(and.*needs_gradient = True")):
        with pytest.raises(ConfigError, match=needs):
            read()
    # A layer that no mode can propagate is named as such, not as a network that is not a chain
    with pytest.raises(ConfigError, match=r"cannot propagate layer '1' \(ReLU\)"):
        ForwardEngine(gram=True).evaluate(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)), torch.randn(5, 3))


def test_gram_matrices_follow_a_layer_replaced_after_the_first_evaluation():
    torch.manual_seed(0)
    model, x, engine = MLP(2, 1, width=8, depth=2), torch.randn(4, 2), ForwardEngine(gram=True)
    engine.evaluate(model, x)
    model.net[1], model.net[4] = nn.Sigmoid(), nn.Linear(8, 1)
    (xa, ua), (xg, ug) = AutogradEngine().evaluate(model, x), engine.evaluate(model, x)
    assert close(ug.value, ua) and close(laplacian(ug, xg), laplacian(ua, xa))


def test_training_with_gram_matrices_says_so_and_matches_first_derivatives(tmp_path, caplog):
    losses = []
    for gram in ("auto", False):
        torch.manual_seed(0)
        with caplog.at_level("INFO", logger="pinn"):
            caplog.clear()
            metrics = Trainer(max_steps=3, eval_every=3, n_test=50, progress=False).fit(
                pde=Poisson(dim=20), model=MLP(20, 1, width=8, depth=2), engine=ForwardEngine(gram=gram),
                sampler=SobolSampler(n_interior=32, n_boundary=8), optimizer=Adam(lr=1e-2),
                generator=torch.Generator().manual_seed(0), run_dir=tmp_path / str(gram), dtype=torch.float64)
        assert ("Laplacians from Gram matrices (derivatives.gram=auto, d = 20)" in caplog.text) == (gram == "auto")
        losses.append(metrics["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-10)


# ---------------------------------------------------------------------- one pass for all point sets

ONE_PASS_PDES = {
    "poisson": Poisson, "poisson-hard": lambda: Poisson(hard_constraint=True),
    "ball": lambda: PoissonBall(dim=3, hard_constraint=False), "ball-hard": lambda: PoissonBall(dim=3),
    "lshape": lambda: PoissonLShape(grid=16), "poisson-inverse": PoissonInverse, "helmholtz": Helmholtz,
    "heat": Heat, "heat-inverse": HeatInverse, "wave": Wave, "burgers": Burgers,
    "allen-cahn": lambda: AllenCahn(hard_constraint=False), "cavity": Cavity, "kovasznay": Kovasznay,
}


def _loss_and_gradients(pde, model, engine, points):
    for p in [*model.parameters(), *pde.parameters()]:
        p.grad = None
    total, terms = Trainer().losses(pde, model, engine, points)
    total.backward()
    return terms, [p.grad for p in [*model.parameters(), *pde.parameters()]]


@pytest.fixture
def stack():
    with contextlib.ExitStack() as contexts:
        yield contexts


@contextlib.contextmanager
def plain_calls():
    """Meanwhile, the rows of each plain call of an MLP (not through an engine, which does not
    call ``forward``), counted by the class's own forward: the engines refuse a hook."""
    calls, forward = [], MLP.forward

    def counted(self, x):
        calls.append(x.shape[0])
        return forward(self, x)

    with mock.patch.object(MLP, "forward", counted):
        yield calls


@pytest.mark.parametrize("name", ONE_PASS_PDES)
@pytest.mark.parametrize("engine", ["forward", "stochastic"])
def test_one_pass_gives_every_pde_the_same_losses_and_gradients(name, engine, stack):
    """derivatives.one_pass: the network evaluated once at all point sets stacked gives every
    term and every gradient of the separate evaluations, to round-off, and leaves no sampled set
    to a pass of its own (the inverse problems' observations and Allen–Cahn's periodic faces are
    points of their own, evaluated as before)."""
    pde = ONE_PASS_PDES[name]()
    if engine == "stochastic" and (pde.second_order not in ("none", "laplacian") or pde.needs_gradient):
        pytest.skip("the stochastic engine refuses this PDE")
    sizes = {"interior": 40, "boundary": 24, "initial": 16}
    points = SobolSampler(**{f"n_{k}": v for k, v in sizes.items()}).sample(
        pde.domain, torch.Generator().manual_seed(0), pde.point_sets)
    torch.manual_seed(0)
    model = pde.constrain(MLP(pde.dim, pde.n_outputs, width=8, depth=2))
    results = []
    plain = stack.enter_context(plain_calls())  # rows of each plain evaluation of the network (not through the engine)
    for one_pass in (False, True):
        derivatives = make_engine(engine, one_pass=one_pass, samples=4)
        derivatives.check_pde(pde)
        assert isinstance(derivatives.shared(model, points), OnePass) == (one_pass and len(points) > 1)
        plain.clear()
        torch.manual_seed(1)  # the stochastic engine's directions: one draw for the interior either way
        results.append(_loss_and_gradients(pde, model, derivatives, points))
        if one_pass:
            assert not set(plain) & set(sizes.values()), plain
    (terms, grads), (one_terms, one_grads) = results
    assert one_terms.keys() == terms.keys()
    for key in terms:
        assert close(one_terms[key], terms[key], rtol=1e-13), key
    for g, h in zip(grads, one_grads):
        assert (g is None) == (h is None) and (g is None or close(h, g, rtol=1e-12))


def test_one_pass_evaluates_points_of_their_own_as_before(stack):
    """Only the sets themselves come from the stacked pass: a copy of a set, points derived from
    one and points that require gradients are evaluated by the network itself; the rows of a set
    are a carrier at the points returned with it, which the operators check."""
    torch.manual_seed(0)
    model = MLP(2, 1, width=8, depth=2)
    points = {"interior": torch.rand(6, 2), "boundary": torch.rand(4, 2)}
    engine = ForwardEngine(one_pass=True)
    exact = laplacian(*reversed(AutogradEngine().evaluate(model, points["interior"])))
    calls = stack.enter_context(plain_calls())
    shared = engine.shared(model, points)
    x, u = engine.evaluate(shared, points["interior"])
    assert calls == [] and u.points is x and close(laplacian(u, x), exact)
    assert shared.field.value.shape == (10, 1)  # both sets, in one evaluation
    assert torch.equal(shared(points["boundary"]), shared.field.value[6:]) and calls == []
    copy = points["boundary"].clone()
    assert close(shared(copy), model(copy)) and calls == [4, 4]
    leaf = points["boundary"].detach().requires_grad_(True)
    assert shared(leaf).grad_fn is not None and calls[-1] == 4 and len(calls) == 3
    x_other, u_other = engine.evaluate(shared, copy)  # a pass of its own, at its own points
    assert u_other.points is x_other and close(u_other.value, model(copy))
    with pytest.raises(ValueError, match="other points than x"):
        laplacian(u, torch.rand(6, 2))
    assert shared.modules is not None and list(shared.parameters()) == list(model.parameters())


def test_one_pass_setting_and_where_auto_applies():
    assert not one_pass_applies("auto", torch.device("cpu"), 100)  # arithmetic-bound: separate passes
    assert one_pass_applies("auto", torch.device("cuda"), derivatives.ONE_PASS_POINTS)
    assert not one_pass_applies("auto", torch.device("cuda"), derivatives.ONE_PASS_POINTS + 1)
    assert not one_pass_applies("auto", torch.device("cuda"), 100, gram=True)
    assert one_pass_applies(True, torch.device("cpu"), 10**6, gram=True) and not one_pass_applies(False, torch.device(
        "cuda"), 100)
    model = MLP(2, 1, width=4, depth=1)
    points = {"interior": torch.rand(6, 2), "boundary": torch.rand(4, 2)}
    assert ForwardEngine().shared(model, points) is model  # auto, on the CPU
    assert AutogradEngine().shared(model, points) is model
    assert ForwardEngine(one_pass=True).shared(model, {"interior": points["interior"]}) is model  # one set
    shared = StochasticEngine(one_pass=True).shared(model, points)
    assert isinstance(shared, OnePass) and StochasticEngine(one_pass=True).shared(shared, points) is shared
    for bad in ("yes", 1, None):
        with pytest.raises(ConfigError, match="derivatives.one_pass must be auto, true or false"):
            ForwardEngine(one_pass=bad)
    with pytest.raises(ConfigError, match="derivatives.one_pass=true evaluates the point sets together under the "
                                          "forward and stochastic engines"):
        make_engine("autograd", one_pass=True)
    assert "one_pass=True" in repr(ForwardEngine(one_pass=True)) and "one_pass" not in repr(StochasticEngine())


def test_one_pass_unbiased_loss_draws_two_independent_estimates():
    """Each evaluation of the residuals gets a pass of its own, with its own directions: the
    unbiased loss takes the same two draws as with separate passes."""
    pde = Poisson(dim=4)
    torch.manual_seed(0)
    model = MLP(4, 1, width=8, depth=2)
    points = SobolSampler(n_interior=16, n_boundary=8).sample(pde.domain, torch.Generator().manual_seed(0),
                                                              pde.point_sets)
    losses = []
    for one_pass in (False, True):
        torch.manual_seed(1)
        losses.append(Trainer().losses(pde, model, StochasticEngine(samples=2, unbiased=True, one_pass=one_pass),
                                       points)[1]["pde"])
    assert close(losses[1], losses[0], rtol=1e-13)


@pytest.mark.parametrize("one_pass", [False, True])
def test_training_says_when_it_evaluates_the_point_sets_in_one_pass(one_pass, tmp_path, caplog):
    pde = Poisson(dim=2)
    torch.manual_seed(0)
    with caplog.at_level("INFO", logger="pinn"):
        Trainer(max_steps=2, eval_every=2, n_test=20, progress=False).fit(
            pde=pde, model=MLP(2, 1, width=8, depth=1), engine=ForwardEngine(one_pass=one_pass),
            sampler=SobolSampler(n_interior=32, n_boundary=8), optimizer=Adam(lr=1e-2),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64)
    said = [r.getMessage() for r in caplog.records if "evaluated together" in r.getMessage()]
    assert said == (["derivatives: the points of interior, boundary are evaluated together, in one pass per "
                     "evaluation of the residuals (derivatives.one_pass=true, 40 points)"] if one_pass else [])


def test_one_pass_keeps_its_gradients_when_a_residual_reads_a_set_without_them_first():
    """The stacked pass runs in the loss evaluation's grad mode, not in the first reader's."""

    class Scaled(Poisson):
        def residuals(self, model, points, engine):
            with torch.no_grad():  # a side computation, first to read the boundary
                scale = 1 + model(points["boundary"]).abs().mean()
            return {name: scale * r for name, r in super().residuals(model, points, engine).items()}

    pde = Scaled(dim=2)
    torch.manual_seed(0)
    model = MLP(2, 1, width=8, depth=2)
    points = SobolSampler(n_interior=16, n_boundary=8).sample(pde.domain, torch.Generator().manual_seed(0),
                                                              pde.point_sets)
    (terms, grads), (one_terms, one_grads) = (_loss_and_gradients(pde, model, ForwardEngine(one_pass=one_pass), points)
                                              for one_pass in (False, True))
    assert all(close(one_terms[k], terms[k], rtol=1e-13) for k in terms)
    assert all(close(h, g, rtol=1e-12) for g, h in zip(grads, one_grads))


def test_one_pass_draws_again_for_a_second_estimate_of_a_set():
    """Under the stochastic engine a set asked for twice gets two independent estimates, as
    without one pass; values alone (no directions in them) come from the stacked pass."""
    torch.manual_seed(0)
    model = MLP(8, 1, width=8, depth=2)
    points = {"interior": torch.rand(16, 8), "boundary": torch.rand(8, 8)}
    engine = StochasticEngine(samples=4, one_pass=True)
    shared = engine.shared(model, points)
    x1, u1 = engine.evaluate(shared, points["interior"])
    x2, u2 = engine.evaluate(shared, points["interior"])
    assert u1.value.data_ptr() == shared.field.value.data_ptr()  # the stacked pass's rows
    assert close(u2.value, u1.value) and not torch.equal(laplacian(u1, x1), laplacian(u2, x2))
    assert torch.equal(engine.evaluate(shared, points["boundary"])[1].value, shared.field.value[16:])
    exact = ForwardEngine(one_pass=True)
    shared = exact.shared(model, points)
    first, again = exact.evaluate(shared, points["interior"])[1], exact.evaluate(shared, points["interior"])[1]
    assert again.value.data_ptr() == first.value.data_ptr()  # exact derivatives: the same rows, no second pass


def test_one_pass_stacks_only_the_sets_a_pde_reads_whole():
    """Allen–Cahn's periodic condition reads faces taken from the boundary points, never the
    boundary set itself: one pass stacks the interior and initial points only."""
    from pinn.trainer import one_pass_points

    pde = AllenCahn(hard_constraint=False)
    points = SobolSampler(n_interior=40, n_boundary=24, n_initial=16).sample(
        pde.domain, torch.Generator().manual_seed(0), pde.point_sets)
    assert list(one_pass_points(pde, points)) == ["interior", "initial"]
    assert list(one_pass_points(Poisson(), points)) == list(points)
    torch.manual_seed(0)
    model = MLP(2, 1, width=8, depth=2)
    engine = ForwardEngine(one_pass=True)
    engine.check_pde(pde)
    rows = []  # of each pass through the engine
    original = derivatives.propagate
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(derivatives, "propagate", lambda m, jet, triton=False: (rows.append(len(jet.value)),
                                                                             original(m, jet, triton=triton))[1])
        Trainer().losses(pde, model, engine, points)
    assert rows[0] == 40 + 16 and len(rows) == 2, rows  # then the periodic condition's faces, a pass of their own


def test_one_pass_sets_outside_the_point_sets_are_refused(tmp_path):
    class Misnamed(Poisson):
        one_pass_sets = ("interior", "boundry")

    with pytest.raises(ConfigError, match=r"Misnamed.one_pass_sets names \['boundry'\], which are not among its "
                                          r"point sets \('interior', 'boundary'\)"):
        Trainer(max_steps=1, progress=False).fit(
            pde=Misnamed(), model=MLP(2, 1, width=4, depth=1), engine=ForwardEngine(),
            sampler=SobolSampler(n_interior=8, n_boundary=4), optimizer=Adam(lr=1e-2),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path)
    assert not any(tmp_path.iterdir())
    hard = AllenCahn(hard_constraint=True)
    assert set(hard.one_pass_sets) <= set(hard.point_sets)

    class Bare(Poisson):
        one_pass_sets = ("interior")  # a string, not a tuple

    with pytest.raises(ConfigError, match=r"Bare.one_pass_sets must be a tuple of point set names, such as "
                                          r"\('interior',\) \(mind the comma\); got 'interior'"):
        Trainer(max_steps=1, progress=False).fit(
            pde=Bare(), model=MLP(2, 1, width=4, depth=1), engine=ForwardEngine(),
            sampler=SobolSampler(n_interior=8, n_boundary=4), optimizer=Adam(lr=1e-2),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path / "bare")
    assert not any(tmp_path.iterdir())


def test_each_compiled_run_starts_from_a_fresh_compiler(tmp_path, monkeypatch):
    # A sweep runs its jobs in one process: without a reset, the graphs compiled for earlier jobs
    # count against torch's recompile limit (8), after which the loss silently runs uncompiled.
    calls = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: calls.append("reset"))
    monkeypatch.setattr(torch, "compile", lambda fn: calls.append("compile") or fn)  # the wiring only: no compiling
    for run in range(2):
        Trainer(max_steps=1, eval_every=1, n_test=50, progress=False, compile=True).fit(
            pde=Poisson(dim=2), model=MLP(2, 1, width=8, depth=1), engine=ForwardEngine(),
            sampler=SobolSampler(n_interior=32, n_boundary=8), optimizer=Adam(),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path / str(run))
    assert calls == ["reset", "compile"] * 2
