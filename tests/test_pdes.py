"""Each exact solution makes every residual vanish in float64; mistakes in a PDE of one's own are refused."""

import math
import sys

import pytest
import torch

from conftest import ROOT
from pinn.balancing import LossBalance
from pinn.conditions import Periodic
from pinn.derivatives import AutogradEngine, ForwardEngine, StochasticEngine
from pinn.errors import ConfigError, PDEError
from pinn.geometry import Interval, SpaceTime
from pinn.models import MLP
from pinn.optim import Adam
from pinn.pdes import Heat, Kovasznay, Poisson
from pinn.pdes.base import check_residuals
from pinn.sampling import RADSampler, SobolSampler
from pinn.trainer import Trainer, TrainingDiverged


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


# --------------------------------------------------------------------------- mistakes in a PDE of one's own


class FlatSource(Poisson):
    """A source term computed as x[:, 0] (shape (N,)): the residual broadcasts to (N, N)."""

    def residual(self, u, x):
        return super().residual(u, x) + 0 * x[:, 0]


class FlatExact(Poisson):
    def exact(self, x):
        return super().exact(x)[:, 0]


class FlatBoundary(Poisson):
    """A boundary term written by hand with data computed as x[:, 0], (N,)."""

    def residuals(self, model, points, engine):
        terms = super().residuals(model, points, engine)
        x = points["boundary"]
        return {**terms, "boundary": model(x) - x[:, 0]}


class MisspeltSecondOrder(Poisson):
    second_order = "hesian"


class RenamedEquation(Poisson):
    """The equation's term named "eq", with interior_terms left at ("pde",)."""

    def residuals(self, model, points, engine):
        terms = super().residuals(model, points, engine)
        return {"eq": terms.pop("pde"), **terms}


def _fit(tmp_path, pde, **kwargs):
    sampler = RADSampler(n_interior=32, n_boundary=16, n_candidates=64) if kwargs.get("rad") else \
        SobolSampler(n_interior=32, n_boundary=16)
    balance = LossBalance(growth_rate=1.0) if kwargs.get("growth") else None
    return Trainer(max_steps=3, progress=False, n_test=64, resample_every=2 if kwargs.get("rad") else 0,
                   checkpoint_every=1).fit(
        pde=pde, model=MLP(pde.dim, 1, width=8, depth=1), engine=AutogradEngine(), sampler=sampler,
        optimizer=Adam(), generator=torch.Generator().manual_seed(0), run_dir=tmp_path, balance=balance)


def test_a_residual_broadcast_to_n_by_n_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"FlatSource's residual 'pde' has shape \(32, 32\): an \(N,\) tensor "
                                         r"broadcast against an \(N, 1\) one\? Keep the column dimension"):
        _fit(tmp_path, FlatSource(dim=2))
    # any term, not only the equation's
    with pytest.raises(ValueError, match=r"FlatBoundary's residual 'boundary' has shape \(16, 16\)"):
        _fit(tmp_path, FlatBoundary(dim=2))


class Mistaken(Poisson):
    """Poisson with one attribute or method changed by ``mistake`` (the name of a case below)."""

    def __init__(self, mistake: str):
        super().__init__(dim=2)
        self.mistake = mistake
        if mistake == "unregistered unknown":
            self.kappa = torch.tensor(1.3, requires_grad=True)  # not an nn.Parameter: never trained
        attribute = {"point set alone": ("point_sets", "interior"), "terms alone": ("interior_terms", "pde"),
                     "no outputs": ("n_outputs", 0), "names for other outputs": ("outputs", ("u", "v"))}.get(mistake)
        if attribute is not None:
            setattr(self, *attribute)

    def metrics(self):
        return {"metric tensor": {"kappa": torch.tensor(2.0)}, "metric named loss_pde": {"loss_pde": 2.0}}.get(
            self.mistake, super().metrics())

    def residuals(self, model, points, engine):
        residuals = super().residuals(model, points, engine)
        x = points["interior"]
        if self.mistake == "no return":
            return None
        if self.mistake == "no residuals":
            return {}
        if self.mistake == "integer residual":
            return {**residuals, "pde": torch.ones(len(x), 1, dtype=torch.long)}
        if self.mistake == "equation at the boundary points":
            xb, ub = engine.evaluate(model, points["boundary"])
            return {**residuals, "pde": self.residual(ub, xb)}
        if self.mistake == "undefined source":
            return {**residuals, "pde": residuals["pde"] + torch.log(x[:, :1] - 0.5)}  # NaN left of x = 0.5
        if self.mistake == "detached":
            return {**residuals, "pde": residuals["pde"].detach()}
        return residuals


