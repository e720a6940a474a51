"""The interface every PDE implements."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from pinn.conditions import Periodic, mean_square
from pinn.derivatives import Engine
from pinn.errors import ConfigError, PDEError
from pinn.geometry import Domain, SpaceTime
from pinn.jet import Jet, shared_zero_second
from pinn.models import PeriodicEmbedding
from pinn.operators import DerivativeCarrier

Model = Callable[[Tensor], Tensor]

#: The names the trainer and ``evaluate.py`` give their own numbers in ``metrics.json`` and
#: ``evaluation.json`` (and the prefixes of the per-term and per-output ones), which a PDE's
#: :meth:`PDE.metrics` would be overwritten by.
REPORTED_NAMES = ("rel_l2", "max_abs_error", "loss", "steps", "train_seconds", "ms_per_step", "phases", "device",
                  "dtype", "n_parameters", "n_unknowns", "processes", "figures", "not_written")
REPORTED_PREFIXES = ("rel_l2_", "loss_", "mse_")

#: What a residual may ask of the second derivatives, from least to most (see :mod:`pinn.jet`).
SECOND_ORDER_NEEDS = ("none", "laplacian", "diagonal", "hessian")


class PDE(nn.Module):
    r"""A problem: an equation on a domain, its conditions, and (where known) its solution.

    Subclasses set :attr:`domain`, :attr:`n_outputs` and :attr:`point_sets` and implement
    :meth:`residuals` (or, at least, :meth:`losses`); the residual itself is a method that reads
    like the equation.

    A PDE is an ``nn.Module`` so that what it learns (the unknown coefficient of an inverse
    problem) is trained with the network, and what it owns (observation points) moves with it
    to the training device and is saved in checkpoints.
    """

    domain: Domain
    n_outputs: int = 1
    #: Names of the outputs, in order (for logs and figures).
    outputs: tuple[str, ...] = ("u",)
    #: The named point sets :meth:`losses` reads, as produced by the sampler (regions of the domain).
    point_sets: tuple[str, ...] = ("interior", "boundary")
    #: Second derivatives the residual needs: ``laplacian`` (only Laplacians), ``diagonal``
    #: (separate ``u_xx``, ``u_tt``), ``hessian`` (mixed partials) or ``none``.
    second_order: str = "laplacian"
    #: Whether the residual or a condition needs exact first derivatives (a gradient, a flux).
    needs_gradient: bool = False

    def __init__(self):
        super().__init__()

    def __repr__(self) -> str:
        """The class and its domain (the problems of :mod:`pinn.pdes` add their parameters), for
        the log's "training ..." line: not ``nn.Module``'s list of submodules."""
        return f"{type(self).__name__}(domain={getattr(self, 'domain', '?')})"

    @property
    def dim(self) -> int:
        """Number of input coordinates ``d`` (space, then time)."""
        domain = getattr(self, "domain", None)
        if not isinstance(domain, Domain):  # (an AttributeError here would be reported as one of 'dim')
            raise PDEError(f"{type(self).__name__} has no domain: set self.domain in its __init__ to a shape of "
                           f"pinn.geometry, such as Box(-1.0, 1.0, dim=2); got {type(domain).__name__}")
        return domain.dim

    #: The point sets whose terms evaluate the network at the set itself (``points[name]``, not
    #: points derived from it), which ``derivatives.one_pass`` evaluates together in one pass;
    #: ``None``: every set of :attr:`point_sets`. A set left out is evaluated as its condition
    #: asks, where a set stacked but never read would only add rows to the pass.
    one_pass_sets: tuple[str, ...] | None = None

    #: The terms of :meth:`residuals` evaluated on the ``interior`` points, one row per point
    #: (the equation itself): what adaptive sampling and causal training look at.
    interior_terms: tuple[str, ...] = ("pde",)

    def residuals(self, model: Model, points: dict[str, Tensor], engine: Engine) -> dict[str, Tensor]:
        """The residual of every term at its own points, by name: ``{"pde": (N, c), "boundary": (M, k), ...}``."""
        raise NotImplementedError(
            f"{type(self).__name__} defines losses() only; pointwise residuals (needed by adaptive sampling, "
            "causal training and self-adaptive weights) come from a residuals() method"
        )

    def losses(self, model: Model, points: dict[str, Tensor], engine: Engine) -> dict[str, Tensor]:
        """Mean squared residual of every term, by name (``{"pde": ..., "boundary": ...}``)."""
        residuals = self.residuals(model, points, engine)
        check_residuals(self, residuals)
        return {name: mean_square(r) for name, r in residuals.items()}

    def equation_terms(self, residuals: dict[str, Tensor], use: str) -> list[str]:
        """:attr:`interior_terms`, refused where ``residuals`` lacks one of them (``use``: what
        reads them, for the message): a term named otherwise would silently not take part."""
        missing = [name for name in self.interior_terms if name not in residuals]
        if missing or not self.interior_terms:
            raise ConfigError(
                f"{use} reads the equation's terms, {type(self).__name__}.interior_terms = {self.interior_terms}, but "
                f"its residuals() returns {sorted(residuals)}; set interior_terms to the names of the terms "
                "evaluated on the interior points"
            )
        return list(self.interior_terms)

    def exact(self, x: Tensor) -> Tensor | None:
        """The exact (or reference) solution ``(N, n_outputs)`` at ``x``, or ``None`` where none is known."""
        return None

    def reference(self, n: int, seed: int) -> tuple[Tensor, Tensor] | None:
        """Points ``(P, d)`` and reference values ``(P, n_outputs)`` (float64, CPU) on which the
        error is measured; NaN marks an output not known at a point. By default ``n`` scrambled
        Sobol points of the domain with :meth:`exact`; ``None`` where there is no reference."""
        engines: dict[int, torch.quasirandom.SobolEngine] = {}

        def draw(m: int, k: int) -> Tensor:
            engine = engines.setdefault(k, torch.quasirandom.SobolEngine(k, scramble=True, seed=seed + k))
            return engine.draw(m, dtype=torch.float64)

        x = self.domain.sample("interior", n, draw)
        exact = self.exact(x)
        return None if exact is None else (x, exact)

    def metrics(self) -> dict[str, float]:
        """Numbers to report beside the field error (an inverse problem's coefficient and its error)."""
        return {}

    def constrain(self, model: nn.Module) -> nn.Module:
        """The network the losses see: ``model`` itself, or ``model`` inside an output transform
        that satisfies some conditions exactly (hard constraints)."""
        return model

    def check_definition(self) -> None:
        """Refuse a class that would fail later with another message, or train something other
        than meant: an ``__init__`` that does not call ``super().__init__()``, no terms at all,
        the outputs and their names, the point sets and terms named (each a tuple of names, not
        one name alone: ``("interior",)``, mind the comma), a tensor that requires gradients but
        that the optimizer does not see (not an ``nn.Parameter``), and what :meth:`metrics`
        returns (numbers, under names of their own)."""
        name = type(self).__name__
        if "_parameters" not in vars(self):  # nn.Module.__init__ never ran
            raise PDEError(f"{name}.__init__ does not call super().__init__() (a PDE is an nn.Module, which sets "
                           "itself up there): call it first")
        if type(self).residuals is PDE.residuals and type(self).losses is PDE.losses:
            raise PDEError(f"{name} defines neither residuals() nor losses(): give it a residuals() method that returns "
                           "each term's residual by name, {'pde': ..., 'boundary': ...} (examples/custom_pde)")
        n = self.n_outputs
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise PDEError(f"{name}.n_outputs must be an integer > 0, the number of the network's outputs; got {n!r}")
        for attribute, example in (("outputs", "('u', 'v')"), ("point_sets", "('interior', 'boundary')"),
                                   ("interior_terms", "('pde',)")):
            value = getattr(self, attribute)
            if not (isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)):
                raise PDEError(f"{name}.{attribute} must be a tuple of names, such as {example} (mind the comma of a "
                               f"single name); got {value!r}")
        if len(self.outputs) != n:
            raise PDEError(f"{name} has n_outputs = {n} but names {len(self.outputs)} outputs, {tuple(self.outputs)}; "
                           "give outputs one name per output of the network")
        for key, value in vars(self).items():
            if isinstance(value, Tensor) and value.requires_grad:  # (an nn.Parameter is kept apart, in _parameters)
                raise PDEError(
                    f"{name}.{key} requires gradients but is not an nn.Parameter, so the optimizer would not train it: "
                    f"make it torch.nn.Parameter(...) to learn it, or a plain tensor to keep it fixed")
        metrics = self.metrics()
        if not (isinstance(metrics, Mapping) and all(isinstance(k, str) for k in metrics)):
            raise PDEError(f"{name}.metrics() must return a dict of numbers by name, such as {{'kappa': 2.0}}; "
                           f"got {type(metrics).__name__}")
        for key, value in metrics.items():
            if key in REPORTED_NAMES or key.startswith(REPORTED_PREFIXES):
                raise PDEError(f"{name}.metrics() names a number {key!r}, a name the trainer gives its own numbers "
                               f"(those named {', '.join(REPORTED_NAMES)}, or beginning {', '.join(REPORTED_PREFIXES)}), "
                               "which would replace it: choose another name")
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise PDEError(f"{name}.metrics()[{key!r}] must be a number (a float: .item() of a tensor); "
                               f"got {type(value).__name__}")

    def check_network(self, model: Model) -> None:
        """Raise unless ``model`` maps points ``(N, d)`` to ``(N, n_outputs)``: one row per point,
        one column per output, each row a function of its own point alone. The operators
        differentiate row ``i`` with respect to point ``i``; through a network that mixes the
        points (batch normalization, dropout, attention across points) they would be wrong,
        without a word.

        Probed at points of the domain drawn from a generator of its own, in the three ways the
        trainer calls it: with gradients on at points that require them (the equation's terms,
        as the autograd engine evaluates them), with gradients on at points that do not (a
        condition's values), and under ``torch.no_grad()`` (the error, figures); a network that
        differentiates inside its forward must turn gradients on itself. Point a's row must be
        the same in a batch (a, b, c) as in (a, d, e): three points, not two, since batch
        normalization maps any two points to nearly the same values. The probe leaves the
        random state and the network's buffers (running statistics, say) as it found them."""
        name = type(model).__name__
        module = model if isinstance(model, nn.Module) else nn.Module()  # a function: no layers, weights, buffers
        for where, layer in module.named_modules():
            if layer.training and isinstance(layer, (_BatchNorm, _DropoutNd)):  # named, not left to the probe
                does = ("normalizes over the points evaluated together" if isinstance(layer, _BatchNorm)
                        else "zeroes random units at every call")
                raise ConfigError(
                    f"the network ({name}) has a {type(layer).__name__} layer ({where or 'itself'}) in training mode, "
                    f"which {does}: each row of the output must be a function of its own point alone, since the "
                    "operators differentiate it with respect to that point. Remove the layer"
                )
        for layer in module.modules():
            if isinstance(layer, PeriodicEmbedding):
                self._check_periods(name, layer.periods)
        gen = torch.Generator().manual_seed(0)
        points = self.domain.sample("interior", 5, lambda m, k: torch.rand(m, k, generator=gen, dtype=torch.float64))
        weight = next(module.parameters(), None)
        if weight is not None:
            points = points.to(device=weight.device, dtype=weight.dtype)
        buffers = [(b, b.clone()) for b in module.buffers()]

        def restore_buffers():  # each call starts from the same state (a power iteration's vectors, say)
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)

        def call(x: Tensor, grad_on: bool):
            restore_buffers()
            with torch.set_grad_enabled(grad_on):
                return model(x)

        with torch.random.fork_rng(devices=[points.device] if points.device.type == "cuda" else []):
            try:
                out = call(points[:3].clone().requires_grad_(True), True)
                self._check_output(name, out)
                beside = call(points[[0, 3, 4]].requires_grad_(True), True)
                for grad_on, how in ((True, "with gradients on at points that do not require them (a condition's "
                                            "values)"), (False, "under torch.no_grad() (the error, figures)")):
                    try:
                        call(points[:3], grad_on)
                    except RuntimeError as exc:
                        raise ConfigError(
                            f"the network ({name}) runs at points that require gradients but not {how}, as the "
                            f"trainer also calls it: {str(exc).splitlines()[0]}. A network that differentiates "
                            "inside its forward must turn gradients on itself: `with torch.enable_grad():` around "
                            "it, on x.detach().requires_grad_(True) where x does not require them "
                            "(examples/custom_network)"
                        ) from exc
            finally:
                restore_buffers()
        finite = torch.isfinite(out.detach()).all(dim=1)
        if not finite.all():
            first = int((~finite).nonzero()[0, 0])
            raise ConfigError(f"the network ({name}) returned {out[first].tolist()} at the point {points[first].tolist()} "
                              "of the domain, before any training: its outputs must be finite")
        a = out[0].detach()
        again = beside[0].detach() if isinstance(beside, Tensor) and beside.shape == out.shape else None
        if again is None or not torch.allclose(again, a, rtol=1e-3, atol=1e-3 * float(a.abs().max().clamp(min=1))):
            change = "" if again is None else f" (by {float((again - a).abs().max()):.3g})"
            raise ConfigError(
                f"the network ({name}) is not pointwise: its output at a point changed{change} with the other points "
                "evaluated beside it. The operators differentiate each row of the output with respect to its own "
                "point, so each row must be a function of its point alone: nothing that mixes the points"
            )

    def _check_periods(self, name: str, periods: Mapping[int, float]) -> None:
        """Refuse a network periodic along an axis with a period other than that of a periodic
        condition of this problem on the same axis (the conditions it holds as attributes): it
        could not represent the solution, and its loss would stall with nothing to say why.
        Refuse one that repeats within the time span where no such condition asks for it (a
        period of at most ``t1 - t0``): a solution that starts from initial values need not
        repeat. A period longer than the span repeats nothing inside it."""
        conditions = {c.axis: c for c in vars(self).values() if isinstance(c, Periodic)}
        for axis, period in periods.items():
            condition = conditions.get(axis)
            # (to 1e-6: a period such as 2π is written with a few digits)
            if condition is not None and not math.isclose(period, condition.hi - condition.lo, rel_tol=1e-6):
                raise ConfigError(
                    f"the network ({name}) is periodic along axis {axis} with period {period!r}, but "
                    f"{type(self).__name__}'s periodic condition there has period {condition.hi - condition.lo!r} "
                    f"(from {condition.lo!r} to {condition.hi!r}); set model.periods to give axis {axis} that period")
            span = self.domain.t1 - self.domain.t0 if isinstance(self.domain, SpaceTime) else None
            if condition is None and span is not None and axis == self.domain.dim - 1 and period <= span:
                raise ConfigError(
                    f"the network ({name}) is periodic in time (axis {axis}, the last) with period {period!r}, within "
                    f"the time span {span!r}, and {type(self).__name__}'s solution need not repeat in time; give "
                    "model.periods space axes only")

    def _check_output(self, name: str, out) -> None:
        if not (isinstance(out, Tensor) and tuple(out.shape) == (3, self.n_outputs)):
            got = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
            names = f" ({', '.join(self.outputs)})" if len(self.outputs) == self.n_outputs else ""
            raise ConfigError(
                f"the network ({name}) must map points (N, {self.dim}) to (N, {self.n_outputs}), one row per point "
                f"and one column per output of {type(self).__name__}{names}; for 3 points it returned {got}"
            )

    def check_points(self, points: dict[str, Tensor]) -> None:
        """Raise if a point set is missing, empty, or has points outside the domain."""
        for name in self.point_sets:
            x = points.get(name)
            if x is None or x.shape[0] == 0:
                raise ConfigError(f"{type(self).__name__} needs points in {name!r}; set sampler.n_{name} > 0")
            if x.dim() != 2 or x.shape[1] != self.dim:
                raise PDEError(f"{type(self).__name__}'s point set {name!r} must have shape (N, {self.dim}), one "
                               f"column per coordinate of its domain; got {tuple(x.shape)}")
            self.check_inside(f"{type(self).__name__}'s point set {name!r}", x)

    def check_inside(self, what: str, x: Tensor) -> None:
        """Raise if a point of ``x`` lies outside the domain. Check points as drawn, in float64:
        rounded to float32, a point on a boundary may lie a rounding error outside it."""
        outside = ~self.domain.contains(x.detach().double().cpu())
        if outside.any():
            first = x[outside.nonzero()[0, 0]].tolist()
            raise PDEError(
                f"{what}: {int(outside.sum())} of {len(x)} points lie outside {self.domain} "
                f"(the first at {first}); points must come from the PDE's own domain"
            )


