import pytest
import torch

import pinn.preflight
from pinn.errors import PreflightError
from pinn.models import MLP
from pinn.preflight import preflight


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_preflight_passes_on_cpu(dtype):
    model = MLP(3, 2, width=8, depth=2).to(dtype)
    report = preflight("cpu", dtype, model=model, in_dim=3)
    assert all(err == 0 for name, err in report.items() if name.startswith(("d", "grad")))
    assert report["seconds"] < 30  # recorded, not a timing assertion: only guards against a hang


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_preflight_passes_on_cuda():
    preflight("cuda", torch.float32, model=MLP(2, 1).cuda(), in_dim=2)


def test_preflight_fails_when_a_derivative_is_off(monkeypatch):
    real_grad = pinn.preflight.grad
    monkeypatch.setattr(pinn.preflight, "grad", lambda u, x: real_grad(u, x) * (1 + 1e-15))
    with pytest.raises(PreflightError, match=r"d/dx sin x == cos x: error .*must be exactly 0"):
        preflight("cpu", torch.float64)


class MixesPoints(torch.nn.Module):
    """Not pointwise: each output depends on every point, so v = 1 picks up cross terms."""

    def __init__(self):
        super().__init__()
        self.inner = MLP(2, 1, width=8, depth=1)

    def forward(self, x):
        return self.inner(x) + self.inner(x).mean() ** 2


def test_preflight_refuses_a_model_that_is_not_pointwise():
    with pytest.raises(PreflightError, match=r"torch.func.hessian.*> tolerance"):
        preflight("cpu", torch.float64, model=MixesPoints().double(), in_dim=2)


def test_preflight_cross_checks_supported_networks_by_forward_mode():
    report = preflight("cpu", torch.float64, model=MLP(2, 1, width=8, depth=2).double(), in_dim=2)
    assert report["laplacian(model): reverse mode == forward mode"] <= 1e-12
    # a chain of linear layers and activations is also checked by its Laplacian from Gram matrices
    assert report["laplacian(model): reverse mode == Gram matrices"] <= 1e-12


def test_preflight_catches_a_wrong_gram_laplacian(monkeypatch):
    import pinn.preflight
    from pinn.jet import GramLaplacian, gram_laplacian

    def off_by_one(layers, x):
        u = gram_laplacian(layers, x)
        return GramLaplacian(u.value, u.operator("laplacian") + 1)

    monkeypatch.setattr(pinn.preflight, "gram_laplacian", off_by_one)
    with pytest.raises(PreflightError, match=r"reverse mode == Gram matrices: error 1.0.*> tolerance"):
        preflight("cpu", torch.float64, model=MLP(2, 1, width=8, depth=2).double(), in_dim=2)


