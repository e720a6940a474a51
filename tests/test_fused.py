"""derivatives.triton: the fused Triton layer (pinn.fused) against the unfused forward engine.

On a machine without an NVIDIA GPU the kernels run in Triton's CPU interpreter (conftest.py
sets TRITON_INTERPRET=1), on one with a GPU on the GPU, in float64, where both paths agree to
round-off.
"""

import itertools
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import ROOT
from pinn import fused
from pinn.derivatives import ForwardEngine, StochasticEngine, make_engine
from pinn.errors import ConfigError
from pinn.jet import RULES, Jet, _Activate, propagate
from pinn.models import MLP, ModifiedMLP, Sine
from pinn.pdes import Heat, Poisson
from pinn.trainer import Trainer

pytestmark = pytest.mark.skipif(fused.triton is None, reason="Triton is not installed")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and not fused.interpreting():
    pytestmark = pytest.mark.skip(reason="no GPU, and Triton's interpreter is off (TRITON_INTERPRET)")
elif DEVICE.type == "cpu" and fused.interpreter_problem():
    pytestmark = pytest.mark.skip(reason=f"no GPU, and {fused.interpreter_problem()}")
F64 = dict(dtype=torch.float64, device=DEVICE)


#: one module of each activation the kernels have
KERNEL_ACTIVATIONS = [nn.Tanh(), Sine(), nn.Sigmoid(), nn.SiLU(), nn.GELU(), nn.Softplus()]


def unfused(layer, activation, value, jac, sec):
    """The same layer by the engine's own path: three linear maps, then the activation node."""
    return _Activate.apply(layer(value), jac @ layer.weight.T, sec @ layer.weight.T, activation,
                           RULES[type(activation)], sec.dim() == 2)


@pytest.mark.parametrize("mode", ["laplacian", "diagonal"])
@pytest.mark.parametrize("activation", KERNEL_ACTIVATIONS, ids=lambda a: type(a).__name__.lower())
@pytest.mark.parametrize("directions,bias", [(1, True), (3, False)])
def test_layer_matches_unfused_path_values_and_every_gradient(mode, activation, directions, bias):
    """Outputs and the gradients of the inputs, weight and bias, for every subset of outputs the
    loss reads (an output it does not read gets no gradient). 70 points (not a multiple of the
    block) and widths 20 -> 24 (not powers of two, padded inside the kernels). The second
    derivatives are summed (laplacian) or one per direction (diagonal)."""
    torch.manual_seed(0)
    layer = nn.Linear(20, 24, bias=bias).to(**F64)
    per_direction = (directions,) if mode == "diagonal" else ()
    inputs = [torch.randn(70, 20, **F64), torch.randn(70, directions, 20, **F64),
              torch.randn(70, *per_direction, 20, **F64)]
    inputs = [t.requires_grad_() for t in inputs]
    weights = [torch.randn(70, 24, **F64), torch.randn(70, directions, 24, **F64),
               torch.randn(70, *per_direction, 24, **F64)]
    params = [*inputs, *layer.parameters()]
    expected_out, got_out = unfused(layer, activation, *inputs), fused.linear_activate(layer, activation, *inputs)
    for expected, got in zip(expected_out, got_out):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for used in itertools.chain.from_iterable(itertools.combinations(range(3), r) for r in (1, 2, 3)):
        def gradients(outputs):
            loss = sum((outputs[i] * weights[i]).sum() for i in used)
            return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)

        for name, expected, got in zip(["value", "jac", "sec", "weight", "bias"], gradients(expected_out),
                                       gradients(got_out)):
            assert (expected is None) == (got is None), (used, name)
            if expected is not None:
                torch.testing.assert_close(got, expected, rtol=1e-11, atol=1e-11, msg=f"{name}, outputs {used}")