class VanishingOnBall:
    r"""``(N, 1)``: :math:`q(x) = (r^2 - |x - c|^2) / r^2`, zero on the sphere of centre ``c``
    and radius ``r``, one at its centre (the scale of a hard Dirichlet constraint on a ball).

    It gives its own derivatives to the forward and stochastic engines (:meth:`jet`), in closed
    form: along directions :math:`v, w`,

    .. math::
        \partial_v q = -2\, (x - c) \cdot v / r^2, \qquad \partial^2_{vw} q = -2\, v \cdot w / r^2,

    so ``K`` directions cost one ``(N, d)`` by ``(d, K)`` product, where ``torch.func`` would
    pass over the ``(N, d)`` points several times for each direction (in 1,000 dimensions with
    16 random directions, or in 100 with the exact engine's 100, that was most of a step).

    Args:
        center: the centre ``c``, ``d`` numbers.
        radius: ``r > 0``.
    """

    def __init__(self, center: Sequence[float], radius: float = 1.0):
        self.center = tuple(float(c) for c in center)
        self.radius = float(radius)
        if not self.radius > 0:
            raise ConfigError(f"the radius of a ball must be positive; got {radius}")
        self._at_origin = not any(self.center)
        self._centers: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def _offset(self, x: Tensor) -> Tensor:
        """``x - c``. The centre is copied to the points' device once, not at every call (a copy
        from the host inside a CUDA graph capture would be an error)."""
        if self._at_origin:
            return x
        key = (x.device, x.dtype)
        if key not in self._centers:
            self._centers[key] = torch.tensor(self.center, dtype=x.dtype, device=x.device)
        return x - self._centers[key]

    def __call__(self, x: Tensor) -> Tensor:
        return 1 - self._offset(x).square().sum(dim=1, keepdim=True) / self.radius**2

    def jet(self, seed: Jet) -> Jet:
        """The jet of :math:`q` at the seed's points along its directions (``seed`` is the
        identity's jet: its second derivatives are zero)."""
        x, directions = seed.value.detach(), seed.jac.detach()  # (N, d), (N, K, d)
        y, n = self._offset(x), x.shape[0]
        c = -2 / self.radius**2
        shared = directions.stride(0) == 0  # one set of directions for every point
        v = directions[0] if shared else directions  # (K, d) or (N, K, d)
        if seed.exact:  # the coordinate axes: the gradient itself
            jac = (c * y).unsqueeze(-1)
        else:
            jac = (y @ v.T if shared else torch.einsum("nkd,nd->nk", v, y)).mul(c).unsqueeze(-1)  # (N, K, 1)
        if seed.second == "hessian":
            # v_k · v_j: (K, K) or (N, K, K); for the axes, the identity
            gram = torch.eye(x.shape[1], dtype=x.dtype, device=x.device) if seed.exact else v @ v.transpose(-1, -2)
            sec = (c * gram).unsqueeze(-1).expand(n, -1, -1, 1)  # (N, K, K, 1)
        else:
            sq = v.square().sum(dim=-1)  # |v_k|²: (K,) or (N, K)
            if seed.second == "laplacian":
                sec = (c * sq.sum(dim=-1)).reshape(-1, 1).expand(n, 1)  # (N, 1)
            else:
                sec = (c * sq).unsqueeze(-1).expand(n, -1, 1)  # (N, K, 1)
        return Jet(self(x), jac, seed.second, sec, exact=seed.exact)

    def __repr__(self) -> str:
        center = "origin" if self._at_origin else list(self.center)
        return f"VanishingOnBall(center={center}, radius={self.radius})"


