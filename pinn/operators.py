r"""Exact differential operators of fields with respect to collocation points.

Reverse-mode automatic differentiation does not hand out "the gradient". For a field
``y = F(x)``, ``torch.autograd.grad(y, x, v)`` returns the vector-Jacobian product
``vᵀ J_F``; the choice of ``v`` decides which operator comes out. Every function here is
one or a few such products with a ``v`` chosen on purpose.

Shapes (the contract of the whole package):

* points ``x`` are ``(N, d)``: one row per point, columns in a fixed order (space, then time);
* a scalar field ``u`` is ``(N, 1)``, never ``(N,)``; a vector field ``v`` is ``(N, m)``.

**Pointwise fields.** The operators assume that row ``i`` of the field depends only on row
``i`` of ``x``, as it does for any network applied point by point (an MLP; not batch
normalization or attention across points). The batch Jacobian ``∂u_{i}/∂x_{j}`` is then
block-diagonal, and ``v = 1`` over the batch selects every block at once: one backward pass
gives the gradient at all ``N`` points.

**Know your Jacobian.** Inside one point, a vector field ``g(x) ∈ R^m`` has a full
``m × d`` Jacobian. ``v = 1`` over the components sums its rows,
``1ᵀ J_g = (Σ_i ∂g_i/∂x_1, …, Σ_i ∂g_i/∂x_d)``, and summing that gives the sum of *all* entries
of ``J_g``, which is the divergence only when ``J_g`` is diagonal (``g_i`` depends on ``x_i``
alone, as ``∇(x·x) = 2x`` does). The divergence needs the trace: one product per component
with ``v = e_i`` (``strategy="loop"``, ``d`` backward passes), or all ``d`` at once with the
identity batched through ``vmap`` (``strategy="batched"``, ``is_grads_batched=True``). The
single-pass ``strategy="ones"`` is offered, and tested, for the diagonal case only.

**Exactness.** The results are exact derivatives of the computed expression, not finite
differences: ``grad(sin(x), x)`` equals ``cos(x)`` bit for bit.

**Cost.** ``grad`` is one backward pass. ``div``, ``jacobian`` and ``laplacian`` with
``strategy="loop"`` take one backward pass per component; a Laplacian in ``d`` dimensions
costs one pass for the gradient plus ``d`` for the divergence, each through a graph that
itself contains a backward pass (double backward).

A field may also arrive as a :class:`DerivativeCarrier` (the forward-mode ``Jet`` of
:mod:`pinn.jet`), which already holds its derivatives; the operators then read the answer off
it, so a residual is written once for every derivative engine.

Every result keeps its graph (``create_graph=True``), so it can be differentiated again and
trained through. That holds under ``torch.no_grad()`` and ``torch.inference_mode()`` too (while
evaluating a trained network, say): the operators switch gradients back on for their own
passes, and need only a field computed from ``x`` with gradients on. Misuse (``x`` without
``requires_grad``, a shape that does not fit, a vector field where a scalar is needed, a field
not computed from ``x``) raises ``ValueError`` with the fix in the message. One case cannot be
told: a field that depends on trained weights but has no path from ``x`` is either constant in
``x`` (the gradient of a linear field) or computed from a copy of ``x`` by mistake. ``grad``,
``laplacian``, ``hessian`` and ``partial`` refuse such a field (the user's own field is rarely
constant); ``jacobian``, ``div`` and ``curl``, which also take derivatives of derivatives,
return zeros for it.
"""

from __future__ import annotations

import functools
import numbers
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["grad", "div", "laplacian", "curl", "jacobian", "hessian", "partial", "STRATEGIES", "DerivativeCarrier"]

#: How the diagonal of a Jacobian is extracted; see the module docstring.
STRATEGIES = ("loop", "batched", "ones")


class DerivativeCarrier(ABC):
    """A field that carries its own derivatives, as a forward-mode engine produces; the
    operators below read from it instead of differentiating."""

    shape: torch.Size
    #: The points ``(N, d)`` the field was computed at, where the engine recorded them: the
    #: operators then refuse other points (another tensor, or some of the columns), which a
    #: carrier, reading its derivatives off itself, would otherwise answer as if given these.
    points: Tensor | None = None

    @abstractmethod
    def operator(self, name: str, *indices: int) -> Tensor:
        """``"grad"``, ``"jacobian"``, ``"divergence"``, ``"laplacian"``, ``"hessian"`` or
        ``"partial"`` (with coordinate indices), shaped as the operator of the same name (or
        :func:`div`) returns it."""