@pytest.mark.parametrize("mistake,match", [
    ("unregistered unknown", r"Mistaken.kappa requires gradients but is not an nn.Parameter, so the optimizer would "
                             r"not train it: make it torch.nn.Parameter"),
    ("point set alone", r"Mistaken.point_sets must be a tuple of names, such as \('interior', 'boundary'\) \(mind the "
                        r"comma of a single name\); got 'interior'"),
    ("terms alone", r"Mistaken.interior_terms must be a tuple of names, .* got 'pde'"),
    ("no outputs", r"Mistaken.n_outputs must be an integer > 0, the number of the network's outputs; got 0"),
    ("names for other outputs", r"Mistaken has n_outputs = 1 but names 2 outputs, \('u', 'v'\); give outputs one name"),
    ("metric tensor", r"Mistaken.metrics\(\)\['kappa'\] must be a number \(a float: .item\(\) of a tensor\); got Tensor"),
    ("metric named loss_pde", r"Mistaken.metrics\(\) names a number 'loss_pde', a name the trainer gives its own "
                              r"numbers .* which would replace it"),
    ("no return", r"Mistaken.residuals\(\) must return a dict of residuals by name, .* got NoneType \(a missing return"),
    ("no residuals", r"Mistaken.residuals\(\) returned no residuals \(an empty dict\): nothing to train"),
    ("integer residual", r"Mistaken's residual 'pde' must hold real floating-point numbers; got torch.int64"),
    ("detached", r"Mistaken's loss terms \['pde'\] do not depend on the network \(nor on a parameter of the PDE\)"),
])
def test_a_mistake_in_a_pde_of_ones_own_is_named_before_training(mistake, match, tmp_path):
    with pytest.raises(PDEError, match=match):
        _fit(tmp_path, Mistaken(mistake))
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()


def test_an_equation_term_off_the_interior_points_is_refused_where_it_is_read_row_by_row(tmp_path):
    pde = Mistaken("equation at the boundary points")
    _fit(tmp_path / "plain", pde)  # (the equation on points of one's own choosing: nothing reads its rows)
    with pytest.raises(PDEError, match=r"Mistaken's residual 'pde' is one of Mistaken.interior_terms, the equation's "
                                       r"terms, one row per interior point, but has 16 rows for 64 interior points"):
        _fit(tmp_path / "rad", pde, rad=True)  # (scoring 64 candidates)
    heat = Heat()
    for balance in (LossBalance(growth_rate=1.0), LossBalance(causal=True)):
        with pytest.raises(PDEError, match=r"Heat's residual 'pde' is one of Heat.interior_terms, .* but has 16 rows "
                                           r"for 32 interior points"):
            balance.term_losses({"pde": torch.zeros(16, 1), "boundary": torch.zeros(8, 1)},
                                {"interior": torch.rand(32, heat.dim), "boundary": torch.rand(8, heat.dim)}, heat)


def test_a_term_that_does_not_depend_on_the_network_may_be_kept_at_weight_zero(tmp_path):
    pde = Mistaken("detached")
    Trainer(max_steps=2, progress=False, n_test=64, loss_weights={"pde": 0.0}).fit(
        pde=pde, model=MLP(2, 1, width=8, depth=1), engine=AutogradEngine(), optimizer=Adam(),
        sampler=SobolSampler(n_interior=32, n_boundary=16), generator=torch.Generator().manual_seed(0), run_dir=tmp_path)


def test_a_loss_that_is_not_finite_from_the_start_is_not_called_a_divergence(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"the loss is not finite before any training \(total=nan, pde=nan, "
                                               r"boundary=.*\): a term gives NaN or Inf from the network's first "
                                               r"weights on"):
        _fit(tmp_path, Mistaken("undefined source"))
    assert not (tmp_path / "checkpoints").exists()