@pytest.mark.parametrize("fan_in,width,programs", [(10, 50, 1), (50, 10, 3)])
def test_layer_with_unequal_widths_and_programs_looping_over_blocks(fan_in, width, programs, monkeypatch):
    """Padded input and output widths that differ (16 and 64), and 300 points on one or three
    backward programs, each looping over several blocks and summing their weight gradients (on
    an H100, one program per multiprocessor, that starts above about 4,200 points), both modes;
    one input not contiguous."""
    monkeypatch.setattr(fused, "_programs", lambda device, blocks: min(blocks, programs))
    torch.manual_seed(0)
    layer = nn.Linear(fan_in, width).to(**F64)
    for mode in ("laplacian", "diagonal"):
        extra = (2,) if mode == "diagonal" else ()
        jac = torch.randn(300, fan_in, 2, **F64).transpose(1, 2)  # (300, 2, fan_in), not contiguous
        inputs = [t.requires_grad_() for t in (torch.randn(300, fan_in, **F64), jac,
                                               torch.randn(300, *extra, fan_in, **F64))]
        assert not inputs[1].is_contiguous()
        expected, got = unfused(layer, nn.Tanh(), *inputs), fused.linear_activate(layer, nn.Tanh(), *inputs)
        weights = [torch.randn_like(t) for t in expected]
        params = [*inputs, *layer.parameters()]
        grads = [torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), params)
                 for outs in (expected, got)]
        for e, g in zip([*expected, *grads[0]], [*got, *grads[1]]):
            torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-11, msg=mode)


@pytest.mark.parametrize("fan_in,width,bias,one_storage", [(50, 50, True, True), (50, 10, True, True),
                                                          (20, 24, True, False), (32, 32, True, True),
                                                          (50, 50, False, False)])
def test_weight_gradients_arrive_in_the_parameters_layout(fan_in, width, bias, one_storage):
    """The sum of the programs' partial gradients is laid out as the weight is, so that autograd
    takes it as .grad without a copy; where the padding has room (fewer outputs than the padded
    width, no more than the inputs) the bias's gradient is one more row of the same sum. (Widths
    that need no padding get both from one sum anyway; 20 -> 24 has its weight's gradient copied.)"""
    torch.manual_seed(0)
    layer = nn.Linear(fan_in, width, bias=bias).to(**F64)
    inputs = [torch.randn(70, fan_in, **F64), torch.randn(70, 2, fan_in, **F64), torch.randn(70, fan_in, **F64)]
    sum(o.square().sum() for o in unfused(layer, nn.Tanh(), *inputs)).backward()
    expected_grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad(set_to_none=True)
    sum(o.square().sum() for o in fused.linear_activate(layer, nn.Tanh(), *inputs)).backward()
    for p, expected in zip(layer.parameters(), expected_grads):
        torch.testing.assert_close(p.grad, expected, rtol=1e-11, atol=1e-11)
        assert p.grad.stride() == p.stride()
    if bias:
        together = layer.weight.grad.untyped_storage().data_ptr() == layer.bias.grad.untyped_storage().data_ptr()
        assert together == one_storage


@pytest.mark.parametrize("mode", ["laplacian", "diagonal"])
@pytest.mark.parametrize("activation", KERNEL_ACTIVATIONS, ids=lambda a: type(a).__name__.lower())
@pytest.mark.parametrize("dim,directions", [(3, None), (3, "identity"), (5, 4)], ids=["axes", "identity", "random"])
def test_first_layer_matches_unfused_path(mode, activation, dim, directions):
    """The first layer, whose directions (the axes, given as ``None`` or as the identity, or
    random ones) are shared by every point and whose second derivatives are zero: outputs, and
    the weight's and bias's gradients for every subset of outputs the loss reads, against the
    engine's unfused path."""
    torch.manual_seed(0)
    layer = nn.Linear(dim, 20).to(**F64)
    x = torch.rand(70, dim, **F64)
    along = torch.randn(directions, dim, **F64) if isinstance(directions, int) else None
    seed = Jet.seed(x, mode, directions=along)
    plain = propagate(activation, propagate(layer, seed))
    got = fused.first_linear_activate(layer, activation, x, None if directions is None else seed.jac[0],
                                      diagonal=mode == "diagonal")
    expected = (plain.value, plain.jac, plain.sec)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
    weights = [torch.randn_like(t) for t in expected]
    for used in itertools.chain.from_iterable(itertools.combinations(range(3), r) for r in (1, 2, 3)):
        def gradients(outputs):
            loss = sum((outputs[i] * weights[i]).sum() for i in used)
            return torch.autograd.grad(loss, list(layer.parameters()), retain_graph=True)

        for name, e, g in zip(["weight", "bias"], gradients(expected), gradients(got)):
            torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-11, msg=f"{name}, outputs {used}")


