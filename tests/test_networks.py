"""Fourier features, modified MLP, random weight factorization and periodic embeddings: what
each computes, and that every derivative engine gives the same derivatives of it."""

import math

import pytest
import torch
from torch import nn

from pinn.derivatives import AutogradEngine, ForwardEngine, StochasticEngine
from pinn.errors import ConfigError
from pinn.jet import Jet, check_supported, propagate
from pinn.models import ACTIVATIONS, MLP, FactorizedLinear, FourierFeatures, ModifiedMLP, PeriodicEmbedding
from pinn.operators import grad, hessian, jacobian, laplacian, partial
from pinn.optim import Adam
from pinn.pdes import Poisson
from pinn.sampling import SobolSampler
from pinn.trainer import Trainer

pytestmark = pytest.mark.usefixtures("float64")  # every tensor here is float64 unless a test says otherwise

#: One network per new building block, and one with all of them at once.
NETWORKS = {
    "fourier": lambda d, m, act: MLP(d, m, width=12, depth=2, activation=act, fourier_features=8, fourier_sigma=1.5),
    "modified": lambda d, m, act: ModifiedMLP(d, m, width=12, depth=2, activation=act),
    "rwf": lambda d, m, act: MLP(d, m, width=12, depth=2, activation=act, factorize=True),
    "periodic": lambda d, m, act: MLP(d, m, width=12, depth=2, activation=act, periods={0: 2.0}),
    "all": lambda d, m, act: ModifiedMLP(d, m, width=12, depth=2, activation=act, periods=[None, 1.5, None][:d],
                                         fourier_features=6, factorize=True),
}


def close(a, b, rtol=1e-12):
    return (a - b).abs().max().item() <= rtol * (1 + b.abs().max().item())