def test_a_pde_without_terms_is_refused(tmp_path):
    from pinn.geometry import Box
    from pinn.pdes.base import PDE

    class Unwritten(PDE):
        def __init__(self):
            super().__init__()
            self.domain = Box(-1.0, 1.0, dim=2)

    with pytest.raises(PDEError, match=r"Unwritten defines neither residuals\(\) nor losses\(\): give it a residuals"):
        _fit(tmp_path, Unwritten())

    class Unready(Poisson):
        def __init__(self):
            self.domain = Box(-1.0, 1.0, dim=2)

    with pytest.raises(PDEError, match=r"Unready.__init__ does not call super\(\).__init__\(\)"):
        _fit(tmp_path, Unready())


class AllNaNExact(Poisson):
    def exact(self, x):
        return torch.full((len(x), 1), math.nan, dtype=x.dtype)


def test_a_reference_that_is_all_nan_is_refused_before_training(tmp_path):
    with pytest.raises(PDEError, match=r"AllNaNExact's reference values .* are all NaN or infinite: no error could be "
                                       r"measured. Return None from exact\(\) where no solution is known"):
        _fit(tmp_path, AllNaNExact(dim=2))
    assert not (tmp_path / "checkpoints").exists()


def test_a_misspelt_declaration_is_refused_by_every_engine():
    for engine in (AutogradEngine(), ForwardEngine(), StochasticEngine()):
        with pytest.raises(ConfigError, match=r"unknown MisspeltSecondOrder.second_order 'hesian'; valid choices: "
                                              r"none, laplacian, diagonal, hessian"):
            engine.check_pde(MisspeltSecondOrder())


def test_a_hard_constraint_needs_the_constrained_network(tmp_path):
    # The PDE leaves the boundary loss out: the bare network would train with no boundary condition
    with pytest.raises(ConfigError, match=r"Poisson\(dim=2, .*hard_constraint=True\) builds some conditions into the "
                                          r"network .*, but this MLP holds no OutputTransform: train pde.constrain"):
        _fit(tmp_path, Poisson(hard_constraint=True))
    assert not (tmp_path / "checkpoints").exists()
    pde = Poisson(hard_constraint=True)
    models = (pde.constrain(MLP(2, 1, width=8, depth=1)), torch.nn.Sequential(pde.constrain(MLP(2, 1, width=8))))
    for i, model in enumerate(models):  # the constrained network, also inside another module
        Trainer(max_steps=1, progress=False, n_test=16).fit(
            pde=pde, model=model, engine=AutogradEngine(), sampler=SobolSampler(n_interior=16, n_boundary=8),
            optimizer=Adam(), generator=torch.Generator().manual_seed(0), run_dir=tmp_path / f"run{i}")


@pytest.mark.parametrize("engine", [AutogradEngine(), ForwardEngine(), StochasticEngine()], ids=lambda e: e.name)
def test_points_a_network_cannot_take_are_named(engine):
    net = MLP(4, 1, width=8, depth=1).double()
    for x, match in ((torch.rand(5, 3, dtype=torch.float64), r"MLP takes points of shape \(N, 4\); got \(5, 3\)"),
                     (torch.rand(5, 4), "the points are torch.float32 on cpu, the network's weights torch.float64"),
                     (torch.ones(5, 4, dtype=torch.long), "the points must be floating-point; got torch.int64"),
                     (torch.rand(4, dtype=torch.float64), r"the points must be a tensor \(N, d\), one row per point")):
        with pytest.raises(ValueError, match=match):
            engine.evaluate(net, x)
    x, u = engine.evaluate(net, torch.rand(5, 4, dtype=torch.float64))  # and the right ones pass
    assert x.shape == (5, 4)


def test_an_exact_solution_without_its_column_is_refused(tmp_path):
    with pytest.raises(PDEError, match=r"FlatExact's reference values \(from its exact\(\) or reference\(\), at 64 "
                                       r"points\) must have "
                                       r"shape \(P, n_outputs\) = \(64, 1\); got \(64,\)"):
        _fit(tmp_path, FlatExact(dim=2))