def count_fused_calls(monkeypatch):
    """The linear layers run by the fused kernels, first layers and hidden ones, in order."""
    calls = []
    for name in ("linear_activate", "first_linear_activate"):
        def counted(*args, original=getattr(fused, name), **kwargs):
            calls.append(args[0])
            return original(*args, **kwargs)

        monkeypatch.setattr(fused, name, counted)
    return calls


def network(problem: str) -> nn.Module:
    """A 3-input network of width 20 for ``problem`` (its name's suffix picks the kind)."""
    if "modified" in problem:  # gated by two encoders; with an exact periodic embedding of x_0 first
        return ModifiedMLP(3, 1, width=20, depth=3, periods={0: 2.0} if problem.endswith("periodic") else None)
    activation = {"sine": "sin", "gelu": "gelu", "silu": "silu", "softplus": "softplus"}.get(problem.split("-")[-1],
                                                                                              "tanh")
    return MLP(3, 1, width=20, depth=3, activation=activation)


#: the input widths of the layers the kernels run in one evaluation of each network
FUSED_INPUTS = {"mlp": [3, 20, 20], "modified": [3, 3, 3, 20, 20], "modified-periodic": [4, 4, 4, 20, 20]}


@pytest.mark.parametrize("engine,problem", [("forward", "poisson"), ("stochastic", "poisson"),
                                            ("forward", "poisson-hard"), ("forward", "heat"),
                                            ("forward", "poisson-sine"), ("stochastic", "poisson-gelu"),
                                            ("forward", "poisson-silu"), ("forward", "heat-softplus"),
                                            ("forward", "poisson-modified"),
                                            ("stochastic", "poisson-modified-periodic")])
def test_network_and_training_steps_match_unfused_engine(engine, problem, monkeypatch):
    """Whole networks: a PDE's loss and its parameter gradients, then three Adam steps, with and
    without the kernels. Every layer of an MLP but the last (which has no activation) runs in a
    kernel, also inside a hard constraint u = s N, and in the diagonal mode (the heat equation's
    u_xx beside its u_t); so do a modified MLP's encoders and gates, on the seed's shared
    directions (the first-layer kernel) or after a periodic embedding (the hidden one)."""
    calls = count_fused_calls(monkeypatch)
    pde = Heat(dim=2) if problem.startswith("heat") else Poisson(dim=3, hard_constraint=problem == "poisson-hard")
    x = {"interior": torch.rand(50, 3, **F64), "boundary": torch.rand(10, 3, **F64),
         "initial": torch.rand(10, 3, **F64)}
    results = []
    for triton in (False, True):
        torch.manual_seed(0)
        model = pde.constrain(network(problem).to(**F64))
        derivatives = make_engine(engine, triton=triton, samples=4)
        derivatives.check(model)
        derivatives.check_pde(pde)
        derivatives.check_device(DEVICE)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        torch.manual_seed(1)  # the stochastic engine's directions
        losses = []
        for _ in range(3):
            optimizer.zero_grad()
            total = Trainer().losses(pde, model, derivatives, x)[0]
            total.backward()
            losses.append(total.item())
            optimizer.step()
        results.append((losses, [p.detach().clone() for p in model.parameters()]))
    kind = problem.split("poisson-")[-1] if "modified" in problem else "mlp"
    assert [layer.in_features for layer in calls] == FUSED_INPUTS[kind] * 3, "every fused layer, three steps"
    (losses, params), (fused_losses, fused_params) = results
    assert fused_losses == pytest.approx(losses, rel=1e-12)
    for p, q in zip(params, fused_params):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("engine,problem", [("forward", "heat"), ("stochastic", "poisson")])
