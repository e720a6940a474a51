r"""Derivative engines: how a network is evaluated so that the operators can differentiate it.

A PDE's loss asks the engine for ``(x, u)`` at its points and hands both to the operators of
:mod:`pinn.operators`; it never calls ``torch.autograd`` itself, so the engine can change
underneath it (``derivatives`` in the config).

* ``autograd`` (any network): ``x`` is marked ``requires_grad`` and ``u = model(x)`` is an
  ordinary tensor; the operators differentiate it by reverse mode, nesting backward passes for
  second derivatives.
* ``forward`` (networks of supported layers, see :mod:`pinn.jet`): ``u`` is a
  :class:`~pinn.jet.Jet` carrying the value, the exact first derivatives and the second
  derivatives named by ``second`` (``laplacian``, ``diagonal`` or ``hessian``) from one forward
  pass; the operators read them off. For a PDE that reads only values and Laplacians it can
  carry Gram matrices of the first derivatives instead (``gram``), whose cost does not grow
  with the dimension.
* ``stochastic``: as ``forward``, but along ``samples`` random Rademacher directions, drawn
  afresh at every evaluation from PyTorch's (seeded, checkpointed) random state and shared by
  the points of that evaluation. Each point's Laplacian is then an unbiased estimate whose cost
  grows with ``samples``, not with the dimension: the engine for Laplacians in hundreds or
  thousands of dimensions. The square of an unbiased estimate is not an unbiased estimate of
  the square: with ``unbiased`` the trainer multiplies two independent estimates instead.

Under the forward and stochastic engines the field at all of a loss evaluation's point sets
(the interior, the boundary...) can come from one evaluation at the sets stacked
(``one_pass``, :class:`OnePass`) instead of one per set: fewer, larger operations, which is
what a small problem on a GPU is bound by.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from pinn import fused
from pinn.errors import ConfigError, check_auto_flag, check_choice, check_flag, check_positive
from pinn.jet import (SECOND_ORDER, Jet, check_not_empty, check_supported, gram_laplacian, gram_laplacian_of_transform,
                      linear_chain, propagate)
from pinn.models import OutputTransform
from pinn.point_cache import at_points


class Engine(ABC):
    """Evaluates a pointwise network so that operators can be applied to the result."""

    name: str
    triton = False  # whether layers run as the fused Triton kernels (derivatives.triton)

    def check(self, model: nn.Module) -> None:
        """Raise before training if this engine cannot differentiate ``model``."""

    def check_pde(self, pde) -> None:
        """Raise before training if this engine cannot give what ``pde``'s residuals ask for
        (its ``second_order`` and ``needs_gradient``); adapt to it where the engine's settings allow.
        (Here: that the two are declared as they can be, which every engine checks first.)"""
        check_choice(f"{type(pde).__name__}.second_order", pde.second_order, ("none", *SECOND_ORDER))
        check_flag(f"{type(pde).__name__}.needs_gradient", pde.needs_gradient)

    def check_device(self, device: torch.device) -> None:
        """Raise before training if this engine cannot run on ``device``."""
        if self.triton:
            fused.check_available(device)

    @abstractmethod
    def evaluate(self, model: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor | Jet]:
        """Return ``(x, u)``: the points as the operators need them and the field ``u = model(x)``."""

    def shared(self, model: Callable[[Tensor], Tensor], points: dict[str, Tensor]) -> Callable[[Tensor], Tensor]:
        """What a loss evaluation on ``points`` hands the PDE as its network: ``model``, or a
        :class:`OnePass` of it over ``points`` where this engine's ``one_pass`` setting asks for one."""
        return model


def check_points(model, x: Tensor) -> None:
    """Refuse points that ``model`` cannot take, saying what is wrong, where the engines would
    fail with torch's own message (a matrix product of the wrong shapes or dtypes)."""
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"the points must be a tensor (N, d), one row per point; got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"the points must be floating-point; got {x.dtype}: convert them to the network's dtype, "
                         "e.g. x.to(torch.float32)")
    if not isinstance(model, nn.Module):
        return
    inner = model.net if isinstance(model, OutputTransform) else model
    in_dim = getattr(inner, "in_dim", None)
    if isinstance(in_dim, int) and x.shape[1] != in_dim:
        raise ValueError(f"{type(inner).__name__} takes points of shape (N, {in_dim}); got {tuple(x.shape)}")
    weight = next(model.parameters(), None)
    if weight is not None and (x.dtype != weight.dtype or x.device != weight.device):
        raise ValueError(f"the points are {x.dtype} on {x.device}, the network's weights {weight.dtype} on "
                         f"{weight.device}: convert one to the other (x.to(...) or model.to(...))")