@pytest.mark.parametrize("network", NETWORKS)
def test_shapes_and_pointwise(network):
    model = NETWORKS[network](3, 2, "tanh")
    x = torch.randn(7, 3)
    u = model(x)
    assert u.shape == (7, 2)
    assert torch.allclose(torch.cat([model(x[i : i + 1]) for i in range(7)]), u, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        model(torch.randn(4, 2))


# --------------------------------------------------------------------------- engines agree


@pytest.mark.parametrize("network,activation", [(network, activation) for network in NETWORKS for activation in ("tanh", "sin")]
                         + [("all", activation) for activation in ACTIVATIONS if activation not in ("tanh", "sin")])
@pytest.mark.parametrize("second", ["laplacian", "diagonal", "hessian"])
def test_forward_engine_agrees_with_autograd(network, activation, second):
    torch.manual_seed(0)
    model = NETWORKS[network](3, 2, activation)
    x = 2 * torch.randn(30, 3)
    xa, ua = AutogradEngine().evaluate(model, x)
    xf, uf = ForwardEngine(second=second).evaluate(model, x)
    assert torch.equal(uf.value, ua.detach())  # the same operations in the same order
    assert close(laplacian(uf, xf), laplacian(ua, xa))
    assert close(jacobian(uf, xf), jacobian(ua, xa))
    assert close(grad(uf[:, 1:2], xf), grad(ua[:, 1:2], xa))
    assert close(partial(uf[:, :1], xf, 2), partial(ua[:, :1], xa, 2))
    if second != "laplacian":
        for i in range(3):
            assert close(partial(uf[:, :1], xf, i, i), partial(ua[:, :1], xa, i, i))
    if second == "hessian":
        assert close(hessian(uf[:, :1], xf), hessian(ua[:, :1], xa))
        assert close(hessian(uf[:, 1:], xf), hessian(ua[:, 1:], xa))
        assert close(partial(uf[:, 1:], xf, 0, 2), partial(ua[:, 1:], xa, 0, 2))


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-point"])
def test_jets_along_arbitrary_directions(network, shared):
    # The stochastic engine's jets: derivatives along directions v_k that are not the axes,
    # shared by every point ((K, d), broadcast with stride 0) or one set per point ((N, K, d)).
    torch.manual_seed(1)
    model = NETWORKS[network](3, 1, "tanh")
    x = torch.randn(12, 3)
    xa = x.clone().requires_grad_(True)
    ua = model(xa)
    g, h = grad(ua, xa), hessian(ua, xa)  # (N, d), (N, d, d)
    directions = torch.randn(4, 3) if shared else torch.randn(12, 4, 3)
    v = directions.expand(12, 4, 3)
    for second in ("laplacian", "diagonal", "hessian"):
        jet = propagate(model, Jet.seed(x, second, directions=directions))
        assert close(jet.jac[..., 0], torch.einsum("nkd,nd->nk", v, g))
        vhv = torch.einsum("nkd,nde,nle->nkl", v, h, v)  # (N, K, K): v_kᵀ H v_l
        expected = {"laplacian": vhv.diagonal(dim1=1, dim2=2).sum(-1), "diagonal": vhv.diagonal(dim1=1, dim2=2),
                    "hessian": vhv}[second]
        assert close(jet.sec[..., 0], expected)


@pytest.mark.parametrize("network", NETWORKS)
def test_identity_directions_give_the_exact_laplacian(network):
    torch.manual_seed(2)
    model = NETWORKS[network](3, 1, "sin")
    x = torch.randn(10, 3)
    xa = x.clone().requires_grad_(True)
    jet = propagate(model, Jet.seed(x, "laplacian", directions=torch.eye(3)))
    assert close(jet.operator("laplacian"), laplacian(model(xa), xa))


# --------------------------------------------------------------------------- Fourier features


def test_fourier_features_formula_and_fixed_buffer():
    torch.manual_seed(0)
    model = MLP(2, 1, width=8, depth=1, fourier_features=64, fourier_sigma=3.0)
    embedding = model.net[0]
    assert isinstance(embedding, FourierFeatures) and embedding.B.shape == (64, 2)
    assert "net.0.B" in model.state_dict()
    assert all(p is not embedding.B for p in model.parameters())  # fixed: the optimizer never sees it
    assert model.net[1].in_features == 128
    x = torch.randn(5, 2)
    z = x @ embedding.B.T
    assert close(embedding(x), torch.cat([torch.cos(z), torch.sin(z)], dim=1), rtol=1e-15)
    assert 2.5 < embedding.B.std().item() < 3.5  # B ~ N(0, sigma^2)


def test_fourier_features_reproducible_from_the_seed_and_restored_from_state_dict():
    torch.manual_seed(5)
    a = MLP(3, 1, width=8, depth=1, fourier_features=16)
    torch.manual_seed(5)
    b = MLP(3, 1, width=8, depth=1, fourier_features=16)
    assert torch.equal(a.net[0].B, b.net[0].B)
    torch.manual_seed(6)
    c = MLP(3, 1, width=8, depth=1, fourier_features=16)
    assert not torch.equal(a.net[0].B, c.net[0].B)
    c.load_state_dict(a.state_dict())
    x = torch.randn(4, 3)
    assert torch.equal(c(x), a(x))
    # B is drawn in float64 whatever the default dtype, so the seed fixes it exactly.
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(5)
    d = MLP(3, 1, width=8, depth=1, fourier_features=16)
    torch.set_default_dtype(torch.float64)
    assert torch.equal(d.net[0].B, a.net[0].B)


# --------------------------------------------------------------------------- periodic embedding


@pytest.mark.parametrize("trunk", [MLP, ModifiedMLP])
def test_periodic_embedding_is_exactly_periodic_with_its_derivatives(trunk):
    torch.manual_seed(0)
    model = trunk(3, 1, width=16, depth=2, periods={0: 2.0, 2: 0.5}, fourier_features=8)
    x = torch.randn(25, 3)
    for axis, period in ((0, 2.0), (2, 0.5)):
        for shift in (1, -3):
            y = x.clone()
            y[:, axis] += shift * period
            xa, ua = AutogradEngine().evaluate(model, x)
            ya, va = AutogradEngine().evaluate(model, y)
            assert close(va, ua, rtol=1e-13)
            assert close(grad(va, ya), grad(ua, xa), rtol=1e-12)
            assert close(hessian(va, ya), hessian(ua, xa), rtol=1e-12)
            _, uf = ForwardEngine(second="hessian").evaluate(model, x)
            _, vf = ForwardEngine(second="hessian").evaluate(model, y)
            assert close(vf.operator("hessian"), uf.operator("hessian"), rtol=1e-12)
    y = x.clone()
    y[:, 1] += 2.0  # a non-periodic axis
    assert (model(y) - model(x)).abs().max() > 1e-3


def test_periodic_embedding_columns_and_list_form():
    emb = PeriodicEmbedding(3, periods=[None, 4.0, None])
    assert emb.periods == {1: 4.0} and emb.out_dim == 4
    x = torch.tensor([[0.3, 1.0, -2.0]])
    assert close(emb(x), torch.tensor([[0.3, -2.0, math.cos(math.pi / 2), math.sin(math.pi / 2)]]), rtol=1e-15)
    assert torch.equal(PeriodicEmbedding(3, periods={1: 4.0}).B, emb.B)
    assert PeriodicEmbedding(3, periods={"1": 4.0}).periods == {1: 4.0}  # Hydra's `+model.periods.1=4.0`


def test_periodic_embedding_built_in_float32_is_exact_in_float64():
    # train.py builds the model under float32 and converts it: 2π/P must still be float64's.
    torch.set_default_dtype(torch.float32)
    model = MLP(2, 1, width=8, depth=2, periods={0: 2.0})
    torch.set_default_dtype(torch.float64)
    model = model.double()
    assert model.net[0].B[0, 0].item() == 2 * math.pi / 2.0
    x = torch.randn(50, 2)
    assert close(model(x + torch.tensor([2.0, 0.0])), model(x), rtol=1e-14)


# --------------------------------------------------------------------------- modified MLP


def test_modified_mlp_equals_its_formula():
    torch.manual_seed(0)
    model = ModifiedMLP(2, 3, width=6, depth=3)
    x = torch.randn(9, 2)
    lin = lambda layer, h: h @ layer.weight.T + layer.bias  # noqa: E731
    U = torch.tanh(lin(model.encoder_u[0], x))
    V = torch.tanh(lin(model.encoder_v[0], x))
    H = x
    for gate in model.gates:
        Z = torch.tanh(lin(gate[0], H))
        H = (1 - Z) * U + Z * V
    assert close(model(x), lin(model.head, H), rtol=1e-14)
    # The layers of the MLP of the same width and depth, plus the two encoders.
    n_mlp = sum(p.numel() for p in MLP(2, 3, width=6, depth=3).parameters())
    assert sum(p.numel() for p in model.parameters()) == n_mlp + 2 * (2 * 6 + 6)


def test_modified_mlp_by_hand():
    # One unit, one gated layer: u = W_o ((1 - z) U + z V) + b_o.
    model = ModifiedMLP(1, 1, width=1, depth=1)
    with torch.no_grad():
        for layer, (w, b) in zip([model.encoder_u[0], model.encoder_v[0], model.gates[0][0], model.head],
                                 [(1.0, 0.0), (2.0, 0.0), (0.5, 0.1), (3.0, -1.0)]):
            layer.weight.fill_(w)
            layer.bias.fill_(b)
    U, V, Z = math.tanh(0.3), math.tanh(0.6), math.tanh(0.25)
    assert model(torch.tensor([[0.3]])).item() == pytest.approx(3 * ((1 - Z) * U + Z * V) - 1, rel=1e-15)


# --------------------------------------------------------------------------- weight factorization


def test_factorized_linear_effective_weight():
    torch.manual_seed(0)
    layer = FactorizedLinear(2, 4000, mu=1.0, sigma=0.1)
    assert torch.equal(layer.weight, torch.diag(torch.exp(layer.s)) @ layer.V)
    assert layer.s.mean().item() == pytest.approx(1.0, abs=0.01) and layer.s.std().item() == pytest.approx(0.1, abs=0.01)
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / 4002), rel=0.05)  # Glorot-normal
    x = torch.randn(5, 2)
    assert close(layer(x), x @ layer.weight.T + layer.bias, rtol=1e-15)
    assert {name for name, _ in layer.named_parameters()} == {"s", "V", "bias"}
    layer(x).sum().backward()
    assert layer.s.grad.abs().sum() > 0 and layer.V.grad.abs().sum() > 0