class ZeroValues:
    """``(N, m)`` zeros: the base of a hard constraint whose prescribed values are zero, with its
    derivatives (zero too) in closed form, so the forward engines need not differentiate it."""

    def __init__(self, components: int = 1):
        self.components = components

    def __call__(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.components)

    def jet(self, seed: Jet) -> Jet:
        n, k, _ = seed.jac.shape
        jac = seed.value.new_zeros(()).expand(n, k, self.components)
        return Jet(self(seed.value), jac, seed.second, shared_zero_second(jac, seed.second), exact=seed.exact)

    def __repr__(self) -> str:
        return f"ZeroValues({self.components})"


class VanishingOnBox:
    r"""``(N, 1)``: :math:`\phi(x) = \prod_i g_i(x_i)` with
    :math:`g_i = 4 (x_i - \mathrm{lo}_i)(\mathrm{hi}_i - x_i) / w_i^2`, :math:`w_i = \mathrm{hi}_i - \mathrm{lo}_i`:
    zero on every face of the box, one at its centre (the scale of a hard Dirichlet constraint:
    of order one, so the network's output need not grow to make up for it).

    It gives its own derivatives to the forward and stochastic engines (:meth:`jet`), in closed
    form: with :math:`P_i = \prod_{j \ne i} g_j`, the product of the other factors,

    .. math::
        \partial_i \phi = g_i' P_i, \qquad \partial_{ii} \phi = g_i'' P_i, \qquad
        g_i' = 4 (\mathrm{lo}_i + \mathrm{hi}_i - 2 x_i) / w_i^2, \quad g_i'' = -8 / w_i^2 .

    :math:`P_i` comes from running products from either end, without division (exact on the
    faces too), so every derivative costs a few passes over the ``(N, d)`` points, where
    ``torch.func`` passes over them several times per factor and direction (in 100 dimensions
    with 16 random directions, seconds per training step). Along random directions (the
    stochastic engine's) the first derivatives are :math:`\nabla\phi \cdot v_k`, and the
    estimate of :math:`\Delta\phi` is :math:`\Delta\phi` itself: unbiased, without variance.
    Mixed partials (``derivatives.second=hessian``) come from ``torch.func``, as for any function.

    Args:
        lo, hi: the box's corners, ``d`` numbers each (or tensors of them).
    """

    def __init__(self, lo: Sequence[float] | Tensor, hi: Sequence[float] | Tensor):
        self.lo = tuple(float(a) for a in (lo.tolist() if isinstance(lo, Tensor) else lo))
        self.hi = tuple(float(b) for b in (hi.tolist() if isinstance(hi, Tensor) else hi))
        if len(self.lo) != len(self.hi) or not all(a < b for a, b in zip(self.lo, self.hi)):
            raise ConfigError(f"a box needs lo < hi in every coordinate; got lo={list(self.lo)}, hi={list(self.hi)}")
        self._bounds: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor, Tensor]] = {}

    def _factors(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``g``, ``g'`` and ``g''`` at ``x``, each ``(N, d)``. The corners are copied to the
        points' device once, not at every call (a copy from the host inside a CUDA graph capture
        would be an error)."""
        if x.shape[1] != len(self.lo):
            raise ValueError(f"points of shape {tuple(x.shape)} for a box in {len(self.lo)} dimensions")
        key = (x.device, x.dtype)
        if key not in self._bounds:
            widths2 = [(b - a) ** 2 for a, b in zip(self.lo, self.hi)]  # in double precision, then rounded
            self._bounds[key] = tuple(torch.tensor(c, dtype=x.dtype, device=x.device) for c in (self.lo, self.hi, widths2))
        lo, hi, width2 = self._bounds[key]
        return 4 * (x - lo) * (hi - x) / width2, 4 * (lo + hi - 2 * x) / width2, (-8 / width2).expand_as(x)

    def __call__(self, x: Tensor) -> Tensor:
        return torch.cumprod(self._factors(x)[0], dim=1)[:, -1:]

    def jet(self, seed: Jet) -> Jet | None:
        r"""The jet of :math:`\phi` at the seed's points along its directions; ``None`` for
        mixed partials or second derivatives per random direction (left to ``torch.func``)."""
        x, directions = seed.value.detach(), seed.jac.detach()  # (N, d), (N, K, d)
        if seed.second == "hessian" or (seed.second == "diagonal" and not seed.exact):
            return None
        g, slope, curvature = self._factors(x)
        before = torch.cumprod(g, dim=1)  # g_1 ... g_i
        after = torch.cumprod(g.flip(1), dim=1).flip(1)  # g_i ... g_d
        ones = x.new_ones(x.shape[0], 1)
        others = torch.cat([ones, before[:, :-1]], dim=1) * torch.cat([after[:, 1:], ones], dim=1)  # P_i
        gradient, second = slope * others, curvature * others  # ∂_i φ and ∂_ii φ: (N, d)
        sec = second.sum(dim=1, keepdim=True) if seed.second == "laplacian" else second.unsqueeze(-1)
        axes = Jet(before[:, -1:], gradient.unsqueeze(-1), seed.second, sec)  # along the coordinate axes
        return axes if seed.exact else axes.along(directions)  # random directions: laplacian mode

    def __repr__(self) -> str:
        return f"VanishingOnBox(lo={list(self.lo)}, hi={list(self.hi)})"


def _numbers(values: Tensor) -> list[float]:
    """The values of a 1-D tensor as Python numbers, read one at a time: these functions run
    inside torch.func's transforms, where ``tolist`` fails under PyTorch 2.4.1 and 2.9.1 (not
    2.11.0 or 2.13.0): "Cannot access data pointer of Tensor that doesn't have storage". ``item``
    works under all four."""
    return [value.item() for value in values]


def vanishing_on_box(x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """The values of :class:`VanishingOnBox` ``(lo, hi)`` at ``x`` (to round-off: the product is
    taken here one factor at a time in the points' precision), from a plain function, whose
    derivatives the forward engines take with ``torch.func``."""
    scale = None
    for i, (a, b) in enumerate(zip(_numbers(lo), _numbers(hi))):  # numbers, never copied to the device
        factor = 4 * (x[:, i : i + 1] - a) * (b - x[:, i : i + 1]) / (b - a) ** 2
        scale = factor if scale is None else scale * factor
    return scale


def transfinite_interpolation(f: Callable[[Tensor], Tensor], x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    r"""The transfinite (Coons) interpolation of boundary data ``f`` into the box ``[lo, hi]``:
    a smooth field that equals ``f`` on every face and reads ``f`` on the faces only.

    With :math:`\xi_i = (x_i - \mathrm{lo}_i)/(\mathrm{hi}_i - \mathrm{lo}_i)` and the projector
    :math:`P_i f(x) = (1 - \xi_i) f(x|_{x_i = \mathrm{lo}_i}) + \xi_i f(x|_{x_i = \mathrm{hi}_i})`,
    the interpolant is the Boolean sum :math:`(1 - \prod_i (1 - P_i)) f`, expanded as
    :math:`\sum_{S \neq \emptyset} (-1)^{|S|+1} \prod_{i \in S} P_i f` over the sets ``S`` of axes:
    :math:`3^d - 1` evaluations of ``f``, each at points moved onto a face, an edge or a corner.
    On a face :math:`x_i = \mathrm{lo}_i` the projector :math:`P_i` reproduces ``f``, so
    :math:`(1 - P_i) f = 0` there and the sum equals ``f``: the base of a hard Dirichlet
    constraint ``u = g + φ N`` (with ``φ`` from :func:`vanishing_on_box`) when ``f`` is continuous
    along the edges.
    """
    lo_values, hi_values = _numbers(lo), _numbers(hi)  # numbers, never copied to the device
    dim = x.shape[1]
    xi = [(x[:, i : i + 1] - lo_values[i]) / (hi_values[i] - lo_values[i]) for i in range(dim)]
    total = None
    for mask in range(1, 2**dim):
        axes = [i for i in range(dim) if mask >> i & 1]
        sign = 1.0 if len(axes) % 2 else -1.0
        for corner in range(2 ** len(axes)):  # each axis in S snapped to lo (bit 0) or hi (bit 1)
            columns, weight = list(x.unbind(dim=1)), None
            for j, i in enumerate(axes):
                at_hi = corner >> j & 1
                columns[i] = torch.full_like(columns[i], hi_values[i] if at_hi else lo_values[i])
                factor = xi[i] if at_hi else 1 - xi[i]
                weight = factor if weight is None else weight * factor
            term = sign * weight * f(torch.stack(columns, dim=1))
            total = term if total is None else total + term
    return total


def check_residuals(pde: PDE, residuals: dict[str, Tensor], points: dict[str, Tensor] | None = None) -> None:
    """Refuse residuals that are not ``(N, c)`` real fields (tensors, or the engine's own fields)
    with at least one row, and, given the ``points`` (where something reads the equation's terms
    row by row: adaptive sampling, causal and growth weighting), an equation's term
    (:attr:`PDE.interior_terms`) with other rows than the interior points. A residual ``(N, N)``
    (from 8 points on) is taken for what it almost surely is: an ``(N,)`` tensor, such as a
    source term or data computed as ``x[:, 0]``, broadcast against an ``(N, 1)`` field, whose
    mean square trains nothing right. That is any equation's term, and any other with more
    columns than the outputs and their first derivatives have (a term on 10 sensors of 10
    outputs can be so)."""
    cls = type(pde).__name__
    if not isinstance(residuals, Mapping):
        raise PDEError(f"{cls}.residuals() must return a dict of residuals by name, such as {{'pde': r, 'boundary': "
                       f"b}}; got {type(residuals).__name__} (a missing return?)")
    if not residuals:
        raise PDEError(f"{cls}.residuals() returned no residuals (an empty dict): nothing to train")
    interior = None if points is None else points.get("interior")
    for name, r in residuals.items():
        where = f"{cls}'s residual {name!r}"
        if not isinstance(r, (Tensor, DerivativeCarrier)):
            raise PDEError(f"{where} must be a tensor (N, c), one row per point; got {type(r).__name__}")
        if len(r.shape) != 2:
            raise PDEError(f"{where} must be a tensor (N, c), one row per point; got shape {tuple(r.shape)}. Keep "
                           "the column dimension: x[:, 0:1], not x[:, 0]")
        if r.shape[0] == 0:
            raise PDEError(f"{where} has no rows: its point set (or the part of it the residual selects) is empty")
        if isinstance(r, Tensor):
            if not r.dtype.is_floating_point:
                raise PDEError(f"{where} must hold real floating-point numbers; got {r.dtype}")
        if name in pde.interior_terms and interior is not None and r.shape[0] != interior.shape[0]:
            raise PDEError(f"{where} is one of {cls}.interior_terms, the equation's terms, one row per interior point, "
                           f"but has {r.shape[0]} rows for {interior.shape[0]} interior points: evaluate it at "
                           "points['interior'] (or leave it out of interior_terms)")
        columns = r.shape[1]
        if r.shape[0] == columns >= 8 and (name in pde.interior_terms or columns > pde.n_outputs * (pde.dim + 1)):
            raise PDEError(f"{where} has shape {tuple(r.shape)}: an (N,) tensor broadcast against an (N, 1) one? "
                           "Keep the column dimension of every term: x[:, 0:1], not x[:, 0] (or .reshape(-1, 1))")


def check_losses(pde: PDE, losses) -> None:
    """Refuse what :meth:`PDE.losses` returns unless it maps each term's name to a number, a
    0-dimensional tensor (the trainer weights the terms and adds them): a term left unreduced,
    ``r.square()`` for ``r.square().mean()``, would otherwise fail in the backward pass with
    PyTorch's message about shapes."""
    if not isinstance(losses, Mapping):
        raise PDEError(f"{type(pde).__name__}.losses() must return a dict of loss terms by name, such as "
                       f"{{'pde': r.square().mean()}}; got {type(losses).__name__}")
    if not losses:
        raise PDEError(f"{type(pde).__name__}.losses() returned no loss terms (an empty dict): nothing to train")
    for name, loss in losses.items():
        if not (isinstance(loss, Tensor) and loss.dim() == 0):
            got = f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
            raise PDEError(f"{type(pde).__name__}'s loss {name!r} must be one number, a 0-dimensional tensor such as "
                           f"the mean squared residual r.square().mean(); got {got}")


def space_laplacian(u, x: Tensor, space_dim: int) -> Tensor:
    r"""The Laplacian over the first ``space_dim`` coordinates only (not time):
    :math:`\sum_{i < d} \partial^2 u / \partial x_i^2`, ``(N, 1)``."""
    from pinn.operators import partial

    return sum(partial(u, x, i, i) for i in range(space_dim))


def relative_error(estimate: float, truth: float) -> float:
    return abs(estimate - truth) / abs(truth)