class AutogradEngine(Engine):
    """Reverse-mode automatic differentiation through ``torch.autograd.grad``."""

    name = "autograd"

    def evaluate(self, model, x):
        check_points(model, x)
        x = x.detach().requires_grad_(True)
        return x, model(x)

    def __repr__(self) -> str:
        return "AutogradEngine()"


class ForwardEngine(Engine):
    """Forward-mode derivatives along the coordinate axes, exact, in one pass.

    Args:
        second: the second derivatives to carry: ``laplacian`` (their sum, the cheapest),
            ``diagonal`` (each ``∂²u/∂x_i²``), ``hessian`` (every mixed partial), or ``auto``:
            what the PDE asks for (its ``second_order``), set by :meth:`check_pde`; until then
            ``laplacian``.
        gram: for a PDE that reads only values and Laplacians, on a network of alternating
            linear layers and activations, carry the Gram matrices of the first derivatives
            (``width × width`` per point) instead of the first derivatives (``d × width``), so
            that the cost stops growing with the dimension ``d`` (:func:`pinn.jet.gram_laplacian`;
            inside a hard constraint, :func:`pinn.jet.gram_laplacian_of_transform`). ``auto``:
            where that is cheaper, ``d`` at least twice the widest hidden layer (not with
            ``triton``); ``True``: always (an error where it cannot apply); ``False``: never.
        triton: run each layer of an MLP but the last, or a modified MLP's encoders and gates
            (linear map and activation), as one Triton kernel, forward and backward
            (:mod:`pinn.fused`): fewer kernels and less memory traffic on a GPU. ``laplacian``
            and ``diagonal`` modes; needs a CUDA device and Triton.
        one_pass: evaluate the network once at all the point sets of a loss evaluation, stacked,
            instead of once per set (:class:`OnePass`): ``auto`` on a CUDA device up to
            :data:`ONE_PASS_POINTS` points in all (not with Gram matrices), ``True``, ``False``.
    """

    name = "forward"

    def __init__(self, *, second: str = "auto", gram: str | bool = "auto", triton: bool = False,
                 one_pass: str | bool = "auto"):
        self.one_pass = check_auto_flag("derivatives.one_pass", one_pass)
        check_choice("derivatives.second", second, ("auto", *SECOND_ORDER))
        check_auto_flag("derivatives.gram", gram)
        if gram is True and second not in ("auto", "laplacian"):
            raise ConfigError(f"derivatives.gram=true carries Laplacians only, not second derivatives as {second!r}; "
                              "set derivatives.gram=false or derivatives.second=laplacian")
        self.triton = _check_triton(triton)
        if self.triton and gram is True:
            raise ConfigError("derivatives.triton=true fuses the layers that carry first derivatives, which "
                              "derivatives.gram=true does not; set one of them to false")
        self.requested = second
        self.second = "laplacian" if second == "auto" else second
        self.gram = gram
        self.values_and_laplacians = False  # whether the PDE reads nothing else (set by check_pde)

    def check(self, model):
        check_supported(model)
        if self.gram is True and linear_chain(_network(model)) is None:
            raise _not_a_chain(model)
        if self.triton:
            fused.check_fusable(model)

    def check_pde(self, pde):
        super().check_pde(pde)
        need = pde.second_order if pde.second_order in SECOND_ORDER else "laplacian"
        if self.requested == "auto":
            self.second = need
        elif SECOND_ORDER.index(need) > SECOND_ORDER.index(self.second):
            raise ConfigError(
                f"{type(pde).__name__} needs second derivatives as {need!r} but derivatives.second={self.second} "
                f"carries less; set derivatives.second={need} (or auto)"
            )
        self.values_and_laplacians = self.second == "laplacian" and not pde.needs_gradient
        if self.triton and self.second not in fused.MODES:
            raise ConfigError(f"derivatives.triton=true fuses the laplacian and diagonal modes, but {type(pde).__name__} "
                              f"needs second derivatives as {self.second!r}; set derivatives.triton=false")
        if self.gram is True and not self.values_and_laplacians:
            wants = "exact first derivatives" if pde.needs_gradient else f"second derivatives as {self.second!r}"
            raise ConfigError(f"derivatives.gram=true gives values and Laplacians only, but {type(pde).__name__} also "
                              f"needs {wants}; set derivatives.gram=auto or false")

    def gram_layers(self, model, dim: int) -> list[nn.Module] | None:
        """The layers to propagate Gram matrices through, or ``None`` to carry first derivatives."""
        if self.gram is False or self.second != "laplacian" or self.triton:
            return None
        if self.gram == "auto" and not self.values_and_laplacians:
            return None
        layers = linear_chain(_network(model))  # walked at every call: a layer replaced since is seen
        if self.gram is True:
            if layers is None:
                check_supported(model)  # a layer no engine mode can propagate: say so first
                raise _not_a_chain(model)
            return layers
        if layers is None:
            return None
        hidden = [layer.out_features for layer in layers[0::2] if layer is not layers[-1]]
        return layers if self.values_and_laplacians and hidden and dim >= 2 * max(hidden) else None

    def shared(self, model, points):
        gram = bool(points) and self.gram_layers(model, next(iter(points.values())).shape[-1]) is not None
        return _one_pass(self, model, points, gram)

    def evaluate(self, model, x):
        if isinstance(model, OnePass):
            return model.evaluate(x)
        check_points(model, x)
        x = x.detach()
        check_not_empty(x)
        layers = self.gram_layers(model, x.shape[1])
        if layers is not None:
            if isinstance(model, OutputTransform):
                return x, _at(x, gram_laplacian_of_transform(model, layers, x))
            return x, _at(x, gram_laplacian(layers, x))
        return x, _at(x, propagate(model, Jet.seed(x, self.second), triton=self.triton))

    def __repr__(self) -> str:
        return (f"ForwardEngine(second={self.second!r}, gram={self.gram!r}{', triton=True' if self.triton else ''}"
                f"{'' if self.one_pass == 'auto' else f', one_pass={self.one_pass}'})")