def test_one_pass_runs_the_kernels_once_for_all_point_sets(engine, problem, monkeypatch):
    """derivatives.one_pass=true with the kernels: one launch per layer for the interior,
    boundary (and initial) points together, and the losses and gradients of separate passes."""
    calls = count_fused_calls(monkeypatch)
    pde = Heat(dim=2) if problem == "heat" else Poisson(dim=3)
    x = {"interior": torch.rand(50, 3, **F64), "boundary": torch.rand(10, 3, **F64),
         "initial": torch.rand(10, 3, **F64)}
    x = {name: x[name] for name in pde.point_sets}
    results = []
    for one_pass in (False, True):
        torch.manual_seed(0)
        model = network(problem).to(**F64)
        derivatives = make_engine(engine, triton=True, samples=4, one_pass=one_pass)
        derivatives.check_pde(pde)
        calls.clear()
        torch.manual_seed(1)
        total = Trainer().losses(pde, model, derivatives, x)[0]
        total.backward()
        results.append((total.item(), [p.grad for p in model.parameters()]))
        assert [layer.in_features for layer in calls] == FUSED_INPUTS["mlp"]
    (loss, grads), (one_loss, one_grads) = results
    assert one_loss == pytest.approx(loss, rel=1e-12)
    for g, h in zip(grads, one_grads):
        torch.testing.assert_close(h, g, rtol=1e-10, atol=1e-12)


def test_unsupported_layers_fall_back_within_one_network(monkeypatch):
    """A softplus layer with beta = 2 (no kernel) beside tanh layers: the tanh pairs are fused,
    the rest is not, and the Laplacian is the unfused engine's."""
    calls = count_fused_calls(monkeypatch)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Softplus(beta=2.0),
                          nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)).to(**F64)
    x = torch.rand(40, 2, **F64)
    plain = propagate(model, Jet.seed(x))
    mixed = propagate(model, Jet.seed(x), triton=True)
    assert calls == [model[0], model[4]]
    torch.testing.assert_close(mixed.sec, plain.sec, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mixed.jac, plain.jac, rtol=1e-12, atol=1e-12)


def test_first_layer_needs_points_without_gradient(monkeypatch):
    """Points that require a gradient (which the first kernel does not give) take the unfused path."""
    calls = count_fused_calls(monkeypatch)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1)).to(**F64)
    x = torch.rand(10, 2, **F64, requires_grad=True)
    plain = propagate(model, Jet.seed(x))
    jet = propagate(model, Jet.seed(x), triton=True)
    assert calls == []
    torch.testing.assert_close(jet.sec, plain.sec)


@pytest.mark.parametrize("mode", ["laplacian", "diagonal"])
def test_first_layer_in_100_dimensions(mode, monkeypatch):
    """The exact Laplacian in 100 dimensions (100 inputs, the 100 axes as directions, padded to
    128): the whole network fused, values and parameter gradients as without the kernels."""
    calls = count_fused_calls(monkeypatch)
    torch.manual_seed(0)
    model = MLP(100, 1, width=16, depth=2).to(**F64)
    x = torch.rand(40, 100, **F64)
    outputs = []
    for triton in (False, True):
        jet = propagate(model, Jet.seed(x, mode), triton=triton)
        loss = (jet.value.sum() + (jet.jac * torch.linspace(-1, 1, 100, **F64)[:, None]).sum()
                + jet.sec.square().sum())
        outputs.append([jet.value, jet.jac, jet.sec, *torch.autograd.grad(loss, list(model.parameters()))])
    assert calls == [model.net[0], model.net[2]] and fused.fusable_layers(model) == 2
    for plain, fused_ in zip(*outputs):
        torch.testing.assert_close(fused_, plain, rtol=1e-11, atol=1e-11)


def test_first_layer_with_many_directions_is_left_unfused(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    model = nn.Sequential(nn.Linear(fused.MAX_FIRST_DIRECTIONS + 1, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                          nn.Linear(16, 1)).to(**F64)
    x = torch.rand(10, fused.MAX_FIRST_DIRECTIONS + 1, **F64)
    plain, jet = propagate(model, Jet.seed(x)), propagate(model, Jet.seed(x), triton=True)
    assert calls == [model[2]], "the hidden layer only"
    torch.testing.assert_close(jet.sec, plain.sec, rtol=1e-12, atol=1e-12)


def test_layers_wider_than_the_kernels_take_are_left_unfused(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    wide = fused.MAX_WIDTH + 1
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, wide), nn.Tanh(), nn.Linear(wide, 16),
                          nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)).to(**F64)
    x = torch.rand(10, 2, **F64)
    plain, jet = propagate(model, Jet.seed(x)), propagate(model, Jet.seed(x), triton=True)
    assert calls == [model[0], model[6]], "the layers into and out of the wide one stay unfused"
    torch.testing.assert_close(jet.sec, plain.sec, rtol=1e-12, atol=1e-12)