def _carrier_check(u: DerivativeCarrier, x: Tensor, name: str, *, scalar: bool = False,
                   columns: bool = False) -> None:
    """Validate a derivative carrier ``u`` against its points ``x``: the same rows, a scalar
    field where asked, and one component per coordinate where asked (``columns``)."""
    if not (isinstance(x, Tensor) and x.dim() == 2):
        raise ValueError(f"x must have shape (N, d); got {tuple(getattr(x, 'shape', ()))}")
    if u.shape[0] != x.shape[0]:
        raise ValueError(f"{name} has {u.shape[0]} rows but x has {x.shape[0]} points; "
                         "pass the points the field was computed at")
    points = u.points
    if points is not None and points is not x and not _same_points(points, x):
        what = (f"points with {points.shape[1]} coordinates, but x has {x.shape[1]} column{'s' * (x.shape[1] != 1)}"
                if points.shape[1] != x.shape[1] else f"other points than x (another tensor of shape {tuple(x.shape)})")
        raise ValueError(
            f"{name} was computed at {what}; pass the points the engine returned with the field "
            "(x in `x, u = engine.evaluate(model, points)`), all of their columns. For derivatives along some "
            "coordinates only, use partial(u, x, i) and partial(u, x, i, i)"
        )
    if scalar and u.shape[1] != 1:
        raise ValueError(f"{name} must be a scalar field of shape (N, 1); got a vector field of shape {tuple(u.shape)}")
    if columns and u.shape[1] != x.shape[1]:
        raise ValueError(f"{name} must have one component per coordinate of x, shape (N, {x.shape[1]}); "
                         f"got shape {tuple(u.shape)}")


def _same_points(points: Tensor, x: Tensor) -> bool:
    """Whether ``x`` is ``points`` seen through another tensor of all of it (``x.detach()``).
    Compiled code cannot read storage addresses: there only the shapes are compared, which
    still refuses some of the columns."""
    if points.shape != x.shape:
        return False
    if torch.compiler.is_compiling():
        return True
    return points.stride() == x.stride() and points.device == x.device and points.data_ptr() == x.data_ptr()


# --------------------------------------------------------------------------- checks