#: ``one_pass=auto`` evaluates the point sets together on a CUDA device up to this many points in
#: all. A captured step's time there is mostly the fixed cost of each kernel (0.55 ms at 1,200
#: points and 0.68 ms at 4,800 on an H100, benchmarks/RESULTS.md), and a pass of its own for the
#: boundary points is about 20 operations of a 2-D Poisson step (benchmarks/step_kernels.py);
#: carrying their derivatives instead costs arithmetic that grows with the points (about 15 %
#: more for Poisson's 2-D step, whose boundary points are a sixth of all). An estimate, not a
#: measured crossing point.
ONE_PASS_POINTS = 10_000


class OnePass:
    """``model``, with its field at every point set of ``points`` from one engine evaluation at
    the sets stacked (``derivatives.one_pass``).

    A PDE's residuals evaluate the network once per point set: the interior through the
    engine, a Dirichlet condition's points as ``model(x)``, each a pass of its own forward and
    backward. Handed this instead of the network, they get the same numbers from one pass:
    ``engine.evaluate(one_pass, points[name])`` returns those rows of the field (as a carrier of
    derivatives at the points it returns), and ``one_pass(points[name])`` their values. Any
    other points (a condition's own, points derived from a set, points that require gradients)
    are evaluated as without it. Every row carries the derivatives the engine carries, read or
    not: extra arithmetic, which a large point set pays for.

    The stacked pass runs in the grad mode the wrapper was made in (the loss evaluation's), not
    in that of the first request: a residual that reads a set under ``torch.no_grad()`` first
    leaves the others their gradients. Under random directions (the stochastic engine) a set's
    rows are handed out once; a second ``evaluate`` of it draws again, as it would without the
    wrapper, so that two estimates of one set stay independent.
    """

    def __init__(self, model: Callable[[Tensor], Tensor], engine: Engine, points: dict[str, Tensor]):
        self.model, self.engine = model, engine
        self.grad_enabled = torch.is_grad_enabled()
        self.handed: set[tuple[int, int]] = set()  # the rows evaluate() has handed out
        first = next(iter(points.values()))
        self.sets: list[Tensor] = []  # the sets stacked, in order; a set given twice counts once
        for x in points.values():
            if (x.dim() == 2 and x.shape[1:] == first.shape[1:] and x.dtype == first.dtype and x.device == first.device
                    and x.shape[0] > 0 and not any(x is y for y in self.sets)):
                self.sets.append(x)
        self.field: Jet | None = None  # at all the sets, from the first evaluation asked for

    def _rows(self, x: Tensor) -> tuple[int, int] | None:
        """Where ``x`` lies in the stacked sets, or ``None`` if it is not one of them."""
        start = 0
        for points in self.sets:
            if points is x and not x.requires_grad:
                return start, start + x.shape[0]
            start += points.shape[0]
        return None

    def _field(self) -> Jet:
        if self.field is None:
            with torch.set_grad_enabled(self.grad_enabled):
                stacked = at_points("one_pass.stacked", _stack, *self.sets)  # once per point sets, where tracked
                self.field = self.engine.evaluate(self.model, stacked)[1]
        return self.field

    def evaluate(self, x: Tensor) -> tuple[Tensor, Jet]:
        """``engine.evaluate(model, x)``: the rows of the field at ``x`` where ``x`` is a set."""
        rows = self._rows(x)
        if rows is None or (rows in self.handed and not self._field().exact):
            return self.engine.evaluate(self.model, x)
        self.handed.add(rows)
        x = x.detach()
        return x, _at(x, self._field().rows(*rows))

    def __call__(self, x: Tensor) -> Tensor:
        """``model(x)``: the values of the field's rows at ``x`` where ``x`` is a set."""
        rows = self._rows(x)
        return self.model(x) if rows is None else self._field().value[rows[0]:rows[1]]

    def __getattr__(self, name: str):
        """The network's own attributes (``modules()``, ``parameters()``...)."""
        if name in ("model", "engine", "sets", "field", "grad_enabled", "handed"):  # not yet set (copying, pickling)
            raise AttributeError(name)
        return getattr(self.model, name)