def test_applies_only_where_the_kernel_computes_the_layer():
    layer, x = nn.Linear(8, 8).to(**F64), torch.rand(5, 8, **F64)
    per_point = torch.rand(5, 2, 8, **F64)
    shared = torch.rand(2, 8, **F64).expand(5, -1, -1)
    assert fused.applies(layer, nn.Tanh(), x, per_point, x)
    assert not fused.applies(layer, nn.Tanh(), x, shared, x), "the first layer's shared directions"
    assert not fused.applies(layer, nn.Tanh(), x, per_point, None), "the seed's zero second derivatives"
    assert not fused.applies(layer, nn.Softplus(beta=2.0), x, per_point, x), "softplus beyond its defaults"
    assert not fused.applies(layer, nn.Softplus(threshold=10.0), x, per_point, x)
    assert not fused.applies(layer, nn.GELU(approximate="tanh"), x, per_point, x), "gelu's tanh approximation"
    assert all(fused.applies(layer, a, x, per_point, x) for a in (nn.GELU(), nn.SiLU(), nn.Softplus()))
    assert not fused.applies(layer, nn.Tanh(), x.half(), per_point.half(), x.half()), "float16"
    assert not fused.applies(layer.float(), nn.Tanh(), x, per_point, x), "float32 weights, float64 points"
    assert not fused.first_layer_applies(layer, nn.Tanh(), x, shared.clone().requires_grad_()), "directions need a gradient"


def test_networks_with_nothing_to_fuse_are_refused():
    assert fused.fusable_layers(MLP(2, 1, width=50, depth=3)) == 3
    assert fused.fusable_layers(Poisson(dim=2, hard_constraint=True).constrain(MLP(2, 1, width=50, depth=3))) == 3
    assert fused.fusable_layers(MLP(2, 1, width=50, depth=3, activation="gelu")) == 3
    assert fused.fusable_layers(ModifiedMLP(2, 1, width=16, depth=2)) == 4  # two encoders, two gates
    for model in (MLP(2, 1, width=128, depth=3),
                  nn.Sequential(nn.Linear(2, 16), nn.Softplus(beta=2.0), nn.Linear(16, 1)),
                  MLP(2, 1, width=16, depth=2, factorize=True), ModifiedMLP(2, 1, width=16, depth=2, factorize=True),
                  ModifiedMLP(2, 1, width=128, depth=2)):
        for engine in (ForwardEngine(triton=True), StochasticEngine(triton=True)):
            with pytest.raises(ConfigError, match="no layer of this .* can run in the kernels.*derivatives.triton=false"):
                engine.check(model)
    ForwardEngine(triton=True).check(MLP(2, 1, width=64, depth=2))


def test_refusals():
    with pytest.raises(ConfigError, match="autograd engine has none to fuse"):
        make_engine("autograd", triton=True)
    with pytest.raises(ConfigError, match="set one of them to false"):
        ForwardEngine(gram=True, triton=True)
    with pytest.raises(ConfigError, match="derivatives.triton must be true or false"):
        ForwardEngine(triton="yes")
    engine = ForwardEngine(second="hessian", triton=True)
    with pytest.raises(ConfigError, match="fuses the laplacian and diagonal modes.*'hessian'"):
        engine.check_pde(Poisson(dim=2))
    auto = ForwardEngine(triton=True)
    auto.check_pde(Poisson(dim=2))
    assert auto.gram_layers(MLP(300, 1, width=8, depth=2), 300) is None, "gram=auto gives way to the kernels"
    assert "triton=True" in repr(auto) and "triton=True" in repr(StochasticEngine(triton=True))