def test_equation_terms_named_otherwise_are_refused_where_they_matter(tmp_path):
    _fit(tmp_path / "plain", RenamedEquation(dim=2))  # nothing reads interior_terms: fine
    with pytest.raises(ConfigError, match=r"adaptive sampling reads the equation's terms, RenamedEquation.interior_terms"
                                          r" = \('pde',\), but its residuals\(\) returns \['boundary', 'eq'\]"):
        _fit(tmp_path / "rad", RenamedEquation(dim=2), rad=True)
    assert not (tmp_path / "rad" / "checkpoints").exists()  # after the first step, not at the first resampling

    class RenamedHeat(Heat):
        def residuals(self, model, points, engine):
            terms = super().residuals(model, points, engine)
            return {"eq": terms.pop("pde"), **terms}

    pde = RenamedHeat()
    points = SobolSampler(n_interior=16, n_boundary=8, n_initial=8).sample(pde.domain, torch.Generator().manual_seed(0),
                                                                           pde.point_sets)
    residuals = pde.residuals(MLP(pde.dim, 1, width=4, depth=1).double(), points, AutogradEngine())
    for balance, setting in ((LossBalance(causal=True), "loss.causal"), (LossBalance(growth_rate=1.0), "loss.growth_rate")):
        with pytest.raises(ConfigError, match=f"{setting} reads the equation's terms"):
            balance.term_losses(residuals, points, pde)


def test_a_periodic_condition_with_bounds_off_the_boundary_is_refused():
    domain = SpaceTime(Interval(-1.0, 1.0), 0.0, 1.0)
    x = domain.sample("boundary", 40, lambda m, k: torch.rand(m, k, dtype=torch.float64))
    square = lambda p: p[:, :1] ** 2  # noqa: E731  (periodic on [-1, 1])
    assert Periodic(0, -1.0, 1.0, derivative=False).residual(square, x, AutogradEngine()).abs().max() < 1e-15
    for lo, hi, beyond in ((0.0, 1.0, -1), (-1.0, 0.5, 1)):
        with pytest.raises(ValueError, match=rf"some of its points lie beyond x0 = {lo}..{hi} \(at x0 = {beyond}\); lo "
                                             "and hi must be the domain's bounds along axis 0"):
            Periodic(0, lo, hi, derivative=False).residual(square, x, AutogradEngine())
    # a face without points is fine: the other face's points are compared with their partners there
    one_face = x[x[:, 0] > 0]
    assert Periodic(0, -1.0, 1.0, derivative=False).residual(square, one_face, AutogradEngine()).abs().max() < 1e-15


def test_a_network_periodic_with_another_period_than_the_problems_is_refused():
    # It could not represent the solution: its loss would stall with nothing to say why.
    from pinn.pdes import AllenCahn

    for pde, periods, says in [
        (AllenCahn(), {0: 1.0}, r"periodic along axis 0 with period 1.0, but AllenCahn's periodic condition there "
                                r"has period 2.0 \(from -1.0 to 1.0\); set model.periods to give axis 0 that period"),
        (AllenCahn(hard_constraint=True), {0: 2.0, 1: 0.25}, r"periodic in time \(axis 1, the last\) with period "
                                                             r"0.25, within the time span 1.0, and AllenCahn's solution "
                                                             "need not repeat in time"),
        (Heat(), {1: 1.0}, "periodic in time"),  # u(x, t0) = u(x, t1): a repeat too
    ]:
        with pytest.raises(ConfigError, match=says):
            pde.check_network(MLP(pde.dim, 1, width=4, depth=1, periods=periods))
    AllenCahn(hard_constraint=True).check_network(MLP(2, 1, width=4, depth=1, periods={0: 2.0}))
    Heat().check_network(MLP(2, 1, width=4, depth=1, periods={0: 2.0}))  # no periodic condition to contradict
    Heat().check_network(MLP(2, 1, width=4, depth=1, periods={1: 4.0}))  # longer than the span: repeats nothing

    class TwoPi(AllenCahn):  # a period written with a few digits, as YAML must write 2π
        def __init__(self):
            super().__init__()
            self.periodic = Periodic(axis=0, lo=0.0, hi=2 * math.pi)

    TwoPi().check_network(MLP(2, 1, width=4, depth=1, periods={0: 6.2831853}))

    class TimePeriodic(Heat):  # a problem that asks for periodicity in time may have it
        def __init__(self):
            super().__init__()
            self.periodic = Periodic(axis=1, lo=0.0, hi=1.0)

    TimePeriodic().check_network(MLP(2, 1, width=4, depth=1, periods={1: 1.0}))