def _stack(*sets: Tensor) -> Tensor:
    return torch.cat([x.detach() for x in sets])


def one_pass_applies(one_pass: str | bool, device: torch.device, points: int, gram: bool = False) -> bool:
    """Whether the ``one_pass`` setting evaluates ``points`` points on ``device`` in one pass
    (``gram``: whether the forward engine carries Gram matrices, ``width × width`` numbers per
    point, at about ``width³`` operations per point and layer: never together under ``auto``)."""
    if one_pass == "auto":
        return device.type == "cuda" and points <= ONE_PASS_POINTS and not gram
    return one_pass is True


def _one_pass(engine: Engine, model, points: dict[str, Tensor], gram: bool = False):
    """:meth:`Engine.shared` of the forward and stochastic engines."""
    if isinstance(model, OnePass) or engine.one_pass is False or not points:
        return model
    shared = OnePass(model, engine, points)
    if len(shared.sets) < 2:  # one set: one pass already
        return model
    total = sum(x.shape[0] for x in shared.sets)
    return shared if one_pass_applies(engine.one_pass, shared.sets[0].device, total, gram) else model


def _at(x: Tensor, field: Jet) -> Jet:
    """``field``, recording that it was computed at ``x`` (the operators refuse other points)."""
    field.points = x
    return field


def _check_triton(triton) -> bool:
    """``derivatives.triton`` as a bool, refused where Triton is not installed."""
    if check_flag("derivatives.triton", triton) and fused.triton is None:
        raise ConfigError("derivatives.triton=true needs Triton, which is not installed (pip install triton; "
                          "CUDA builds of PyTorch bring it). Set derivatives.triton=false")
    return bool(triton)


def _network(model: nn.Module) -> nn.Module:
    """The network itself: inside a hard constraint, the network it wraps."""
    return model.net if isinstance(model, OutputTransform) else model


def _not_a_chain(model: nn.Module) -> ConfigError:
    return ConfigError(
        f"derivatives.gram=true needs a network of alternating linear layers and elementwise activations "
        f"(model=mlp without Fourier features or a periodic embedding, inside a hard constraint or not); this "
        f"{type(_network(model)).__name__} is not one. Set derivatives.gram=auto or false"
    )