def test_refused_where_the_kernels_cannot_run(monkeypatch):
    monkeypatch.setattr(fused, "interpreting", lambda: False)
    with pytest.raises(ConfigError, match="run on a CUDA GPU, not on cpu.*derivatives.triton=false"):
        ForwardEngine(triton=True).check_device(torch.device("cpu"))
    ForwardEngine(triton=False).check_device(torch.device("cpu"))
    monkeypatch.setattr(fused.triton, "__version__", "3.0.0")  # PyTorch 2.4's
    with pytest.raises(ConfigError, match=r"but Triton 3\.0\.0 is older than 3\.5, .*Set derivatives.triton=false"):
        ForwardEngine(triton=True).check_device(torch.device("cuda"))
    for newer in ("3.5.0", "3.10.0+git1234", "main"):  # one that is not a version number is not judged
        monkeypatch.setattr(fused.triton, "__version__", newer)
        assert fused.why_unavailable(torch.device("cuda")) is None
    monkeypatch.setattr(fused, "triton", None)
    with pytest.raises(ConfigError, match="needs Triton, which is not installed"):
        StochasticEngine(triton=True)
    assert fused.why_unavailable(torch.device("cuda")).startswith("Triton is not installed")


@pytest.mark.skipif(not fused.interpreting(), reason="checks Triton's CPU interpreter")
def test_an_interpreter_that_cannot_loop_is_named(monkeypatch):
    """Triton 3.6's interpreter with numpy 2.4 fails on the backward kernels' loop: the engine
    says so at start-up (and these tests skip) instead of failing inside a kernel."""
    assert fused.interpreter_problem() is None  # this one runs the probe right

    class Broken:
        def __getitem__(self, grid):
            def launch(*args):
                raise TypeError("only 0-dimensional arrays can be converted to Python scalars")
            return launch

    monkeypatch.setattr(fused, "_loop_probe_kernel", Broken())
    monkeypatch.setattr(fused, "_interpreter_verdict", [])  # probe again
    assert "numpy" in fused.interpreter_problem() and "Triton 3.7 or later" in fused.interpreter_problem()
    with pytest.raises(ConfigError, match="CPU interpreter fails .*0-dimensional.*derivatives.triton=false"):
        ForwardEngine(triton=True).check_device(torch.device("cpu"))


def poisson_on_the_kernels():
    """A 2-D Poisson problem, a float64 network of three fused layers, the forward engine with
    the kernels, and points: what the compiled-loss tests below evaluate."""
    pde = Poisson(dim=2)
    x = {"interior": torch.rand(40, 2, **F64), "boundary": torch.rand(8, 2, **F64)}
    torch.manual_seed(0)
    model = MLP(2, 1, width=16, depth=3).to(**F64)
    engine = ForwardEngine(triton=True)
    engine.check_pde(pde)
    return pde, model, engine, x


def test_compiled_loss_runs_the_kernels_and_matches_eager(monkeypatch):
    """Under torch.compile the fused layers run as they are (a graph break at each) and the rest
    is compiled: the same loss and gradients as the eager step."""
    calls = count_fused_calls(monkeypatch)
    pde, model, engine, x = poisson_on_the_kernels()
    results = []
    for losses in (Trainer().losses, torch.compile(Trainer().losses)):
        model.zero_grad()
        total = losses(pde, model, engine, x)[0]
        total.backward()
        results.append((total.detach(), [p.grad.clone() for p in model.parameters()]))
    assert len(calls) == 2 * 3, "three fused layers, eager and compiled"
    (eager, eager_grads), (compiled, compiled_grads) = results
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=0)
    for g, h in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12)


def test_the_compiler_asks_for_the_kernels_first_and_still_runs_them_uncompiled(monkeypatch):
    """The kernels' uncompiled entry points are made when first asked for, so that importing
    the library does not import torch._dynamo. Asked for first by the compiler as it traces the
    loss, they still run eagerly (a graph break at each) and give the eager loss."""
    calls = []
    for name, function in fused._UNCOMPILED.items():
        def counted(*args, original=function, **kwargs):
            calls.append(args[0])
            return original(*args, **kwargs)

        monkeypatch.setitem(fused._UNCOMPILED, name, counted)
        getattr(fused, name)  # made now, so that monkeypatch puts this one back afterwards
        monkeypatch.delitem(vars(fused), name)  # as if not yet asked for
    pde, model, engine, x = poisson_on_the_kernels()
    compiled = torch.compile(Trainer().losses)(pde, model, engine, x)[0]
    assert len(calls) == 3, "the three fused layers, run by the kernels under the compiler"
    assert all(getattr(vars(fused)[name], "_torchdynamo_disable", False) for name in fused._UNCOMPILED)
    torch.testing.assert_close(compiled, Trainer().losses(pde, model, engine, x)[0], rtol=1e-12, atol=0)
    assert len(calls) == 6