def test_a_network_that_does_not_map_points_to_the_outputs_is_refused():
    class Flat(torch.nn.Module):
        def __init__(self, columns):
            super().__init__()
            self.linear = torch.nn.Linear(2, columns)

        def forward(self, x):
            out = self.linear(x)
            return out[:, 0] if out.shape[1] == 1 else out

    class Curl(torch.nn.Module):
        """The velocity (∂ψ/∂y, -∂ψ/∂x) of a stream function ψ, differentiated inside the network
        where the caller has turned gradients on (as in training), not by itself."""

        def __init__(self):
            super().__init__()
            self.psi = MLP(2, 1, width=4, depth=1)

        def forward(self, x):
            g = torch.autograd.grad(self.psi(x).sum(), x, create_graph=True)[0]
            return torch.stack([g[:, 1], -g[:, 0]], dim=1)

    class Halfway(Curl):
        """Makes the points require gradients, but leaves gradients off where the caller has."""

        def forward(self, x):
            return super().forward(x if x.requires_grad else x.detach().requires_grad_(True))

    sys.path.insert(0, str(ROOT / "examples" / "custom_network"))
    try:
        from my_networks import StreamFunction  # turns gradients on itself
    finally:
        sys.path.pop(0)
    one, three, stream = MLP(2, 1, width=4, depth=1), MLP(2, 3, width=4, depth=1), StreamFunction(2, 3, width=4, depth=1)
    state = torch.get_rng_state()
    Poisson(dim=2).check_network(one)
    Kovasznay().check_network(three)
    Kovasznay().check_network(stream)
    assert torch.equal(torch.get_rng_state(), state)  # the probe draws from a generator of its own
    two_outputs = Poisson(dim=2)
    two_outputs.n_outputs = 2
    with pytest.raises(ConfigError, match=r"the network \(Curl\) runs at points that require gradients but not with "
                                          r"gradients on at points that do not require them \(a condition's values\), "
                                          r"as the trainer also calls it: One of the differentiated Tensors does not "
                                          r"require grad. A network that .* must turn gradients on itself"):
        two_outputs.check_network(Curl())
    with pytest.raises(ConfigError, match=r"the network \(Halfway\) runs at points that require gradients but not "
                                          r"under torch.no_grad\(\) \(the error, figures\), as the trainer also "
                                          r"calls it: element 0 of tensors does not require grad and does not have a "
                                          r"grad_fn. A network that .* must turn gradients on itself"):
        two_outputs.check_network(Halfway())
    with pytest.raises(ConfigError, match=r"the network \(Flat\) must map points \(N, 2\) to \(N, 1\), one row per "
                                          r"point and one column per output of Poisson \(u\); for 3 points it "
                                          r"returned shape \(3,\)"):
        Poisson(dim=2).check_network(Flat(1))
    with pytest.raises(ConfigError, match=r"\(N, 3\), one row per point and one column per output of Kovasznay "
                                          r"\(u, v, p\); for 3 points it returned shape \(3, 2\)"):
        Kovasznay().check_network(Flat(2))


def test_a_network_whose_rows_depend_on_the_other_points_is_refused():
    """Through such a network the operators would differentiate row i with respect to point i
    alone and give wrong numbers without a word."""

    class Centered(torch.nn.Module):
        """Mixes the points as no layer torch names does."""

        def __init__(self):
            super().__init__()
            self.net = MLP(2, 1, width=8, depth=1)

        def forward(self, x):
            return self.net(x - x.mean(dim=0))

    torch.manual_seed(0)
    for layer, does in [(torch.nn.BatchNorm1d(16), "normalizes over the points evaluated together"),
                        (torch.nn.Dropout(0.1), "zeroes random units at every call")]:
        model = torch.nn.Sequential(torch.nn.Linear(2, 16), layer, torch.nn.Tanh(), torch.nn.Linear(16, 1))
        with pytest.raises(ConfigError, match=rf"the network \(Sequential\) has a {type(layer).__name__} layer "
                                              rf"\(1\) in training mode, which {does}: each row of the output must be "
                                              r"a function of its own point alone"):
            Poisson(dim=2).check_network(model)
        model.eval()  # fixed statistics, no dropout: each row a function of its point alone
        Poisson(dim=2).check_network(model)
    with pytest.raises(ConfigError, match=r"the network \(Centered\) is not pointwise: its output at a point changed "
                                          r"\(by .*\) with the other points evaluated beside it"):
        Poisson(dim=2).check_network(Centered())