def test_factorized_linear_starts_as_the_linear_it_factorizes():
    torch.manual_seed(0)
    linear = nn.Linear(3, 5)
    layer = FactorizedLinear.from_linear(linear, mu=0.5, sigma=0.3)
    assert close(layer.weight, linear.weight, rtol=1e-15)
    x = torch.randn(7, 3)
    assert close(layer(x), linear(x), rtol=1e-15)
    # An MLP with factorize=true is, at the start, the plain MLP of the same seed.
    torch.manual_seed(4)
    plain = MLP(2, 1, width=8, depth=2)
    torch.manual_seed(4)
    factorized = MLP(2, 1, width=8, depth=2, factorize=True)
    assert not any(isinstance(m, nn.Linear) for m in factorized.modules())
    assert sum(isinstance(m, FactorizedLinear) for m in factorized.modules()) == 3
    assert close(factorized(x[:, :2]), plain(x[:, :2]), rtol=1e-14)


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize("kwargs,match", [
    ({"activation": "relu"}, "unknown model.activation 'relu'; valid choices: tanh"),
    ({"fourier_features": -1}, "model.fourier_features must be an integer >= 0"),
    ({"fourier_features": 8, "fourier_sigma": -1.0}, "model.fourier_sigma must be a finite number > 0"),
    ({"fourier_sigma": 0.0}, "model.fourier_sigma must be a finite number > 0"),
    ({"fourier_features": 8, "fourier_sigma": float("nan")}, "model.fourier_sigma must be a finite number > 0"),
    ({"periods": {0: 0.0}}, "period of axis 0 must be a finite number > 0"),
    ({"periods": {1: -2.0}}, "period of axis 1 must be a finite number > 0"),
    ({"periods": {0: float("inf")}}, "period of axis 0 must be a finite number > 0"),
    ({"periods": {2: 1.0}}, r"axis 2 is out of range; the points have axes 0..1"),
    ({"periods": {-1: 1.0}}, "axis -1 is out of range"),
    ({"periods": [1.0]}, "one entry per coordinate"),
    ({"periods": [None, None]}, "names no periodic axis"),
    ({"periods": "x"}, r"\{axis: period\} or a list"),
    ({"periods": {"x": 1.0}}, "axis 'x' is not an axis number; the points have axes 0..1"),
    ({"factorize": "yes"}, "model.factorize must be true or false"),
    ({"factorize": True, "factorize_sigma": -0.1}, "model.factorize_sigma must be a finite number >= 0"),
    ({"factorize": True, "factorize_sigma": float("inf")}, "model.factorize_sigma must be a finite number >= 0"),
    ({"factorize": True, "factorize_sigma": 40.0}, r"model.factorize_sigma must be at most 5 \(the paper uses 0.1\)"),
    ({"factorize_mu": float("nan")}, r"model.factorize_mu must be a number in \[-20, 20\]"),
    ({"factorize_mu": 90.0}, r"model.factorize_mu must be a number in \[-20, 20\]"),
    ({"width": 0}, "model.width"),
])
@pytest.mark.parametrize("trunk", [MLP, ModifiedMLP])
def test_bad_options_raise_config_error(trunk, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        trunk(2, 1, **kwargs)


@pytest.mark.parametrize("trunk", [MLP, ModifiedMLP])
def test_options_of_a_layer_that_is_not_built_are_named(trunk, caplog):
    with caplog.at_level("WARNING", logger="pinn"):
        trunk(2, 1, width=4, depth=1, fourier_sigma=10.0, factorize_mu=0.5)
    assert "model.fourier_sigma=10 has no effect without Fourier features (model.fourier_features=0)" in caplog.text
    assert "model.factorize_mu=0.5 and model.factorize_sigma=0.1 have no effect without the factorization" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="pinn"):
        trunk(2, 1, width=4, depth=1, fourier_features=3, fourier_sigma=10.0, factorize=True, factorize_mu=0.5)
        trunk(2, 1, width=4, depth=1)
    assert caplog.text == ""


class Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


def test_unsupported_layers_are_still_refused_by_name():
    check_supported(ModifiedMLP(2, 1, width=4, depth=2, fourier_features=3, periods={0: 1.0}, factorize=True))
    with pytest.raises(ConfigError, match=r"cannot propagate layer '1' \(Doubler\).*derivatives.engine=autograd"):
        check_supported(nn.Sequential(MLP(2, 4, width=4, depth=1, fourier_features=3), Doubler()))
    model = ModifiedMLP(2, 1, width=4, depth=2)
    model.gates[1][1] = nn.ReLU()
    with pytest.raises(ConfigError, match=r"cannot propagate layer 'gates.1.1' \(ReLU\)"):
        ForwardEngine().check(model)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("network", NETWORKS)
def test_a_few_adam_steps_agree_under_both_engines(network, tmp_path):
    params = []
    for engine in (AutogradEngine(), ForwardEngine()):
        torch.manual_seed(0)
        model = NETWORKS[network](2, 1, "tanh")
        start = [p.detach().clone() for p in model.parameters()]
        pde = Poisson(dim=2, hard_constraint=network == "all")  # and once inside an output transform
        metrics = Trainer(max_steps=4, eval_every=4, n_test=50, progress=False).fit(
            pde=pde, model=pde.constrain(model), engine=engine,
            sampler=SobolSampler(n_interior=48, n_boundary=16), optimizer=Adam(lr=1e-2),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path / engine.name, dtype=torch.float64)
        assert math.isfinite(metrics["loss"])
        assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), start))  # every parameter trains
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert close(params[0], params[1], rtol=1e-10)


def test_stochastic_engine_trains_a_fourier_network(tmp_path):
    torch.manual_seed(0)
    metrics = Trainer(max_steps=3, eval_every=3, n_test=50, progress=False).fit(
        pde=Poisson(dim=2), model=NETWORKS["fourier"](2, 1, "tanh"), engine=StochasticEngine(samples=4),
        sampler=SobolSampler(n_interior=32, n_boundary=8), optimizer=Adam(lr=1e-2),
        generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64)
    assert math.isfinite(metrics["loss"])


def test_frequencies_stay_float64_through_dtype_changes():
    # A run trains in float32, then its quasi-Newton stage in float64: the period must not have
    # been rounded to float32 on the way (B[0, 0] = 2π/2 = π exactly, to float64 round-off).
    model = MLP(2, 1, width=8, depth=1, periods={0: 2.0})
    model.to(dtype=torch.float32)
    model.to(dtype=torch.float64)
    embedding = model.net[0]
    assert embedding.B.dtype == torch.float64 and embedding.B[0, 0].item() == math.pi
    x = torch.rand(50, 2, dtype=torch.float64)
    shifted = x + torch.tensor([2.0, 0.0], dtype=torch.float64)
    assert (model(x) - model(shifted)).abs().max() < 1e-14
