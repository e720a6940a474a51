r"""A fast exactness check of the operators on the device and dtype a run will use.

The test suite proves the operators exact in float64 on the CPU; a user's run may be on a GPU,
in float32, with a different PyTorch build. Before training, :func:`preflight` repeats the
checks that must hold bit for bit in any IEEE arithmetic (derivatives of ``sin``, of a
polynomial, ``∇·∇(x·x)`` by every strategy) and cross-checks the Laplacian of the user's own
network against an independent forward-mode computation (or ``torch.func`` for networks the
forward engine does not support) to round-off of the dtype: the forward engine in each of its
modes (and its first derivatives), and the parameters' gradient of its second derivatives
against double backward. With ``derivatives.triton`` it also checks the fused Triton kernels on
that device against the unfused forward engine: values, derivatives and the parameters'
gradients. It takes a fraction of a second for a few inputs and seconds for many (the reverse
Laplacian makes one backward pass per input: 0.55 s at d = 100 and 2.8 s at d = 1,000 for
``experiment=poisson_ball``, one CPU thread beside another job), plus, with the kernels, their
compilation, which the first training step would otherwise do.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from pinn import fused
from pinn.errors import ConfigError, PreflightError
from pinn.jet import Jet, check_supported, gram_laplacian, linear_chain, load_forward_mode_quietly, propagate
from pinn.operators import STRATEGIES, grad, hessian, jacobian, laplacian, partial

#: inputs up to which the pre-flight check also compares the forward engine's full Hessians
MAX_HESSIAN_DIM = 16


def _exact_checks(device: torch.device, dtype: torch.dtype) -> list[tuple[str, float]]:
    """(name, largest error) for every check whose error must be exactly zero."""
    results = []
    kw = dict(device=device, dtype=dtype)

    # d/dx sin x = cos x and d²/dx² sin x = -sin x on x = 0, 0.001, ..., 1.
    x = (torch.arange(1001, **kw) / 1000).reshape(-1, 1).requires_grad_(True)
    u = torch.sin(x)
    results.append(("d/dx sin x == cos x", (grad(u, x) - torch.cos(x)).abs().max().item()))
    results.append(("d2/dx2 sin x == -sin x", (partial(u, x, 0, 0) + torch.sin(x)).abs().max().item()))

    # f = (x + y)(y + 3) at (1, 2): f_x = 5, f_y = 8.
    p = torch.tensor([[1.0, 2.0]], **kw, requires_grad=True)
    f = (p[:, :1] + p[:, 1:]) * (p[:, 1:] + 3)
    expected = torch.tensor([[5.0, 8.0]], **kw)
    results.append(("grad (x+y)(y+3) at (1,2) == (5,8)", (grad(f, p) - expected).abs().max().item()))

    # div grad (x . x) == 2d in d = 3, with v = ones (right: the Hessian is diagonal) and v = identity.
    q = torch.linspace(-1, 1, 30, **kw).reshape(10, 3).requires_grad_(True)
    s = (q * q).sum(dim=1, keepdim=True)
    for strategy in STRATEGIES:
        err = (laplacian(s, q, strategy=strategy) - 6).abs().max().item()
        results.append((f"div grad (x.x) == 6 [{strategy}]", err))
    return results


def _model_checks(model: Callable[[Tensor], Tensor], in_dim: int, device, dtype,
                  n_points: int) -> list[tuple[str, float, float]]:
    """(name, largest error, tolerance): the Laplacian of the user's network by the reverse-mode
    operators against independent computations.

    For a network the forward engine supports, against the engine as it trains (milliseconds):
    its ``laplacian`` mode along the coordinate axes (the forward engine) and along the axes
    permuted and signed (the stochastic engine's path with random directions; along ``±e_i``
    its estimate is exact), its ``diagonal`` mode, and, up to ``MAX_HESSIAN_DIM`` inputs, its
    ``hessian`` mode (every mixed partial, against the reverse-mode Hessian). In the laplacian
    mode, and up to ``MAX_HESSIAN_DIM`` inputs in the diagonal mode, also the parameters'
    gradient of a random combination of the second derivatives, through the engine's own
    backward rules, against double backward. For a chain of linear layers and activations,
    against its Laplacian from Gram matrices too. Otherwise against the trace of
    ``torch.func.hessian`` (whose first use in a process costs about a second of set-up)."""
    gen = torch.Generator().manual_seed(0)
    x = (2 * torch.rand(n_points, in_dim, generator=gen, dtype=torch.float64) - 1).to(device=device, dtype=dtype)
    xg = x.clone().requires_grad_(True)
    out = model(xg)
    ours = laplacian(out, xg)  # (n, m), with its graph to the parameters
    eps = torch.finfo(dtype).eps
    try:
        check_supported(model)
        diagonal = propagate(model, Jet.seed(x, "diagonal"))
    except ConfigError:  # not for the forward engine (a layer it lacks, a hard constraint that reads a trained tensor)
        def point_output(point: Tensor) -> Tensor:
            return model(point.unsqueeze(0)).squeeze(0)  # (m,)

        load_forward_mode_quietly()
        hess = torch.func.vmap(torch.func.hessian(point_output))(x)  # (n, m, d, d)
        second = torch.diagonal(hess, dim1=-2, dim2=-1)  # (n, m, d)
        scale = second.abs().sum(-1).max().item() + 1.0
        error = (ours.detach() - second.sum(-1).detach()).abs().max().item()
        return [("laplacian(model) == trace(torch.func.hessian(model))", error, 1000 * eps * scale)]

    # Directions e_π(i) with random signs: Σ_k v_kᵀ H v_k is the trace of H, exactly.
    signs = 2.0 * torch.randint(0, 2, (in_dim, 1), generator=gen, dtype=torch.float64) - 1
    signed_axes = (torch.eye(in_dim, dtype=torch.float64)[torch.randperm(in_dim, generator=gen)] * signs).to(x)
    second = diagonal.sec.transpose(1, 2)  # (n, m, d)
    scale = second.abs().sum(-1).max().item() + 1.0
    tolerance = 1000 * eps * scale
    forward = propagate(model, Jet.seed(x, "laplacian"))
    along_signed = propagate(model, Jet.seed(x, "laplacian", directions=signed_axes))
    checks = [(name, (ours - lap).abs().max().item(), tolerance) for name, lap in [
        ("laplacian(model): reverse mode == forward mode", forward.sec),
        ("laplacian(model): reverse mode == forward mode [diagonal]", second.sum(-1)),
        ("laplacian(model): reverse mode == forward mode along signed axes [stochastic]", along_signed.sec),
    ]]
    # The first derivatives the forward engine carries with them (u_t, u_x of Burgers, heat, flows)
    first = jacobian(out, xg).detach()  # (n, m, d)
    checks.append(("jacobian(model): reverse mode == forward mode", (first - forward.jac.transpose(1, 2)).abs().max().item(),
                   1000 * eps * (first.abs().sum(-1).max().item() + 1.0)))
    params = [p for p in model.parameters() if p.requires_grad]
    # The parameters' gradient of a random combination of second derivatives, through the
    # engine's own backward rules and by double backward: each mode has rules of its own.
    pairs = [("laplacian", ours, forward.sec)]
    if in_dim <= MAX_HESSIAN_DIM:  # the hessian mode (mixed partials), d² numbers per point and unit
        hessian_jet = propagate(model, Jet.seed(x, "hessian")).sec  # (n, d, d, m)
        reverse = torch.stack([hessian(out[:, j:j + 1], xg) for j in range(out.shape[1])], dim=-1)
        size = reverse.abs().sum(dim=(1, 2)).max().item() + 1.0
        checks.append(("hessian(model): reverse mode == forward mode [hessian]",
                       (reverse - hessian_jet).abs().max().item(), 1000 * eps * size))
        pairs.append(("diagonal", torch.diagonal(reverse, dim1=1, dim2=2).transpose(1, 2), diagonal.sec))
    for mode, by_reverse, by_engine in pairs if params else []:
        error, size = _gradient_error(by_reverse, by_engine, params, gen)
        checks.append((f"parameters' gradient of the second derivatives [{mode}]: double backward == forward "
                       "engine", error, 1000 * eps * size))
    layers = linear_chain(model)
    if layers is not None:
        gram = gram_laplacian(layers, x).operator("laplacian").detach()
        checks.append(("laplacian(model): reverse mode == Gram matrices", (ours - gram).abs().max().item(), tolerance))
    return checks


def _gradient_error(by_reverse: Tensor, by_engine: Tensor, params: list[Tensor], gen: torch.Generator):
    """(largest difference, size of the gradients + 1) between the parameters' gradients of one
    random combination of ``by_reverse`` and of ``by_engine`` (the same derivatives, of the same
    shape). A parameter that one side does not reach has a zero gradient there: double backward
    does not reach a last layer's bias through a hard constraint whose scale has no curvature,
    while the engine gives it an exact zero."""
    weights = torch.randn(by_reverse.shape, generator=gen, dtype=torch.float64).to(by_reverse)

    def gradient(derivatives: Tensor) -> list[Tensor]:
        if not derivatives.requires_grad:  # depends on no trainable parameter
            return [torch.zeros_like(p) for p in params]
        grads = torch.autograd.grad((derivatives * weights).sum(), params, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    reverse, engine = gradient(by_reverse), gradient(by_engine)
    error = max((a - b).abs().max().item() for a, b in zip(engine, reverse))
    return error, max(b.abs().max().item() for b in reverse) + 1.0


def _fused_checks(model: torch.nn.Module, in_dim: int, device, dtype, n_points: int) -> list[tuple[str, float, float]]:
    """(name, largest relative error, tolerance): in each mode the kernels carry, the network's
    value, first and second derivatives, and the parameters' gradients of a fixed random
    combination of all three, with the fused kernels against without them. Empty where the
    kernels cannot run here or would fuse nothing of this network (training then says why)."""
    if fused.why_unavailable(device) is not None or fused.fusable_layers(model) == 0:
        return []
    gen = torch.Generator().manual_seed(1)
    x = (2 * torch.rand(n_points, in_dim, generator=gen, dtype=torch.float64) - 1).to(device=device, dtype=dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    checks = []
    for mode in fused.MODES:
        results, weights = [], None
        for triton in (False, True):
            jet = propagate(model, Jet.seed(x, mode), triton=triton)
            outputs = (jet.value, jet.jac, jet.sec)
            if weights is None:  # the same combination with the kernels
                weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o) for o in outputs]
            total = sum((o * w).sum() for o, w in zip(outputs, weights))
            gradients = torch.autograd.grad(total, params, allow_unused=True)
            results.append([t.detach() for t in outputs] + list(gradients))
        if any((a is None) != (b is None) for a, b in zip(results[1], results[0])):
            error = float("inf")  # a parameter without a gradient on one side only
        else:
            error = max(((a - b).abs().max() / (b.abs().max() + 1)).item()
                        for a, b in zip(results[1], results[0]) if a is not None)
        checks.append((f"derivatives.triton [{mode}]: kernels == unfused forward engine", error,
                       1000 * torch.finfo(dtype).eps))
    return checks


def preflight(device: torch.device | str, dtype: torch.dtype, *, model: Callable[[Tensor], Tensor] | None = None,
              in_dim: int | None = None, n_points: int = 16, triton: bool = False) -> dict[str, float]:
    """Run the checks; raise :class:`PreflightError` naming every failed one.

    Args:
        device, dtype: where and in what precision training will run.
        model: optionally the network to be trained, with ``in_dim`` input coordinates.
        triton: also check the fused kernels (``derivatives.triton``) on ``model``.

    Returns:
        Each check's largest error, and the time taken (``seconds``).
    """
    device = torch.device(device)
    start = time.perf_counter()
    failures, report = [], {}
    for name, err in _exact_checks(device, dtype):
        report[name] = err
        if err != 0:
            failures.append(f"{name}: error {err:.3e} (must be exactly 0)")
    if model is not None:
        if in_dim is None:
            raise ValueError("preflight: give in_dim together with model")
        checks = _model_checks(model, in_dim, device, dtype, n_points)
        if triton:
            checks += _fused_checks(model, in_dim, device, dtype, n_points)
        for name, err, tol in checks:
            report[name] = err
            if not err <= tol:  # also catches NaN
                failures.append(f"{name}: error {err:.3e} > tolerance {tol:.3e}")
    report["seconds"] = time.perf_counter() - start
    if failures:
        kernels = any(f.startswith("derivatives.triton") for f in failures)
        raise PreflightError(
            f"operator pre-flight check failed on {device} in {str(dtype).removeprefix('torch.')}: " + "; ".join(failures)
            + ". Training would use wrong derivatives. "
            + ("Set derivatives.triton=false to train without the fused kernels, " if kernels else "")
            + _what_to_try(device, dtype)
        )
    return report


def _what_to_try(device: torch.device, dtype: torch.dtype) -> str:
    """The settings that might pass where these did not; on the CPU in float64, none: a bug."""
    other = [setting for setting, differs in (("dtype=float64", dtype != torch.float64),
                                              ("device=cpu", device.type != "cpu")) if differs]
    if other:
        return f"Try {' or '.join(other)}, or set preflight=false to train anyway."
    return ("On the CPU in float64 this is a bug in pinn or in this PyTorch build: please report it "
            "(preflight=false trains anyway).")