class StochasticEngine(Engine):
    r"""Hutchinson's estimate :math:`\Delta u \approx \frac1K \sum_k v_k^\top \nabla^2 u\, v_k`
    with ``K = samples`` Rademacher directions (entries ±1), by forward mode.

    The estimate is unbiased, with variance :math:`\frac{2}{K}\sum_{i \ne j} (\partial_{ij} u)^2`:
    zero for a field that is a sum of one-dimensional terms (no mixed partials), larger the more
    the coordinates interact. The ``K`` directions are shared by all points of an evaluation,
    so the noise does not average out over the points; only ``K`` reduces it.

    A squared residual built on it is biased upwards by that variance, and training then also
    shrinks the variance, away from the solution where the solution's own mixed partials do not
    vanish. With ``unbiased`` the trainer evaluates every residual twice, with independent
    directions, and takes the mean of the products :math:`r_1 r_2` as each term's loss, whose
    expectation is the mean square of the exact residual for a residual affine in the
    Laplacian, as all of the library's are (for one that is not, the mean of an estimated
    residual is not the exact residual, and some bias remains). It costs two evaluations.

    Args:
        samples: directions per evaluation, ``K``.
        unbiased: multiply two independent estimates instead of squaring one.
        one_pass: as for :class:`ForwardEngine` (the sets evaluated together share their directions).
    """

    name = "stochastic"

    def __init__(self, *, samples: int = 16, unbiased: bool = False, triton: bool = False,
                 one_pass: str | bool = "auto"):
        self.one_pass = check_auto_flag("derivatives.one_pass", one_pass)
        check_positive("derivatives.samples", samples)
        self.samples = samples
        self.unbiased = check_flag("derivatives.unbiased", unbiased)
        self.triton = _check_triton(triton)

    def check(self, model):
        check_supported(model)
        if self.triton:
            fused.check_fusable(model)

    def check_pde(self, pde):
        super().check_pde(pde)
        needs = (["exact first derivatives"] if pde.needs_gradient else []) + (
            [f"second derivatives as {pde.second_order!r}"] if pde.second_order not in ("none", "laplacian") else [])
        if needs:
            raise ConfigError(
                f"the stochastic engine estimates Laplacians only, but {type(pde).__name__} also needs "
                f"{' and '.join(needs)}; use derivatives.engine=forward or autograd"
            )

    def shared(self, model, points):
        return _one_pass(self, model, points)

    def evaluate(self, model, x):
        if isinstance(model, OnePass):
            return model.evaluate(x)
        check_points(model, x)
        x = x.detach()
        signs = torch.randint(0, 2, (self.samples, x.shape[1]), device=x.device).to(x.dtype)
        directions = (2 * signs - 1) / math.sqrt(self.samples)  # (K, d), shared by all points
        return x, _at(x, propagate(model, Jet.seed(x, "laplacian", directions=directions), triton=self.triton))

    def __repr__(self) -> str:
        return (f"StochasticEngine(samples={self.samples}{', unbiased=True' if self.unbiased else ''}"
                f"{', triton=True' if self.triton else ''}{'' if self.one_pass == 'auto' else f', one_pass={self.one_pass}'})")


ENGINES = {"autograd": AutogradEngine, "forward": ForwardEngine, "stochastic": StochasticEngine}


def make_engine(engine: str = "autograd", *, second: str = "auto", samples: int = 16,
                gram: str | bool = "auto", unbiased: bool = False, triton: bool = False,
                one_pass: str | bool = "auto") -> Engine:
    """The engine named ``engine`` (``derivatives.engine`` in the config); ``second`` and ``gram``
    apply to the forward engine, ``samples`` and ``unbiased`` to the stochastic one, ``triton``
    and ``one_pass`` to both."""
    check_choice("derivatives.engine", engine, ENGINES)
    # every setting is checked, also where the engine does not read it: a typo is never passed over
    check_positive("derivatives.samples", samples)
    check_choice("derivatives.second", second, ("auto", *SECOND_ORDER))
    check_auto_flag("derivatives.gram", gram)
    takes = ("auto", "laplacian") if engine == "stochastic" else ("auto",)  # the other engines' second derivatives
    if engine != "forward" and (gram is True or second not in takes):
        setting = "derivatives.gram=true" if gram is True else f"derivatives.second={second}"
        raise ConfigError(f"{setting} applies to the forward engine, not to the {engine} engine"
                          f"{', which estimates Laplacians only' if engine == 'stochastic' else ', which takes any derivative'}. "
                          f"Set {'derivatives.gram=auto' if gram is True else 'derivatives.second=auto'} or derivatives=forward")
    if engine == "stochastic":
        return StochasticEngine(samples=samples, unbiased=unbiased, triton=triton, one_pass=one_pass)
    if check_flag("derivatives.unbiased", unbiased):
        raise ConfigError(f"derivatives.unbiased=true applies to the stochastic engine, whose Laplacians are estimates; "
                          f"the {engine} engine's are exact. Set derivatives.unbiased=false or derivatives=stochastic")
    if engine == "forward":
        return ForwardEngine(second=second, gram=gram, triton=triton, one_pass=one_pass)
    if check_flag("derivatives.triton", triton):
        raise ConfigError("derivatives.triton=true fuses the layers of the forward and stochastic engines; the "
                          "autograd engine has none to fuse. Set derivatives.triton=false or derivatives=forward")
    if check_auto_flag("derivatives.one_pass", one_pass) is True:
        raise ConfigError("derivatives.one_pass=true evaluates the point sets together under the forward and stochastic "
                          "engines; the autograd engine differentiates each set's own points. Set "
                          "derivatives.one_pass=auto or derivatives=forward")
    return AutogradEngine()
