r"""Boundary, initial and data conditions, each a residual on its own points.

A condition is given the network, its own points ``x`` ``(N, d)`` and the derivative engine,
and returns a residual ``(N, k)`` that vanishes where the condition holds; the PDE squares and
averages it into a loss term. Conditions that need derivatives (Neumann, Robin, periodic,
initial velocity) take them with the operators of :mod:`pinn.operators` through the engine,
so they work under every engine that carries first derivatives.

Prescribed data ``g`` are numbers (``Dirichlet(0.0)``) or functions of the points alone,
``(N, d) -> (N, k)``, evaluated in the points' dtype and on their device. In training the
functions are computed once per point set and kept until the points change
(:mod:`pinn.point_cache`): data drawn at random or changed during training are not data in
this sense, and the kept values are shared, not to be modified in place.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from pinn.derivatives import Engine
from pinn.errors import PDEError
from pinn.jet import shared_constant
from pinn.models import check_pointwise
from pinn.operators import DerivativeCarrier, grad, partial
from pinn.point_cache import at_points

Model = Callable[[Tensor], Tensor]
Data = Callable[[Tensor], Tensor] | float


def values(u: Tensor | DerivativeCarrier) -> Tensor:
    """The field's values, whether the engine returned a tensor or a carrier of derivatives."""
    return u.value if isinstance(u, DerivativeCarrier) else u


class _MeanSquare(torch.autograd.Function):
    """``r.square().mean()``, whose backward pass is ``r · g · 2/n`` in one operation (``addcmul``
    onto a zero broadcast to ``r``'s shape) where autograd takes four (the mean's division, then
    the square's power, doubling and product), with the same numbers: to the last bit where the
    gradient reaching it is 1 (a term of weight 1), to rounding otherwise. A replayed CUDA graph
    of a small problem pays per kernel. Reverse mode only:
    ``torch.func.grad`` and ``vmap`` take it, forward mode (``torch.func.jvp``) does not (a
    ``jvp`` rule would keep ``torch.compile`` from tracing it)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(r: Tensor) -> Tensor:
        return r.square().mean()

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (r,) = ctx.saved_tensors
        zero = shared_constant("zero", r.dtype, r.device).expand_as(r)
        return torch.addcmul(zero, r, g, value=2 / max(r.numel(), 1))


def mean_square(r: Tensor | DerivativeCarrier) -> Tensor:
    """The mean of the squares of a residual's entries (a field's values where it carries derivatives)."""
    return _MeanSquare.apply(values(r))


def _columns(u: Tensor, components: Sequence[int] | None, what: str) -> Tensor:
    """The network's outputs ``components`` (all of them for ``None``), each checked to be one."""
    _check_outputs(u, what)
    if components is None:
        return u
    picked = list(components)
    for k in picked:
        _check_component(k, u, what)
    if not picked:
        raise PDEError(f"{what}: components is empty; name at least one output, or leave it out for all of them")
    return u[:, picked]


def _component_list(components, what: str) -> list[int] | None:
    """``components`` as a list of output indices (one index alone names one output; ``None``:
    all of them), refused where it is made if it is not one."""
    if components is None:
        return None
    if isinstance(components, numbers.Integral) and not isinstance(components, bool):
        return [int(components)]
    picked = list(components) if isinstance(components, Iterable) and not isinstance(components, (str, bytes)) \
        else None
    if picked is None or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in picked):
        raise PDEError(f"{what}: components must be output indices, as [0] or [0, 1] (or one index, as 0); "
                       f"got {components!r}")
    return [int(k) for k in picked]


def _check_outputs(u: Tensor, what: str) -> None:
    if u.dim() != 2:
        raise PDEError(f"{what}: the network must return (N, m) outputs; it returned shape {tuple(u.shape)}")


def _check_component(k, u: Tensor, what: str) -> None:
    """``k`` is one of the outputs ``u`` ``(N, m)`` of the network."""
    _check_outputs(u, what)
    outputs = u.shape[1]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k < outputs:
        raise PDEError(f"{what}: output {k!r} is not one of the network's: give an index from 0 to {outputs - 1} "
                       f"(it has {outputs} outputs)")


def _data(value, what: str):
    """``value`` itself where it can be data, a number or a function of the points (a tensor
    of values cannot: the points change as training resamples them)."""
    if callable(value) or isinstance(value, numbers.Real) and not isinstance(value, bool):
        return value
    hint = "; values observed at fixed points are PointData" if isinstance(value, Tensor) else ""
    raise PDEError(f"{what} must be a number or a function of the points (N, d) -> (N, k), such as "
                   f"lambda x: torch.sin(x[:, 0:1]); got {type(value).__name__}{hint}")


def prescribed(g: Data, x: Tensor, columns: int, what: str) -> Tensor | float:
    """``g`` where it is a number; else ``g(x)``, checked to broadcast as ``(N, columns)``
    data should (:func:`check_pointwise`): ``(N, columns)``, ``(N, 1)`` (one value for every
    column), one row for all points, or a number. An ``(N,)`` result would broadcast against
    the ``(N, k)`` field into an ``(N, N)`` residual and a wrong, finite loss. At a point set
    the trainer tracks, computed once per set (:mod:`pinn.point_cache`): data are functions of
    the points alone."""
    if not callable(g):
        return g
    return check_pointwise(f"the {what} data", at_points(g, g, x), x, columns)