def _check_points(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor of points with shape (N, d); got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(
            f"x must have shape (N, d), one row per point; got shape {tuple(x.shape)}. "
            "For a single coordinate use x.reshape(-1, 1)."
        )
    if not x.dtype.is_floating_point:  # complex points: autograd would give conjugate (Wirtinger) derivatives
        raise ValueError(f"x must hold real floating-point coordinates (float32 or float64); got {x.dtype}")
    if not x.requires_grad:
        raise ValueError(
            "x does not have requires_grad=True, so nothing can be differentiated with respect to it. "
            "Call x.requires_grad_(True) before computing the field from x. (Under "
            "derivatives.engine=forward or stochastic the points come without it: apply the operators to "
            "the field the engine returned, u or one component u[:, k:k+1], not to a tensor computed from "
            "it such as u * u; or use derivatives.engine=autograd.)"
        )


def _check_field(u: Tensor, x: Tensor, name: str, *, scalar: bool = False, columns: int | None = None) -> None:
    """Validate a field ``u`` of shape ``(N, m)`` computed from points ``x`` of shape ``(N, d)``."""
    _check_points(x)
    if not isinstance(u, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, m); got {type(u).__name__}")
    n = x.shape[0]
    if u.dim() != 2 or u.shape[0] != n:
        hint = f" Use {name}.reshape(-1, 1) for a scalar field." if u.dim() == 1 else ""
        raise ValueError(
            f"{name} must have shape (N, m) with N = {n} rows, one per point of x; "
            f"got shape {tuple(u.shape)}.{hint}"
        )
    if not u.dtype.is_floating_point:  # complex: autograd would differentiate the real part alone
        raise ValueError(f"{name} must be a real floating-point field (float32 or float64); got {u.dtype}. Take "
                         f"the real and imaginary parts as two components: torch.cat([{name}.real, {name}.imag], dim=1)")
    if u.shape[1] == 0:
        raise ValueError(f"{name} has no components (shape {tuple(u.shape)}): a slice past the network's outputs? "
                         "A PDE's n_outputs sets how many outputs its network has")
    if scalar and u.shape[1] != 1:
        raise ValueError(
            f"{name} must be a scalar field of shape (N, 1); got a vector field of shape {tuple(u.shape)}. "
            f"Take one component ({name}[:, k:k+1]) or use jacobian()/div() for vector fields."
        )
    if columns is not None and u.shape[1] != columns:
        raise ValueError(
            f"{name} must have one component per coordinate of x, shape (N, {columns}); "
            f"got shape {tuple(u.shape)}"
        )
    if not u.requires_grad:
        raise ValueError(
            f"{name} was not computed from x: it does not require grad. Compute it from x after "
            "x.requires_grad_(True), and not under torch.no_grad() or torch.inference_mode()."
        )


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")


# --------------------------------------------------------------------------- the one primitive


def _vjp(y: Tensor, x: Tensor, v: Tensor, *, batched: bool = False) -> Tensor:
    r"""``vᵀ J_y`` with respect to ``x``, keeping the graph.

    ``y`` is ``(N, m)``, ``v`` is ``(N, m)`` (or ``(B, N, m)`` with ``batched=True``, a batch of
    ``B`` vectors pushed through ``vmap``); the result is shaped like ``x`` (or ``(B,) + x.shape``).
    A ``y`` that no longer depends on ``x`` (the derivative of a linear field, say) has a zero
    derivative, which is returned as zeros rather than raised as an error. (Autograd cannot tell
    that case from a field computed from ``x.detach()``, whose derivatives come out zero too.)
    """
    shape = (v.shape[0], *x.shape) if batched else x.shape
    if not y.requires_grad:
        return x.new_zeros(shape)
    (g,) = torch.autograd.grad(y, x, v, create_graph=True, allow_unused=True, is_grads_batched=batched)
    return x.new_zeros(shape) if g is None else g


def _not_from_x(name: str) -> ValueError:
    return ValueError(
        f"{name} does not depend on x: the graph from x to {name} is broken. Compute {name} from "
        "x itself (not from x.detach(), a copy, or a tensor made before x.requires_grad_(True))."
    )


def _first_derivatives(u: Tensor, x: Tensor, name: str) -> Tensor:
    """The gradient of the user's scalar field, failing loudly if it does not depend on ``x``."""
    (g,) = torch.autograd.grad(u, x, torch.ones_like(u), create_graph=True, allow_unused=True)
    if g is None:
        raise _not_from_x(name)
    return g


def _diagonal(v: Tensor, x: Tensor, strategy: str) -> Tensor:
    r"""``(∂v_1/∂x_1, …, ∂v_d/∂x_d)`` per point, shape ``(N, d)``, for ``v`` of shape ``(N, d)``."""
    d = x.shape[1]
    if strategy == "loop":
        # v = e_i on the components: row i of J_v, of which we keep entry i. d passes.
        return torch.stack([_vjp(v[:, i : i + 1], x, torch.ones_like(v[:, :1]))[:, i] for i in range(d)], dim=1)
    if strategy == "batched":
        # All d products e_iᵀ J_v in one vmapped pass; grad_outputs[i] = e_i at every point.
        eye = torch.eye(d, dtype=v.dtype, device=v.device)
        rows = _vjp(v, x, eye[:, None, :].expand(d, v.shape[0], d), batched=True)  # (d, N, d)
        return torch.diagonal(rows, dim1=0, dim2=2)  # (N, d)
    # strategy == "ones": 1ᵀ J_v sums the columns of J_v, the diagonal only when J_v is diagonal.
    return _vjp(v, x, torch.ones_like(v))


def _gradients_on(operator):
    """Run an operator's backward passes with gradients recorded, whatever the caller's mode.

    Under ``torch.no_grad()`` a first derivative would still come out (``autograd.grad`` reads
    the field's graph, made earlier), but not the graph of it that a second derivative
    differentiates: the second pass would find nothing to differentiate.
    """
    @functools.wraps(operator)
    def with_gradients(u, x, *args, **kwargs):
        if isinstance(u, DerivativeCarrier) or (torch.is_grad_enabled() and not torch.is_inference_mode_enabled()):
            return operator(u, x, *args, **kwargs)
        with torch.inference_mode(False), torch.enable_grad():
            return operator(u, x, *args, **kwargs)
    return with_gradients


# --------------------------------------------------------------------------- operators


@_gradients_on
def grad(u: Tensor, x: Tensor) -> Tensor:
    r"""Gradient :math:`\nabla u = (\partial u/\partial x_1, \dots, \partial u/\partial x_d)`.

    Args:
        u: scalar field ``(N, 1)`` computed pointwise from ``x``.
        x: points ``(N, d)`` with ``requires_grad=True``.

    Returns:
        ``(N, d)``. One backward pass with ``v = 1`` over the batch, which selects every
        point's own block of the block-diagonal batch Jacobian.
    """
    if isinstance(u, DerivativeCarrier):
        _carrier_check(u, x, "u", scalar=True)
        return u.operator("grad")
    _check_field(u, x, "u", scalar=True)
    return _first_derivatives(u, x, "u")


@_gradients_on
def div(v: Tensor, x: Tensor, *, strategy: str = "loop") -> Tensor:
    r"""Divergence :math:`\nabla\cdot v = \sum_i \partial v_i/\partial x_i = \operatorname{tr} J_v`.

    Args:
        v: vector field ``(N, d)``, one component per coordinate of ``x``.
        x: points ``(N, d)`` with ``requires_grad=True``.
        strategy: ``"loop"`` (default): ``d`` backward passes with ``v = e_i``, correct for any
            field. ``"batched"``: the same ``d`` products in one ``vmap``-ed pass with the
            identity (``is_grads_batched=True``). ``"ones"``: one pass with ``v = 1``, which
            returns :math:`\sum_{ij} \partial v_i/\partial x_j`; it equals the divergence **only
            when** :math:`J_v` is diagonal (each ``v_i`` depends on ``x_i`` alone) and is wrong
            otherwise.

    Returns:
        ``(N, 1)``.
    """
    _check_strategy(strategy)
    if isinstance(v, DerivativeCarrier):
        _carrier_check(v, x, "v", columns=True)
        return v.operator("divergence")
    _check_points(x)  # before x.shape[1] is read
    _check_field(v, x, "v", columns=x.shape[1])
    return _diagonal(v, x, strategy).sum(dim=1, keepdim=True)


@_gradients_on
def laplacian(u: Tensor, x: Tensor, *, strategy: str = "loop") -> Tensor:
    r"""Laplacian :math:`\Delta u = \nabla\cdot\nabla u = \sum_i \partial^2 u/\partial x_i^2`.

    Args:
        u: field ``(N, m)``; each of the ``m`` components gets its own Laplacian.
        x: points ``(N, d)`` with ``requires_grad=True``.
        strategy: how the divergence of ``∇u`` is taken, as in :func:`div`. The Hessian of a
            generic field is not diagonal, so ``"ones"`` is exact only for separable fields
            :math:`u = \sum_i f_i(x_i)`.

    Returns:
        ``(N, m)``. Cost per component: one backward pass for ``∇u`` plus ``d`` (``"loop"``)
        or one batched (``"batched"``) double-backward pass for its divergence.
    """
    _check_strategy(strategy)
    if isinstance(u, DerivativeCarrier):
        _carrier_check(u, x, "u")
        return u.operator("laplacian")
    _check_field(u, x, "u")
    columns = []
    for k in range(u.shape[1]):
        g = _first_derivatives(u[:, k : k + 1], x, "u")
        columns.append(_diagonal(g, x, strategy).sum(dim=1))
    return torch.stack(columns, dim=1)


@_gradients_on
def jacobian(v: Tensor, x: Tensor, *, strategy: str = "loop") -> Tensor:
    r"""Jacobian :math:`J_{kj} = \partial v_k/\partial x_j` at every point.

    Args:
        v: field ``(N, m)``.
        x: points ``(N, d)`` with ``requires_grad=True``.
        strategy: ``"loop"``: ``m`` backward passes with ``v = e_k`` (row ``k``).
            ``"batched"``: the ``m`` rows in one ``vmap``-ed pass with the identity.

    Returns:
        ``(N, m, d)``.
    """
    if strategy not in ("loop", "batched"):
        raise ValueError(f"unknown strategy {strategy!r} for jacobian; valid strategies: loop, batched")
    if isinstance(v, DerivativeCarrier):
        _carrier_check(v, x, "v")
        return v.operator("jacobian")
    _check_field(v, x, "v")
    return _rows(v, x, strategy)


def _rows(v: Tensor, x: Tensor, strategy: str) -> Tensor:
    """All rows ``e_kᵀ J_v`` of the Jacobian, ``(N, m, d)``."""
    m = v.shape[1]
    if strategy == "batched":
        eye = torch.eye(m, dtype=v.dtype, device=v.device)
        rows = _vjp(v, x, eye[:, None, :].expand(m, v.shape[0], m), batched=True)  # (m, N, d)
        return rows.permute(1, 0, 2)
    return torch.stack([_vjp(v[:, k : k + 1], x, torch.ones_like(v[:, :1])) for k in range(m)], dim=1)


@_gradients_on
def hessian(u: Tensor, x: Tensor, *, strategy: str = "loop") -> Tensor:
    r"""Hessian :math:`H_{ij} = \partial^2 u/\partial x_i \partial x_j`: the Jacobian of ``∇u``.

    Args:
        u: scalar field ``(N, 1)``.
        x: points ``(N, d)`` with ``requires_grad=True``.
        strategy: as in :func:`jacobian`.

    Returns:
        ``(N, d, d)``, symmetric up to round-off. Cost: one pass for ``∇u`` plus ``d``.
    """
    if strategy not in ("loop", "batched"):
        raise ValueError(f"unknown strategy {strategy!r} for hessian; valid strategies: loop, batched")
    if isinstance(u, DerivativeCarrier):
        _carrier_check(u, x, "u", scalar=True)
        return u.operator("hessian")
    _check_field(u, x, "u", scalar=True)
    return _rows(_first_derivatives(u, x, "u"), x, strategy)


@_gradients_on
def curl(v: Tensor, x: Tensor) -> Tensor:
    r"""Curl of a vector field in two or three dimensions.

    * 3-D, ``v = (v_1, v_2, v_3)``: :math:`\nabla\times v = (\partial_2 v_3 - \partial_3 v_2,\
      \partial_3 v_1 - \partial_1 v_3, \partial_1 v_2 - \partial_2 v_1)`, shape ``(N, 3)``.
    * 2-D, ``v = (v_1, v_2)``: the scalar curl :math:`\partial_1 v_2 - \partial_2 v_1`,
      shape ``(N, 1)`` (the third component of the 3-D curl of ``(v_1, v_2, 0)``).

    Cost: one backward pass per component of ``v`` (its Jacobian).
    """
    d = x.shape[1] if isinstance(x, Tensor) and x.dim() == 2 else None
    if d not in (2, 3):
        raise ValueError(f"curl is defined for points (N, 2) or (N, 3); x has shape {tuple(getattr(x, 'shape', ()))}")
    if isinstance(v, DerivativeCarrier):
        _carrier_check(v, x, "v", columns=True)
    else:
        _check_field(v, x, "v", columns=d)
    J = jacobian(v, x)  # J[:, k, j] = ∂v_k/∂x_j
    if d == 2:
        return (J[:, 1, 0] - J[:, 0, 1]).unsqueeze(1)
    return torch.stack([J[:, 2, 1] - J[:, 1, 2], J[:, 0, 2] - J[:, 2, 0], J[:, 1, 0] - J[:, 0, 1]], dim=1)


@_gradients_on
def partial(u: Tensor, x: Tensor, *indices: int) -> Tensor:
    r"""Mixed partial derivative :math:`\partial^k u / \partial x_{i_1} \cdots \partial x_{i_k}`.

    ``partial(u, x, 0)`` is :math:`u_{x}`, ``partial(u, x, 0, 0)`` is :math:`u_{xx}`,
    ``partial(u, x, 0, 1)`` is :math:`u_{xy}`; any order works.

    Args:
        u: scalar field ``(N, 1)``.
        x: points ``(N, d)`` with ``requires_grad=True``.
        indices: coordinate indices ``0 ≤ i < d``, differentiated in the order given.

    Returns:
        ``(N, 1)``. Cost: one backward pass per index. When a residual needs several
        derivatives of one field, compute ``g = grad(u, x)`` once and differentiate its
        columns, rather than repeating the first pass.
    """
    if isinstance(u, DerivativeCarrier):
        _carrier_check(u, x, "u", scalar=True)
    else:
        _check_points(x)
    d = x.shape[1]
    if not indices:
        raise ValueError("partial(u, x, i, ...) needs at least one coordinate index, e.g. partial(u, x, 0)")
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < d:
            raise ValueError(f"partial: coordinate index {i!r} is not an integer in [0, {d}) for x of shape {tuple(x.shape)}")
    indices = tuple(int(i) for i in indices)  # NumPy's integers too
    if isinstance(u, DerivativeCarrier):
        return u.operator("partial", *indices)
    _check_field(u, x, "u", scalar=True)
    out = _first_derivatives(u, x, "u")[:, indices[0] : indices[0] + 1]
    for i in indices[1:]:
        out = _vjp(out, x, torch.ones_like(out))[:, i : i + 1]
    return out