def test_importing_the_library_leaves_out_the_compiler():
    """torch._dynamo takes about a second to import: a launch refused over its settings, or
    ``--help``, should not wait for it."""
    script = ("import sys, train, pinn.fused, pinn.preflight, pinn.trainer, pinn.derivatives, pinn.pdes; "
              "print('torch._dynamo' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_float32_network_matches_unfused_engine(monkeypatch):
    """In float32 (three TF32 products per float32 one on a GPU, float32 products in the
    interpreter) the Laplacian and the parameter gradients agree with the unfused engine's to
    float32 round-off."""
    calls = count_fused_calls(monkeypatch)
    torch.manual_seed(0)
    model = MLP(2, 1, width=50, depth=3).to(DEVICE)
    x = torch.rand(300, 2, device=DEVICE)
    results = []
    for triton in (False, True):
        model.zero_grad()
        jet = propagate(model, Jet.seed(x), triton=triton)
        (jet.sec.square().mean() + jet.value.square().mean()).backward()
        results.append((jet.sec.detach(), [p.grad.clone() for p in model.parameters()]))
    assert len(calls) == 3
    (lap, grads), (fused_lap, fused_grads) = results
    torch.testing.assert_close(fused_lap, lap, rtol=1e-4, atol=1e-5)
    for g, h in zip(fused_grads, grads):
        torch.testing.assert_close(g, h, rtol=1e-3, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_kernels_are_compiled_not_interpreted():
    # the tests above then check the kernels as training runs them
    assert not fused.interpreting() and fused.why_unavailable(torch.device("cuda")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("engine", ["forward", "stochastic"])
def test_replayed_steps_with_kernels_equal_eager_steps(engine, tmp_path, monkeypatch):
    """A CUDA graph of the whole step replays the kernels as the eager steps run them (float64),
    with fresh points copied in every other step; 50-wide layers, whose bias gradients the
    backward kernel hands out as a row of the weight's."""
    from test_cuda_graph import assert_same_training, captured, fit

    kwargs = dict(engine=make_engine(engine, triton=True), resample_every=2, max_steps=14, width=50)
    calls = count_fused_calls(monkeypatch)
    graphed = fit(tmp_path / "graph", cuda_graph=True, **kwargs)
    assert captured(graphed[1]) and calls
    with monkeypatch.context() as m:
        m.setattr("pinn.cuda_graph.WARMUP_STEPS", 10**9)  # every step eager, with the same capturable Adam
        eager = fit(tmp_path / "eager", cuda_graph=True, **kwargs)
    assert not captured(eager[1])
    assert_same_training(graphed, eager)


def test_train_py_takes_the_setting(tmp_path):
    """derivatives.triton reaches the engine from the command line: a run trains with the kernels
    (here in the interpreter) and is refused with one line where they cannot run."""
    import json
    import os

    from conftest import TINY

    def train(run, *overrides, interpret):
        env = {**os.environ, "HYDRA_FULL_ERROR": "0", "TRITON_INTERPRET": "1" if interpret else "0"}
        return subprocess.run([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run}", *TINY,
                               "derivatives=forward", "derivatives.triton=true", *overrides], cwd=ROOT,
                              capture_output=True, text=True, env=env, timeout=300)

    ran = train(tmp_path / "heat", "pde=heat", interpret=DEVICE.type == "cpu")
    assert ran.returncode == 0, ran.stderr
    assert json.loads((tmp_path / "heat" / "metrics.json").read_text())["steps"] == 4
    if DEVICE.type == "cpu":
        refused = train(tmp_path / "refused", interpret=False)
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert refused.returncode == 2 and len(errors) == 1, refused.stderr
        assert "run on a CUDA GPU, not on cpu" in errors[0] and "derivatives.triton=false" in errors[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_preflight_checks_the_kernels_on_the_device(dtype):
    from pinn.preflight import preflight

    model = MLP(2, 1, width=20, depth=3).to(device=DEVICE, dtype=dtype)
    report = preflight(DEVICE, dtype, model=model, in_dim=2, triton=True)
    for mode in fused.MODES:
        assert report[f"derivatives.triton [{mode}]: kernels == unfused forward engine"] < 1000 * torch.finfo(dtype).eps
    assert not any(key.startswith("derivatives.triton") for key in preflight(DEVICE, dtype, model=model, in_dim=2))


def test_preflight_catches_wrong_kernels(monkeypatch):
    """A kernel whose Laplacian is off by one part in a thousand stops the run before training,
    with the setting that avoids it."""
    from pinn.errors import PreflightError
    from pinn.preflight import preflight

    original = fused.linear_activate

    def off(*args, **kwargs):
        value, jac, sec = original(*args, **kwargs)
        return value, jac, sec * 1.001

    monkeypatch.setattr(fused, "linear_activate", off)
    model = MLP(2, 1, width=20, depth=3).to(**F64)
    with pytest.raises(PreflightError, match=r"derivatives.triton \[laplacian\].*Set derivatives.triton=false"):
        preflight(DEVICE, torch.float64, model=model, in_dim=2, triton=True)


@pytest.mark.parametrize("activation", KERNEL_ACTIVATIONS, ids=lambda a: type(a).__name__.lower())
def test_activation_and_its_three_derivatives_match_the_engines_rules(activation):
    """σ, σ', σ'' and σ‴ in the kernels against the module's value and the forward engine's
    rules (pinn/jet.py, tested against autograd), from -30 to 30, in float32 and float64;
    the kernels' sigmoid avoids the cancellation in 1 - σ that the rules have far out."""
    import triton
    import triton.language as tl

    @triton.jit
    def activation_kernel(h_ptr, out_ptr, n, ACT: tl.constexpr, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        a, d1, d2, d3 = fused._activation(tl.load(h_ptr + i, mask=i < n), ACT)
        tl.store(out_ptr + i, a, mask=i < n)
        tl.store(out_ptr + n + i, d1, mask=i < n)
        tl.store(out_ptr + 2 * n + i, d2, mask=i < n)
        tl.store(out_ptr + 3 * n + i, d3, mask=i < n)

    points = torch.cat([torch.linspace(-30, 30, 3001, dtype=torch.float64), torch.tensor([0.0, 1e-8, -1e-8])])
    for dtype in (torch.float32, torch.float64):
        h = points.to(device=DEVICE, dtype=dtype)
        exact = h.double().cpu()  # the rules at the very inputs the kernel gets, in float64
        value = activation(exact)
        expected = torch.stack([value, *RULES[type(activation)](activation, exact, value)])
        out = torch.empty(4, h.numel(), device=DEVICE, dtype=dtype)
        activation_kernel[(triton.cdiv(h.numel(), 128),)](h, out, h.numel(), ACT=fused.activation_code(activation),
                                                          BLOCK=128)
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(out.double().cpu(), expected, rtol=16 * eps, atol=16 * eps, msg=str(dtype))


def test_tanh_in_the_kernels_is_accurate_to_a_few_units_in_the_last_place():
    """The kernels' tanh (from exp, with a series near zero) against torch's, relative error,
    from 1e-9 to 20 and at zero, in both dtypes."""
    import triton
    import triton.language as tl

    @triton.jit
    def tanh_kernel(h_ptr, out_ptr, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out_ptr + i, fused._tanh(tl.load(h_ptr + i, mask=i < n)), mask=i < n)

    magnitudes = torch.logspace(-9, 1.3, 2000, dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        h = torch.cat([magnitudes, -magnitudes, torch.zeros(1, dtype=torch.float64)]).to(device=DEVICE, dtype=dtype)
        out = torch.empty_like(h)
        tanh_kernel[(triton.cdiv(h.numel(), 128),)](h, out, h.numel(), BLOCK=128)
        exact = torch.tanh(h.double())
        relative = (out.double() - exact).abs() / exact.abs().clamp_min(torch.finfo(torch.float64).tiny)
        assert relative.max().item() <= 8 * torch.finfo(dtype).eps, dtype