class Condition(ABC):
    """A residual on a point set of its own."""

    @abstractmethod
    def residual(self, model: Model, x: Tensor, engine: Engine) -> Tensor:
        """``(N, k)``: zero where the condition holds."""

    def loss(self, model: Model, x: Tensor, engine: Engine) -> Tensor:
        """Mean squared residual over the points."""
        if x.shape[0] == 0:
            raise PDEError(f"{type(self).__name__} condition got an empty point set; it needs at least one point")
        return mean_square(self.residual(model, x, engine))


class Dirichlet(Condition):
    r"""Prescribed values :math:`u = g`: residual :math:`u(x) - g(x)`.

    Args:
        value: ``g``, ``(N, d) -> (N, k)`` (or ``(N, 1)``: the same value for each of the ``k``),
            or a number.
        components: which outputs it prescribes (default: all, ``k = m``).
    """

    def __init__(self, value: Data, components: Sequence[int] | None = None):
        self.value = _data(value, f"the {type(self).__name__} data")
        self.components = _component_list(components, f"{type(self).__name__} condition")

    def residual(self, model: Model, x: Tensor, engine: Engine | None = None) -> Tensor:
        u = _columns(model(x), self.components, f"{type(self).__name__} condition")
        return u - prescribed(self.value, x, u.shape[1], type(self).__name__)


class Initial(Dirichlet):
    r"""Initial values :math:`u(x, t_0) = u_0(x)` on points of the ``initial`` region: a
    Dirichlet condition on the time slice :math:`t = t_0`."""


class Neumann(Condition):
    r"""Prescribed normal derivative :math:`\partial u/\partial n = \nabla u \cdot n = g`.

    Args:
        value: ``g``, ``(N, d) -> (N, 1)``, or a number.
        normal: outward unit normals at the points, ``(N, d) -> (N, d)`` (a domain's ``normal``).
        component: which output it applies to.
    """

    def __init__(self, value: Data, normal: Callable[[Tensor], Tensor], component: int = 0):
        self.value = _data(value, f"the {type(self).__name__} data")
        self.normal, self.component = normal, component

    def normal_derivative(self, model: Model, x: Tensor, engine: Engine) -> tuple[Tensor, Tensor]:
        """``(u, ∂u/∂n)`` of the chosen component at ``x``, each ``(N, 1)``."""
        xe, u = engine.evaluate(model, x)
        _check_component(self.component, values(u), f"{type(self).__name__} condition")
        u = u[:, self.component : self.component + 1]
        normal = self.normal(x.detach())
        if not (isinstance(normal, Tensor) and normal.shape == x.shape):  # (N, 1) would broadcast, and sum ∇u
            shape = tuple(normal.shape) if isinstance(normal, Tensor) else type(normal).__name__
            raise PDEError(f"{type(self).__name__} condition: the normal must be a function of the points (N, d) -> "
                           f"(N, d); for points of shape {tuple(x.shape)} it returned {shape} (a domain's normal "
                           "gives the outward unit normals)")
        du_dn = (grad(u, xe) * normal).sum(dim=1, keepdim=True)
        return values(u), du_dn

    def residual(self, model, x, engine):
        return self.normal_derivative(model, x, engine)[1] - prescribed(self.value, x, 1, "Neumann")


class Robin(Neumann):
    r"""A mix of value and flux: :math:`\alpha u + \beta\, \partial u/\partial n = g`.

    Args:
        alpha, beta: the coefficients: numbers, or functions of the points ``(N, d) -> (N, 1)``
            (a heat-transfer coefficient that varies along the wall, say).
        value, normal, component: as for :class:`Neumann`.
    """

    def __init__(self, alpha: float | Callable[[Tensor], Tensor], beta: float | Callable[[Tensor], Tensor], value: Data,
                 normal: Callable[[Tensor], Tensor], component: int = 0):
        super().__init__(value, normal, component)
        if all(isinstance(c, numbers.Number) and c == 0 for c in (alpha, beta)):  # nothing left to train
            raise PDEError("Robin condition: alpha and beta are both 0, which leaves 0 = g; give one of them a nonzero "
                           "value (alpha alone is a Dirichlet condition, beta alone a Neumann one)")
        self.alpha, self.beta = alpha, beta

    def residual(self, model, x, engine):
        u, du_dn = self.normal_derivative(model, x, engine)
        alpha, beta = (check_pointwise(f"the Robin {name}", c(x) if callable(c) else c, x, 1)
                       for name, c in (("alpha", self.alpha), ("beta", self.beta)))
        return alpha * u + beta * du_dn - prescribed(self.value, x, 1, "Robin")