def _patch_activation(monkeypatch, *, curvature: float = 1.0, mixed: float = 1.0, input_gradient: float = 1.0,
                      diagonal_input_gradient: float = 1.0, slope: float = 1.0):
    """The forward engine's activation rule made wrong: its summed second derivative scaled by
    ``curvature`` (the laplacian mode only), its full Hessian by ``mixed`` (the hessian mode
    only), or its backward rule's input gradient by ``input_gradient`` (laplacian mode) or
    ``diagonal_input_gradient`` (diagonal mode), or its first derivatives by ``slope`` (laplacian
    mode)."""
    import pinn.jet as jet

    forward, backward = jet._Activate.forward, jet._Activate.backward

    def wrong_forward(ctx, h, jac, sec, module, rule, summed):
        value, first, second = forward(ctx, h, jac, sec, module, rule, summed)
        return value, first * slope if summed else first, second * curvature if summed else second

    activate = jet.Jet.activate  # the hessian mode's activation step

    def wrong_activate(self, d0, d1, d2):
        out = activate(self, d0, d1, d2)
        return jet.Jet(out.value, out.jac, out.second, out.sec * mixed, exact=out.exact) if out.second == "hessian" else out

    monkeypatch.setattr(jet.Jet, "activate", wrong_activate)

    def wrong_backward(ctx, *grads):
        out = backward(ctx, *grads)
        factor = input_gradient if ctx.summed else diagonal_input_gradient
        return (None if out[0] is None else factor * out[0], *out[1:])

    monkeypatch.setattr(jet._Activate, "forward", staticmethod(wrong_forward))
    monkeypatch.setattr(jet._Activate, "backward",
                        staticmethod(torch.autograd.function.once_differentiable(wrong_backward)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_preflight_checks_the_forward_engine_as_it_trains(monkeypatch, dtype):
    model = MLP(2, 1, width=8, depth=2).to(dtype)
    report = preflight("cpu", dtype, model=model, in_dim=2)
    assert {"laplacian(model): reverse mode == forward mode [diagonal]",
            "laplacian(model): reverse mode == forward mode along signed axes [stochastic]",
            "parameters' gradient of the second derivatives [laplacian]: double backward == forward engine",
            "parameters' gradient of the second derivatives [diagonal]: double backward == forward engine"} <= report.keys()
    # the laplacian mode's own curvature rule, 1 % off: the forward and stochastic engines' path
    with monkeypatch.context() as patch:
        _patch_activation(patch, curvature=1.01)
        with pytest.raises(PreflightError, match=r"reverse mode == forward mode: error .*"
                                                 r"reverse mode == forward mode along signed axes \[stochastic\]"):
            preflight("cpu", dtype, model=model, in_dim=2)
    # the first derivatives it carries, 1 % off (u_t, u_x: Burgers, heat, the flows)
    with monkeypatch.context() as patch:
        _patch_activation(patch, slope=1.01)
        with pytest.raises(PreflightError, match=r"jacobian\(model\): reverse mode == forward mode: error .* > tolerance"):
            preflight("cpu", dtype, model=model, in_dim=2)
    # the hessian mode's rule, 1 % off (the mixed partials some PDEs read)
    with monkeypatch.context() as patch:
        _patch_activation(patch, mixed=1.01)
        with pytest.raises(PreflightError, match=r"^[^;]*hessian\(model\): reverse mode == forward mode \[hessian\]: "
                                                 r"error .* > tolerance [^;]*$"):
            preflight("cpu", dtype, model=model, in_dim=2)
    # the engine's backward rule, by which training takes the parameters' gradients
    with monkeypatch.context() as patch:
        _patch_activation(patch, input_gradient=2.0)
        with pytest.raises(PreflightError, match=r"parameters' gradient of the second derivatives \[laplacian\]: "
                                                 r"double backward == forward engine: error .* > tolerance") as refused:
            preflight("cpu", dtype, model=model, in_dim=2)
    with monkeypatch.context() as patch:  # the diagonal mode's backward rule (u_xx and u_tt apart: heat, wave)
        _patch_activation(patch, diagonal_input_gradient=2.0)
        with pytest.raises(PreflightError, match=r"^[^;]*gradient of the second derivatives \[diagonal\]: double "
                                                 r"backward == forward engine: error [^;]*$"):
            preflight("cpu", dtype, model=model, in_dim=2)
    # what to try: another dtype or device where there is one; on the CPU in float64, a bug to report
    if dtype == torch.float32:
        assert "Try dtype=float64, or set preflight=false" in str(refused.value)
    else:
        assert "On the CPU in float64 this is a bug" in str(refused.value) and "Try " not in str(refused.value)


@pytest.mark.parametrize("scale", [lambda x: x[:, 1:] + 1.0, lambda x: 1.0, lambda x: torch.ones_like(x[:, :1])],
                         ids=["affine", "number", "constant"])
def test_preflight_passes_a_hard_constraint_whose_scale_has_no_curvature(scale):
    # Double backward does not reach the network's last bias through Δ(s N) when Δs = 0, where the
    # forward engine gives it an exact zero: the same gradient, not one missing on one side.
    from pinn.models import OutputTransform

    model = OutputTransform(MLP(2, 1, width=16, depth=2), lambda x: torch.sin(3 * x[:, :1]), scale).double()
    preflight("cpu", torch.float64, model=model, in_dim=2)


def test_preflight_checks_a_hard_constraint_that_reads_a_trained_tensor_by_torch_func():
    # The forward engine refuses such a constraint (at the first step, under derivatives=forward);
    # the autograd engine trains it, and the pre-flight check takes its Laplacian another way.
    from pinn.models import OutputTransform

    width = torch.nn.Parameter(torch.tensor(1.5, dtype=torch.float64))
    model = OutputTransform(MLP(2, 1, width=8, depth=2), lambda x: torch.zeros_like(x[:, :1]),
                            lambda x: 1 - (x / width).square().sum(dim=1, keepdim=True)).double()
    report = preflight("cpu", torch.float64, model=model, in_dim=2)
    assert "laplacian(model) == trace(torch.func.hessian(model))" in report


def test_preflight_passes_networks_without_trainable_curvature():
    preflight("cpu", torch.float64, model=torch.nn.Linear(3, 1).double(), in_dim=3)  # Δu = 0, no graph to it
    frozen = MLP(2, 1, width=8, depth=2).double().requires_grad_(False)
    preflight("cpu", torch.float64, model=frozen, in_dim=2)