def test_the_network_probe_leaves_the_network_and_the_random_state_as_they_were():
    torch.manual_seed(0)
    # a power iteration at every call updates each layer's vectors, buffers of the layer
    model = torch.nn.Sequential(torch.nn.utils.spectral_norm(torch.nn.Linear(2, 16)), torch.nn.Tanh(),
                                torch.nn.utils.spectral_norm(torch.nn.Linear(16, 1)))
    buffers, state = [b.clone() for b in model.buffers()], torch.get_rng_state()
    Poisson(dim=2).check_network(model)  # each call starts from the same vectors: the same function
    assert len(buffers) == 4 and all(torch.equal(b, c) for b, c in zip(buffers, model.buffers(), strict=True))
    assert torch.equal(torch.get_rng_state(), state)


def test_a_network_that_is_not_finite_before_training_is_refused():
    class Log(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = MLP(2, 1, width=8, depth=1)

        def forward(self, x):
            return self.net(x) + torch.log(x[:, :1])  # NaN where x0 < 0

    with pytest.raises(ConfigError, match=r"the network \(Log\) returned \[nan\] at the point \[-0\.\d+, .*\] of "
                                          r"the domain, before any training: its outputs must be finite"):
        Poisson(dim=2).check_network(Log())


def test_a_pde_without_a_domain_is_named():
    from pinn.pdes.base import PDE

    class Bare(PDE):
        pass

    with pytest.raises(PDEError, match=r"Bare has no domain: set self.domain in its __init__ to a shape of "
                                       r"pinn.geometry, such as Box\(-1.0, 1.0, dim=2\); got NoneType"):
        Bare().dim


def test_losses_of_ones_own_must_be_numbers_by_name():
    from pinn.pdes.base import check_losses

    check_losses(Poisson(dim=2), {"pde": torch.tensor(1.0), "boundary": torch.zeros(())})
    with pytest.raises(PDEError, match=r"Poisson's loss 'pde' must be one number, .*; got shape \(4, 1\)"):
        check_losses(Poisson(dim=2), {"pde": torch.zeros(4, 1)})
    with pytest.raises(PDEError, match=r"Poisson's loss 'pde' must be one number, .*; got float"):
        check_losses(Poisson(dim=2), {"pde": 0.0})
    with pytest.raises(PDEError, match=r"Poisson.losses\(\) must return a dict of loss terms by name, .*; got list"):
        check_losses(Poisson(dim=2), [torch.zeros(())])


def test_an_empty_residual_is_named():
    with pytest.raises(PDEError, match="Poisson's residual 'hole' has no rows: its point set .* is empty"):
        check_residuals(Poisson(dim=2), {"pde": torch.zeros(4, 1), "hole": torch.zeros(0, 1)})
    with pytest.raises(PDEError, match=r"residual 'pde' must be a tensor \(N, c\), one row per point; got shape \(4,\)"):
        check_residuals(Poisson(dim=2), {"pde": torch.zeros(4)})
    check_residuals(Poisson(dim=2), {"pde": torch.zeros(7, 7), "data": torch.zeros(3, 3)})  # few points: can be so
    ten_outputs = Poisson(dim=2)
    ten_outputs.n_outputs = 10
    check_residuals(ten_outputs, {"pde": torch.zeros(9, 1), "data": torch.zeros(10, 10)})  # 10 sensors, 10 outputs
    # 3 outputs and their 6 first derivatives in 2-D on 9 points
    check_residuals(Kovasznay(), {"momentum_x": torch.zeros(9, 1), "wall": torch.zeros(9, 9)})
    with pytest.raises(PDEError, match=r"Poisson's residual 'data' has shape \(10, 10\)"):
        check_residuals(Poisson(dim=2), {"pde": torch.zeros(9, 1), "data": torch.zeros(10, 10)})  # 1 output
    # the field itself as a residual (u = 0 on the boundary), under the forward engine a Jet
    x, u = ForwardEngine().evaluate(MLP(2, 1, width=4, depth=1), torch.rand(9, 2))
    check_residuals(Poisson(dim=2), {"pde": torch.zeros(9, 1), "boundary": u})


def test_a_problem_is_shown_by_its_own_class_name():
    # The log's "training ..." line: a subclass is named as itself, a problem of one's own with its domain.
    from pinn.geometry import Box
    from pinn.pdes import PDE, Poisson

    class Shifted(Poisson):
        pass

    class Mine(PDE):
        def __init__(self):
            super().__init__()
            self.domain = Box([0.0], [1.0])

    assert repr(Shifted(dim=2)).startswith("Shifted(dim=2, ")
    assert repr(Mine()) == "Mine(domain=Box([0.0, 1.0]^1))"