class Periodic(Condition):
    r"""Periodicity along coordinate ``axis`` of period :math:`\mathrm{hi} - \mathrm{lo}`:
    :math:`u(\dots, \mathrm{lo}, \dots) = u(\dots, \mathrm{hi}, \dots)`, and with
    ``derivative=True`` the same for :math:`\partial u/\partial x_{\mathrm{axis}}`.

    Its points are boundary points on either face ``x_axis = lo`` or ``x_axis = hi`` (boundary
    points elsewhere are ignored); each is compared with its partner on the opposite face.
    """

    def __init__(self, axis: int, lo: float, hi: float, *, derivative: bool = True):
        if not isinstance(derivative, bool):  # "no" would switch slope matching on
            raise PDEError(f"Periodic condition: derivative must be True or False; got {derivative!r}")
        self.axis, self.lo, self.hi, self.derivative = axis, float(lo), float(hi), derivative
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise PDEError(f"Periodic condition: need finite lo < hi (the domain's bounds along the axis); "
                           f"got lo={lo}, hi={hi}")

    def residual(self, model, x, engine):
        # A face's points, within a few roundings of the points' dtype (float32 cannot resolve 1e-9)
        scale = max(abs(self.lo), abs(self.hi), self.hi - self.lo)
        tolerance = max(1e-9 * (self.hi - self.lo), 4 * torch.finfo(x.dtype).eps * scale)
        if isinstance(self.axis, bool) or not isinstance(self.axis, numbers.Integral) or not 0 <= self.axis < x.shape[1]:
            raise PDEError(f"Periodic condition: axis {self.axis!r} is not a coordinate of the points; give one from 0 "
                           f"to {x.shape[1] - 1}")
        along = x[:, self.axis]
        on_face = ((along - self.lo).abs() <= tolerance) | ((along - self.hi).abs() <= tolerance)
        # Points beyond lo or hi: lo and hi are not the domain's bounds (a face without points is
        # fine, as its partners stand in for it). One check, so one wait for the device.
        outside = (along < self.lo - tolerance) | (along > self.hi + tolerance)
        if bool(outside.any() | ~on_face.any()):
            if outside.any():
                raise PDEError(f"Periodic condition: some of its points lie beyond x{self.axis} = {self.lo}..{self.hi} "
                               f"(at x{self.axis} = {float(along[outside][0]):g}); lo and hi must be the domain's "
                               f"bounds along axis {self.axis}")
            raise PDEError(f"Periodic condition: none of its {len(x)} points lie on x{self.axis} = {self.lo} or {self.hi}")
        x = x[on_face]
        partner = x.clone()
        partner[:, self.axis] = self.lo + self.hi - x[:, self.axis]
        if not self.derivative:
            return model(x) - model(partner)
        both = torch.cat([x, partner])
        xe, u = engine.evaluate(model, both)
        du = torch.cat([partial(u[:, k : k + 1], xe, self.axis) for k in range(u.shape[1])], dim=1)
        value = values(u)
        n = len(x)
        return torch.cat([value[:n] - value[n:], du[:n] - du[n:]], dim=1)


class InitialVelocity(Condition):
    r"""Initial time derivative :math:`\partial u/\partial t\,(x, t_0) = v_0(x)` (time is the last coordinate).

    Args:
        value: ``v_0``, ``(N, d) -> (N, 1)``, or a number.
        component: which output it applies to.
    """

    def __init__(self, value: Data, component: int = 0):
        self.value, self.component = _data(value, "the initial velocity data"), component

    def residual(self, model, x, engine):
        xe, u = engine.evaluate(model, x)
        _check_component(self.component, values(u), "InitialVelocity condition")
        velocity = partial(u[:, self.component : self.component + 1], xe, x.shape[1] - 1)
        return velocity - prescribed(self.value, x, 1, "initial velocity")


class PointData(nn.Module, Condition):
    r"""Observations :math:`u(x_j) = y_j` at fixed points: residual :math:`u(x_j) - y_j`.

    The points and values are buffers, so they move with the PDE that owns them to the
    training device and dtype, and are saved in checkpoints.

    Args:
        points: ``(P, d)``.
        values: ``(P, k)``.
        components: which outputs were observed (default: all).
    """

    def __init__(self, points: Tensor, values: Tensor, components: Sequence[int] | None = None):
        super().__init__()
        if points.dim() != 2 or values.dim() != 2 or len(points) != len(values) or len(points) == 0:
            raise PDEError(
                f"PointData needs points (P, d) and values (P, k) with the same P > 0; "
                f"got {tuple(points.shape)} and {tuple(values.shape)}"
            )
        self.register_buffer("points", points.clone())
        self.register_buffer("values", values.clone())
        self.components = _component_list(components, "PointData")

    def residual(self, model, x=None, engine=None):
        observed = _columns(model(self.points), self.components, "PointData")
        if observed.shape[1] != self.values.shape[1]:  # (P, 1) values would broadcast over every output
            raise PDEError(f"PointData: it observes {observed.shape[1]} outputs (components={self.components}), but "
                           f"its values are {tuple(self.values.shape)}; give one column per output")
        return observed - self.values

    def loss(self, model, x=None, engine=None):
        return mean_square(self.residual(model))
