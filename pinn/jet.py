r"""Forward-mode ("Taylor") derivatives: a :class:`Jet` carries a field's value together with its
first and selected second derivatives through a network in one forward pass.

For a layer :math:`h' = W h + b` followed by an elementwise activation :math:`a = \sigma(h')`,
with :math:`J` the derivatives of :math:`h` along the tracked directions and :math:`L` the sum
of its second derivatives along them:

.. math::
    J' = W J, \quad L' = W L, \qquad
    J_a = \sigma'(h') J', \quad L_a = \sigma'(h') L' + \sigma''(h') \sum_i (J'_i)^2 .

Per-coordinate second derivatives (``second="diagonal"``) keep each :math:`(J'_i)^2` term apart;
the full Hessian (``second="hessian"``) carries :math:`H_a = \sigma' H' + \sigma'' J'_i J'_j`.

No backward pass is nested inside another, so a training step needs one ordinary backward
pass for the parameter gradients, and nothing prevents compiling the step.

Only :math:`\sum_i (J'_i)^2` enters the Laplacian: the diagonal of the Gram matrix
:math:`G = J^\top J`. Where nothing else is read, :func:`gram_laplacian` carries :math:`G`
(``m × m`` per point) instead of :math:`J` (``d × m``), with
:math:`G' = W \operatorname{diag}(\sigma') G \operatorname{diag}(\sigma') W^\top`: exact, at a
cost that no longer grows with the dimension ``d``.

The tracked directions are the coordinate axes ``e_1 … e_d`` for exact derivatives, or ``K``
random directions :math:`v_k` for the stochastic Laplacian estimate
:math:`\frac1K \sum_k v_k^\top \nabla^2 u\, v_k` (Hutchinson), which is unbiased when
:math:`\mathbb{E}[v v^\top] = I`.

The other layers of :mod:`pinn.models` follow from three more rules, each exact for any
tracked directions (coordinate axes or random ones):

* a factorized linear layer is a linear map with its effective weight
  :math:`W = \operatorname{diag}(e^s) V`;
* an embedding :math:`[x_P, \cos(Bx), \sin(Bx)]` (Fourier features, periodic embedding) is a
  linear map :math:`z = Bx` followed by :math:`\cos` and :math:`\sin` applied as activations,
  e.g. :math:`J_{\cos z} = -\sin(z)\, B J`, :math:`H_{\cos z} = -\cos(z)\, (B J_i)(B J_j)`
  (plus :math:`-\sin(z)\, B H_x` where the input has second derivatives of its own, as after a
  periodic embedding), with the passed-through columns kept as they are;
* the gates of the modified MLP, :math:`U + Z \odot (V - U)`, are sums and products of jets,
  the product by Leibniz's rule :math:`\partial_{ij}(ab) = a_{ij} b + a_i b_j + a_j b_i + a b_{ij}`.

Supported layers: ``nn.Linear``, :class:`~pinn.models.FactorizedLinear`, the elementwise
activations of :mod:`pinn.models`, the embeddings :class:`~pinn.models.FourierFeatures` and
:class:`~pinn.models.PeriodicEmbedding`, and ``nn.Sequential`` / :class:`~pinn.models.MLP` /
:class:`~pinn.models.ModifiedMLP` made of them, optionally wrapped in a hard-constraint
:class:`pinn.models.OutputTransform` (product rule, with the transform's own derivatives from
``torch.func``, or in closed form where its functions give them, see :meth:`Jet.of_function`).
Anything else is refused by :func:`check_supported` before training, never answered with wrong
numbers.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from pinn import fused
from pinn.errors import ConfigError
from pinn.models import MLP, FactorizedLinear, ModifiedMLP, OutputTransform, Sine, TrigEmbedding, check_pointwise
from pinn.operators import DerivativeCarrier
from pinn.point_cache import at_points, uses_per_set

SECOND_ORDER = ("laplacian", "diagonal", "hessian")

# σ', σ'' and σ‴ of each supported activation, from h and the module's own value σ(h) (the
# value comes from the module itself, so it matches the autograd engine bit for bit). σ‴ is
# needed by the backward pass of the fused activation step below.
Rule = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]


def _tanh(module, h, t):
    # 1 - t², -2t (1 - t²) and -2 (1 - t²)(1 - 3t²), each product in one operation: addcmul
    # onto a one or a zero broadcast to t's shape (four operations where written out takes nine)
    one = shared_constant("one", t.dtype, t.device).expand_as(t)
    d1 = torch.addcmul(one, t, t, value=-1)
    return d1, _add(None, t, d1, value=-2), _add(None, d1, torch.addcmul(one, t, t, value=-3), value=-2)


def _sine(module, h, s):
    c = torch.cos(h)
    return c, -s, -c


def _sigmoid(module, h, s):
    d1 = s * (1 - s)
    return d1, d1 * (1 - 2 * s), d1 * ((1 - 2 * s) ** 2 - 2 * d1)


def _softplus(module, h, value):
    beta = module.beta
    linear = beta * h > module.threshold  # nn.Softplus is the identity there, and so are its derivatives
    s = torch.sigmoid(beta * h)
    q = s * (1 - s)
    zero = torch.zeros_like(h)
    return (torch.where(linear, torch.ones_like(h), s), torch.where(linear, zero, beta * q),
            torch.where(linear, zero, beta**2 * q * (1 - 2 * s)))


def _silu(module, h, value):
    s = torch.sigmoid(h)
    q = s * (1 - s)
    d1 = s * (1 + h * (1 - s))
    d2 = q * (2 + h * (1 - 2 * s))
    d3 = q * (1 - 2 * s) * (2 + h * (1 - 2 * s)) + q * (1 - 2 * s - 2 * h * q)
    return d1, d2, d3


def _gelu(module, h, value):
    if module.approximate != "none":
        raise ConfigError("the forward engine supports nn.GELU(approximate='none') only; use derivatives.engine=autograd")
    cdf = 0.5 * (1 + torch.erf(h / math.sqrt(2)))
    pdf = torch.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)
    return cdf + h * pdf, pdf * (2 - h * h), pdf * (h * h * h - 4 * h)


class _Activate(torch.autograd.Function):
    r"""The activation step of the ``laplacian`` and ``diagonal`` modes as one autograd node.

    Write :math:`D` for the carried second derivatives: per direction, :math:`D_k`
    (``diagonal``), or their sum :math:`L` (``laplacian``), and :math:`S` for the matching
    :math:`J_k^2` or :math:`\sum_k J_k^2`. Forward: :math:`a = \sigma(h)`,
    :math:`J_a = \sigma' J`, :math:`D_a = \sigma' D + \sigma'' S`. Backward, for incoming
    gradients :math:`(g_a, G_J, G_D)`:

    .. math::
        g_h = \sigma' g_a + \sigma'' \sum_k G_{J,k} J_k + \sum G_D (\sigma'' D + \sigma''' S), \quad
        G_J^{in} = \sigma' G_J + 2 \sigma'' G_D J, \quad G_D^{in} = \sigma' G_D,

    where the last sum in :math:`g_h` runs over the directions in ``diagonal`` mode, and in
    ``laplacian`` mode :math:`G_D` is one number per point and component, broadcast over the
    directions in :math:`G_D J`.

    Written out by hand it keeps six tensors (five when ``sec`` is zero) instead of the dozen
    intermediate nodes autograd would record, which is where a small network's time goes.
    ``sec`` is ``None`` where it is known to be zero (the first layer's), and the terms with it
    are skipped; so are the terms of an output the loss does not reach.
    """

    @staticmethod
    def forward(ctx, h, jac, sec, module, rule, summed):
        value = module(h)
        d1, d2, d3 = rule(module, h, value)
        sq = _distinct_rows(jac).square()  # (N, K, m), or (1, K, m) for shared directions
        sq = sq.sum(dim=1) if summed else sq
        ctx.save_for_backward(jac, sec, d1, d2, d3, sq)
        ctx.summed = summed
        # An output the loss does not reach gets no gradient: None, not a tensor of zeros to
        # multiply. So it is with the last activation's first derivatives when the residual reads
        # only second derivatives (Poisson), and with every second derivative when it reads only
        # values and gradients.
        ctx.set_materialize_grads(False)
        c1, c2 = (d1, d2) if summed else (d1.unsqueeze(1), d2.unsqueeze(1))  # per point, or per direction
        return value, d1.unsqueeze(1) * jac, c2 * sq if sec is None else torch.addcmul(c1 * sec, c2, sq)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_value, g_jac, g_sec):
        jac, sec, d1, d2, d3, sq = ctx.saved_tensors  # sec is None when it is known to be zero
        g_h = g_jac_in = g_sec_in = None
        if g_value is not None:
            g_h = d1 * g_value
        if g_jac is not None:
            g_h = _add(g_h, d2, (g_jac * jac).sum(dim=1))
            g_jac_in = d1.unsqueeze(1) * g_jac
        if g_sec is not None and ctx.summed:  # g_L (σ'' L + σ''' S): one number per point and component
            g_h = _add(g_h, g_sec, d3 * sq if sec is None else torch.addcmul(d3 * sq, d2, sec))
            g_jac_in = _add(g_jac_in, (d2 * g_sec).unsqueeze(1), jac, value=2)
            g_sec_in = None if sec is None else d1 * g_sec
        elif g_sec is not None:  # σ'' Σ_k G_D,k D_k + σ''' Σ_k G_D,k S_k: the sums over the directions first
            g_h = _add(g_h, d3, (g_sec * sq).sum(dim=1))
            g_h = g_h if sec is None else _add(g_h, d2, (g_sec * sec).sum(dim=1))
            g_jac_in = _add(g_jac_in, d2.unsqueeze(1) * g_sec, jac, value=2)
            g_sec_in = None if sec is None else d1.unsqueeze(1) * g_sec
        return g_h, g_jac_in, g_sec_in, None, None, None


def _add(total: Tensor | None, a: Tensor, b: Tensor, value: float = 1.0) -> Tensor:
    """``total + value * a * b`` in one operation (``addcmul``), where ``None`` is a zero not
    computed (onto a shared zero, broadcast, where ``value`` is not 1)."""
    if total is None:
        if value == 1:
            return a * b
        total = shared_constant("zero", a.dtype, a.device).expand(torch.broadcast_shapes(a.shape, b.shape))
    return torch.addcmul(total, a, b, value=value)


def _distinct_rows(jac: Tensor) -> Tensor:
    """``jac`` ``(N, K, m)``, or the first point's ``(1, K, m)`` where it is broadcast along the
    points (directions shared by every point, as the seed's and the first linear layer's are):
    products of it are then taken once and broadcast, not once per point."""
    return jac[:1] if jac.stride(0) == 0 else jac


def check_not_empty(x: Tensor) -> None:
    """Refuse points ``(0, d)``: the engines read the first point's directions."""
    if x.shape[0] == 0:
        raise ValueError(f"no points to evaluate the field at: x has shape {tuple(x.shape)}; give a point set "
                         "at least one point")


def load_forward_mode_quietly() -> None:
    """Import what ``torch.func.jvp`` imports on its first use (PyTorch's forward-mode
    decompositions), silencing the one warning that import gives: that ``torch.jit.script``,
    which PyTorch itself calls there, is deprecated. From PyTorch 2.14 on it is a
    ``FutureWarning``, shown by default, and would head the log of every run that
    differentiates a function with ``torch.func`` (a hard constraint's, the pre-flight check's)
    about code no user can change. Any other warning passes. Call it before ``torch.func``'s
    forward mode; after the first call it only looks the module up."""
    module = "torch._decomp.decompositions_for_jvp"
    # the conditions under which PyTorch imports it (torch.autograd.forward_ad)
    if module in sys.modules or os.environ.get("PYTORCH_JIT", "1") != "1" or not __debug__:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
        importlib.import_module(module)


#: The seed's identities, the zeros of known-zero derivatives, and the zeros and ones that
#: ``addcmul`` adds to (the activations' derivatives, a mean square's backward in
#: :mod:`pinn.conditions`), made once per kind, size, dtype and device: made at every
#: evaluation, each would be an operation of its own in every training step, which a step
#: replayed as a CUDA graph pays a few microseconds for whatever its size. Never written in
#: place: handed out as expanded views, or read.
_CONSTANTS: dict[tuple, Tensor] = {}


def shared_constant(kind: str, dtype: torch.dtype, device: torch.device, size: int = 0) -> Tensor:
    """``"zero"`` or ``"one"`` (0-dimensional), or the ``"identity"`` of ``size``, made once
    (:data:`_CONSTANTS`)."""
    def make() -> Tensor:
        with torch.inference_mode(False):  # usable by training even if first made while evaluating
            if kind == "identity":
                return torch.eye(size, dtype=dtype, device=device)
            fill = {"zero": torch.zeros, "one": torch.ones}[kind]  # kernels, not copies from the host: capturable
            return fill((), dtype=dtype, device=device)

    if torch.compiler.is_compiling():  # compiled: a constant of the graph anyway
        return make()
    key = (kind, size, dtype, device)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = make()
    return _CONSTANTS[key]


def shared_zero_second(jac: Tensor, second: str) -> Tensor:
    """Zero second derivatives of the field whose first derivatives are ``jac`` ``(N, K, m)``:
    one zero broadcast to their shape (read-only; it takes the memory of one number)."""
    n, k, m = jac.shape
    shape = {"laplacian": (n, m), "diagonal": (n, k, m), "hessian": (n, k, k, m)}[second]
    return shared_constant("zero", jac.dtype, jac.device).expand(shape)


class _Later:
    """A tensor made when first read, in the grad and inference modes it was asked for in (read
    later under ``torch.no_grad()`` or ``torch.inference_mode()``, it would otherwise lose its
    gradients); ``shape``, where given, is its shape, known before."""

    __slots__ = ("make", "grad_enabled", "inference", "shape")

    def __init__(self, make: Callable[[], Tensor], shape: tuple[int, ...] | None = None):
        self.make, self.grad_enabled = make, torch.is_grad_enabled()
        # (the compiler cannot read the inference mode, and compiled code does not change it)
        self.inference = not torch.compiler.is_compiling() and torch.is_inference_mode_enabled()
        self.shape = None if shape is None else torch.Size(shape)

    def __call__(self) -> Tensor:
        if not torch.compiler.is_compiling() and torch.is_inference_mode_enabled() != self.inference:
            with torch.inference_mode(self.inference), torch.set_grad_enabled(self.grad_enabled):
                return self.make()
        with torch.set_grad_enabled(self.grad_enabled):
            return self.make()


RULES: dict[type, Rule] = {
    nn.Tanh: _tanh,
    Sine: _sine,
    nn.Sigmoid: _sigmoid,
    nn.Softplus: _softplus,
    nn.SiLU: _silu,
    nn.GELU: _gelu,
}


class Jet(DerivativeCarrier):
    r"""A field ``(N, m)`` with its derivatives along ``K`` tracked directions.

    Attributes:
        value: ``(N, m)``.
        jac: ``(N, K, m)``, :math:`\partial u / \partial v_k`.
        second: which second derivatives are carried: ``"laplacian"`` (``lap``, ``(N, m)``,
            the sum over the directions), ``"diagonal"`` (``diag``, ``(N, K, m)``) or
            ``"hessian"`` (``hess``, ``(N, K, K, m)``).
        exact: whether the directions are the coordinate axes (``False`` for random directions,
            whose ``lap`` is an estimate and whose ``jac`` is not the gradient).
        zero_second: whether ``sec`` is known to be zero: the seed's, and what linear maps make of
            it. ``sec`` is then one read-only zero broadcast to its shape, and the first layer
            skips mapping it by its weight (one matrix product forward, and one backward for the
            weight's gradient; in ``laplacian`` mode each is as large as the value's own, ``K``
            and ``K²`` times larger in the other modes) and adding it to the activation's second
            derivatives.
    """

    def __init__(self, value: Tensor | _Later, jac: Tensor | _Later, second: str, sec: Tensor | _Later, *,
                 exact: bool = True, zero_second: bool = False):
        # value, jac and sec may be given as _Later: made at their first read (see the properties)
        self._value, self._jac, self.second, self._sec, self.exact = value, jac, second, sec, exact
        self.zero_second = zero_second
        self.is_seed = False  # whether this is the points' own jet, before any layer (set by seed())
        self.points = None  # the points the engine evaluated the field at (DerivativeCarrier.points)
        self.given = None  # a constant function's value as the function returned it (of_function)

    # The network's output layer maps the value and every derivative by its weight; a residual
    # reads some of them (Poisson's the Laplacian, a Dirichlet condition the values), and the
    # others are never made: per step, a product as large as the layer's input spared.

    def _made(self, name: str) -> Tensor:
        """The carried tensor ``name`` (``_value``, ``_jac``, ``_sec``), made if it was deferred."""
        stored = getattr(self, name)
        if isinstance(stored, _Later):
            stored = stored()
            setattr(self, name, stored)
        return stored

    value = property(lambda self: self._made("_value"))
    jac = property(lambda self: self._made("_jac"))
    sec = property(lambda self: self._made("_sec"))

    # ------------------------------------------------------------------ construction

    @classmethod
    def seed(cls, x: Tensor, second: str = "laplacian", directions: Tensor | None = None) -> Jet:
        """The jet of the identity at points ``x`` ``(N, d)``: ``jac = I`` (or the given
        ``directions``, ``(N, K, d)``, or ``(K, d)`` shared by every point), zero second derivatives."""
        if second not in SECOND_ORDER:
            raise ConfigError(f"unknown derivatives.second {second!r}; valid choices: {', '.join(SECOND_ORDER)}")
        check_not_empty(x)
        n, d = x.shape
        if directions is None:
            jac = shared_constant("identity", x.dtype, x.device, d).expand(n, d, d)
        else:
            jac = directions.expand(n, -1, -1) if directions.dim() == 2 else directions
        jet = cls(x, jac, second, shared_zero_second(jac, second), exact=directions is None, zero_second=True)
        jet.is_seed = True
        return jet

    # ------------------------------------------------------------------ propagation

    def linear(self, weight: Tensor, bias: Tensor | None) -> Jet:
        """``h' = h Wᵀ + b``: every derivative is mapped by ``Wᵀ``; the bias moves the value only.
        Each product is made when first read (the next layer reads them all; a residual reading
        the network's output may not)."""
        value = _Later(lambda: nn.functional.linear(self.value, weight, bias), (self.shape[0], weight.shape[0]))
        if self.jac.stride(0) == 0:
            # Directions shared by every point (the seed's identity or random directions):
            # map them once and broadcast, instead of N identical products.
            jac = (self.jac[0] @ weight.T).expand(self.jac.shape[0], -1, -1)
        elif self.zero_second:  # its shape is needed now, for the zero second derivatives
            jac = self.jac @ weight.T
        else:
            jac = _Later(lambda: self.jac @ weight.T)
        if self.zero_second:
            zero = shared_zero_second(jac, self.second)
            return Jet(value, jac, self.second, zero, exact=self.exact, zero_second=True)
        return Jet(value, jac, self.second, _Later(lambda: self.sec @ weight.T), exact=self.exact)

    def activate(self, d0: Tensor, d1: Tensor, d2: Tensor) -> Jet:
        """``a = σ(h)`` given ``σ(h), σ'(h), σ''(h)`` at this jet's value: the chain rule to second order."""
        jac = d1.unsqueeze(1) * self.jac
        rows = _distinct_rows(self.jac)
        if self.second == "laplacian":
            slope, curvature = d1, d2 * rows.square().sum(dim=1)
        elif self.second == "diagonal":
            slope, curvature = d1.unsqueeze(1), d2.unsqueeze(1) * rows.square()
        else:
            outer = rows.unsqueeze(2) * rows.unsqueeze(1)  # (N or 1, K, K, m)
            slope, curvature = d1[:, None, None, :], d2[:, None, None, :] * outer
        sec = curvature if self.zero_second else slope * self.sec + curvature
        return Jet(d0, jac, self.second, sec, exact=self.exact)

    # Jet-valued arithmetic. (The operators + - * below treat a Jet as its value, for residuals;
    # these build the jet of the result instead.)

    def plus(self, other: Jet) -> Jet:
        """The jet of ``self + other``: derivatives add."""
        return Jet(self.value + other.value, self.jac + other.jac, self.second, self.sec + other.sec, exact=self.exact)

    def minus(self, other: Jet) -> Jet:
        """The jet of ``self - other``."""
        return Jet(self.value - other.value, self.jac - other.jac, self.second, self.sec - other.sec, exact=self.exact)

    def times(self, other: Jet) -> Jet:
        r"""The jet of the componentwise product ``self * other`` (either may have one component,
        broadcast over the other's), by Leibniz's rule
        :math:`\partial_{kl}(ab) = a_{kl} b + a_k b_l + a_l b_k + a\, b_{kl}`."""
        a, b = self, other
        value = a.value * b.value
        jac = a.jac * b.value.unsqueeze(1) + a.value.unsqueeze(1) * b.jac
        if self.second == "laplacian":
            sec = a.sec * b.value + 2 * (a.jac * b.jac).sum(dim=1) + a.value * b.sec
        elif self.second == "diagonal":
            sec = a.sec * b.value.unsqueeze(1) + 2 * a.jac * b.jac + a.value.unsqueeze(1) * b.sec
        else:
            cross = a.jac.unsqueeze(2) * b.jac.unsqueeze(1)  # (N, K, K, m): ∂_k a ∂_l b
            sec = (a.sec * b.value[:, None, None, :] + cross + cross.transpose(1, 2)
                   + a.value[:, None, None, :] * b.sec)
        return Jet(value, jac, self.second, sec, exact=self.exact)

    def shifted_product(self, scale: Jet, base: Jet) -> Jet:
        """``base + scale * self`` (``scale`` may have one component, broadcast over this jet's ``m``)."""
        return base.plus(scale.times(self))

    @classmethod
    def cat(cls, jets: list[Jet]) -> Jet:
        """The jet of the components of ``jets`` side by side (``torch.cat`` along dimension 1)."""
        first = jets[0]
        return cls(torch.cat([j.value for j in jets], dim=1), torch.cat([j.jac for j in jets], dim=-1),
                   first.second, torch.cat([j.sec for j in jets], dim=-1), exact=first.exact)

    @classmethod
    def of_function(cls, f: Callable[[Tensor], Tensor], seed: Jet, *, name: str = "the function") -> Jet:
        r"""The jet of a pointwise function ``f`` of the points at the seed jet's points and
        directions. ``f`` holds no trainable parameters, so the result is a constant of the
        training step.

        A function with a ``jet`` method (such as :class:`~pinn.pdes.base.VanishingOnBall`)
        gives its derivatives in closed form: ``f.jet(seed)``, where that returns a jet and not
        ``None`` (derivatives it does not give). Otherwise they come from
        forward-mode products of ``torch.func.jvp``: ``f`` applied to the whole batch with one
        direction per point (right because ``f`` is pointwise), nested once, so that one pass
        along ``(v, w)`` returns both :math:`\partial_v f` and :math:`w^\top \nabla^2 f\, v`.
        Each direction then costs a few passes over the ``(N, d)`` points, which is what a
        closed form saves in many dimensions."""
        closed_form = getattr(f, "jet", None)
        jet = None if closed_form is None else closed_form(seed)
        if jet is not None:
            return jet
        load_forward_mode_quietly()
        # (torch.func cannot differentiate at expanded points: one point repeated, say)
        x, directions = seed.value.detach().contiguous(), seed.jac.detach()  # (N, d), (N, K, d)
        k = directions.shape[1]
        along = [directions[:, j, :].expand_as(x) for j in range(k)]

        def derivative(v: Tensor):
            return lambda y: torch.func.jvp(f, (y,), (v,))[1]

        def pair(v: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
            return torch.func.jvp(derivative(v), (x,), (w,))  # ∂_v f and wᵀ ∇² f v

        given = value = check_pointwise(name, f(x), x)
        n = x.shape[0]
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != n:  # one value for all points
            value = torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(1, -1).expand(n, -1)
            jac = value.new_zeros(()).expand(n, k, value.shape[1])
            jet = cls(value, jac, seed.second, shared_zero_second(jac, seed.second), exact=seed.exact)
            jet.given = given  # as f returned it, for the messages of later checks
            return jet
        if seed.second == "hessian":
            rows = [[pair(v, w) for w in along] for v in along]
            jac = torch.stack([rows[j][j][0] for j in range(k)], dim=1)  # (N, K, k_out)
            sec = torch.stack([torch.stack([p[1] for p in row], dim=1) for row in rows], dim=1)
            return cls(value, jac, seed.second, sec, exact=seed.exact)
        pairs = [pair(v, v) for v in along]
        jac = torch.stack([p[0] for p in pairs], dim=1)
        if seed.second == "laplacian":
            sec = sum(p[1] for p in pairs)
        else:
            sec = torch.stack([p[1] for p in pairs], dim=1)
        return cls(value, jac, seed.second, sec, exact=seed.exact)

    def along(self, directions: Tensor) -> Jet:
        """This ``laplacian``-mode jet along the coordinate axes, turned into one along
        ``directions`` ``(N, K, d)`` (random ones, the stochastic engine's): its first derivatives
        projected onto them, one product, and its exact Laplacian kept as the estimate of the
        Laplacian (unbiased, without variance). For a function of the points alone, whose jet
        along the axes is computed once per point set (see :func:`_transform_jets`)."""
        jac = _distinct_rows(directions) @ self.jac  # (N or 1, K, d) @ (N, d, m): (N, K, m)
        made = Jet(self.value, jac, "laplacian", self.sec, exact=False)
        made.given = self.given
        return made

    # ------------------------------------------------------------------ behaving like the field

    @property
    def shape(self) -> torch.Size:
        """``(N, m)``; known before the value is made (an operator's checks read it)."""
        value = self._value
        return value.shape if not isinstance(value, _Later) else value.shape or self.value.shape

    def __getitem__(self, index) -> Jet:
        """Select components: ``u[:, k:k+1]`` (rows are points and are always all kept).

        Slices or lists of indices, not one integer: on a tensor ``u[:, k]`` drops the component
        axis, giving ``(N,)``, which a Jet cannot mirror, and a residual that broadcast ``(N,)``
        against ``(N, 1)`` would differ between engines. Selecting no component is an error, as
        is an index out of range."""
        if not (isinstance(index, tuple) and len(index) == 2 and index[0] == slice(None)):
            raise IndexError("a Jet is indexed by component only, as u[:, k:k+1]")
        cols, m = index[1], self.value.shape[1]
        if isinstance(cols, int):
            wanted = f"{cols}:" if cols == -1 else f"{cols}:{cols + 1}"
            raise IndexError(f"index a field by a slice, u[:, {wanted}], not u[:, {cols}]: a slice keeps the "
                             "(N, 1) shape under every derivative engine")
        if isinstance(cols, slice):
            if not range(m)[cols]:
                raise IndexError(f"u[:, {cols.start}:{cols.stop}] selects no component of a field with {m}")
        elif not (isinstance(cols, list) and cols and all(isinstance(c, int) and -m <= c < m for c in cols)):
            raise IndexError(f"a Jet's components are selected by a slice or a non-empty list of indices below {m}; "
                             f"got {cols!r}")
        return self._select(cols)

    def rows(self, start: int, stop: int) -> Jet:
        """The field at points ``start:stop`` of its points (``0 <= start <= stop <= N``): a view
        of every carried tensor, each made when first read (:class:`_Later`)."""
        value = _Later(lambda: self.value[start:stop], (stop - start, self.shape[1]))
        jac, sec = _Later(lambda: self.jac[start:stop]), _Later(lambda: self.sec[start:stop])
        return Jet(value, jac, self.second, sec, exact=self.exact, zero_second=self.zero_second)

    def _select(self, cols) -> Jet:
        jet = Jet(self.value[:, cols], self.jac[..., cols], self.second, self.sec[..., cols], exact=self.exact,
                  zero_second=self.zero_second)
        jet.points = self.points
        return jet

    # Arithmetic treats a Jet as its value: residuals combine values with derivatives read by operators.
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        """Torch functions, and tensor arithmetic with a Jet on the right (``u_x * u``), see a Jet
        as its value. (It also lets ``torch.compile`` trace ``u * u_x``, which it otherwise
        cannot put in its graph.)"""
        value = lambda a: a.value if isinstance(a, Jet) else a  # noqa: E731
        return func(*torch.utils._pytree.tree_map(value, args), **torch.utils._pytree.tree_map(value, kwargs or {}))

    def __add__(self, other): return self.value + other
    def __radd__(self, other): return other + self.value
    def __sub__(self, other): return self.value - other
    def __rsub__(self, other): return other - self.value
    def __mul__(self, other): return self.value * other
    def __rmul__(self, other): return other * self.value
    def __truediv__(self, other): return self.value / other
    def __rtruediv__(self, other): return other / self.value
    def __neg__(self): return -self.value
    def __pow__(self, power): return self.value**power
    def __rpow__(self, base): return base**self.value
    def __abs__(self): return self.value.abs()
    # Comparisons too (u > 0 is a tensor of bools, as under autograd), and a Jet stays hashable.
    def __eq__(self, other): return self.value == other
    def __ne__(self, other): return self.value != other
    def __lt__(self, other): return self.value < other
    def __le__(self, other): return self.value <= other
    def __gt__(self, other): return self.value > other
    def __ge__(self, other): return self.value >= other
    __hash__ = object.__hash__

    def __getattr__(self, name: str):
        """Tensor attributes and methods the Jet lacks are its value's (``u.square()``,
        ``u.dtype``), so a residual reads the same under every engine."""
        if name.startswith("_") or name == "value":  # never the value's own internals (copying, pickling)
            raise AttributeError(name)
        if name.endswith("_") or name == "data":
            raise AttributeError(f"a {type(self).__name__} has no {name!r}: changing its value in place would leave "
                                 "its derivatives as they were; compute a new tensor instead (u * 2, not u.mul_(2))")
        try:
            return getattr(self.value, name)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__} (and its value, a tensor) has no attribute {name!r}") from None

    # ------------------------------------------------------------------ reading operators off

    def _missing(self, what: str, need: str) -> ConfigError:
        return ConfigError(
            f"the forward engine carries {self.describe()}, not {what}; set derivatives.second={need} "
            "or use derivatives.engine=autograd"
        )

    def describe(self) -> str:
        kind = "exact" if self.exact else "random-direction"
        return f"values, {kind} first derivatives and second derivatives as {self.second!r}"

    def _require_exact(self, what: str) -> None:
        if not self.exact:
            raise ConfigError(
                f"the stochastic engine estimates the Laplacian only; {what} needs exact derivatives: "
                "use derivatives.engine=forward or autograd"
            )

    @staticmethod
    def _own(carried: Tensor) -> Tensor:
        """``carried``, read off the carried derivatives, as a tensor of its own (as autograd's
        results are): a residual that changes an operator's result in place must not change
        what later operators read off the field, nor write into the seed's shared zero."""
        return carried.clone()

    def operator(self, name: str, *indices: int) -> Tensor:
        """The operator ``name`` of this field, read off the carried derivatives (see
        :mod:`pinn.operators` for the shapes)."""
        if name == "laplacian":
            if self.second == "laplacian":
                return self._own(self.sec)
            if self.second == "diagonal":
                return self.sec.sum(dim=1)
            return torch.diagonal(self.sec, dim1=1, dim2=2).sum(dim=-1)
        self._require_exact(name if name != "partial" else
                            f"partial (the derivative {'d' if len(indices) == 1 else f'd{len(indices)}'}u/"
                            f"{''.join(f'dx{i}' for i in indices)})")
        if name == "grad":
            return self._own(self.jac[..., 0])
        if name == "jacobian":
            return self._own(self.jac.transpose(1, 2))  # (N, m, d)
        if name == "divergence":  # the Jacobian's trace: a sum, a tensor of its own already
            return torch.diagonal(self.jac, dim1=1, dim2=2).sum(dim=1, keepdim=True)
        if name == "hessian":
            if self.second != "hessian":
                raise self._missing("the full Hessian", "hessian")
            return self._own(self.sec[..., 0])
        if name == "partial":
            if len(indices) == 1:
                return self._own(self.jac[:, indices[0], :1])
            if len(indices) == 2:
                i, j = indices
                if self.second == "hessian":
                    return self._own(self.sec[:, i, j, :1])
                if i == j and self.second == "diagonal":
                    return self._own(self.sec[:, i, :1])
                need = "diagonal" if i == j else "hessian"
                raise self._missing(f"the second derivative d2u/dx{i}dx{j}", need)
            raise ConfigError(
                f"the forward engine carries derivatives up to second order; partial of order {len(indices)} "
                "needs derivatives.engine=autograd"
            )
        raise ValueError(f"unknown operator {name!r}")


#: Layers propagated by a rule of their own (activations are in RULES). ``nn.ModuleList``
#: only holds layers for the network that owns it (it cannot run itself), so it is
#: accepted here and its owner decides how its layers are applied.
SUPPORTED = (MLP, ModifiedMLP, nn.Sequential, nn.ModuleList, nn.Linear, FactorizedLinear, TrigEmbedding, OutputTransform)


def _why_not_as_is(module: nn.Module) -> str | None:
    """Why :func:`propagate` would not compute what a supported-looking ``module`` computes
    (``None``: it would): forward hooks that change its output, an in-place activation (which
    overwrites the pre-activation the derivative rules read), or a subclass that overrides the
    supported class's ``forward`` (or replaces it on the instance)."""
    if module._forward_hooks or module._forward_pre_hooks:
        return "it has forward hooks"
    if "forward" in vars(module):  # set on the instance: the rules would describe the class's forward
        return "its forward is replaced on the instance"
    if getattr(module, "inplace", False):
        return "it works in place (inplace=True)"
    if isinstance(module, nn.GELU) and module.approximate != "none":
        return f"its approximate={module.approximate!r} form has no rule (nn.GELU() has)"
    if isinstance(module, OutputTransform):
        for part in ("base", "scale"):
            function = getattr(module, part)
            trained = [name for name, p in function.named_parameters() if p.requires_grad] \
                if isinstance(function, nn.Module) else []
            if trained:
                return (f"its {part} has trainable parameters ({', '.join(trained[:3])}{', ...' if trained[3:] else ''}), "
                        "but the engine takes its derivatives once per point set, as constants of the training step")
    if type(module) in RULES or any(isinstance(module, cls) and type(module).forward is cls.forward for cls in SUPPORTED):
        return None
    return "it overrides the forward of a supported layer"


def check_supported(model: nn.Module) -> None:
    """Raise :class:`ConfigError` naming the first layer the forward engine cannot propagate."""
    outermost = set()  # hard constraints wrapping the whole network (or one that does): applied to the seed
    inner = model
    while isinstance(inner, OutputTransform):
        outermost.add(id(inner))
        inner = inner.net
    for name, module in model.named_modules():
        if isinstance(module, OutputTransform) and id(module) not in outermost:
            raise ConfigError(
                f"the forward engine cannot propagate layer {name!r} (OutputTransform): a hard constraint must wrap "
                "the whole network, as the PDE's constrain() does, since the engine applies its base and scale "
                "to the points themselves. Move it outside, or use derivatives.engine=autograd for this network"
            )
        if type(module) in RULES or isinstance(module, SUPPORTED):
            reason = _why_not_as_is(module)
            if reason is None:
                continue
            raise ConfigError(
                f"the forward engine cannot propagate layer {name or 'model'!r} ({type(module).__name__}): {reason}. "
                "Change that, or use derivatives.engine=autograd for this network"
            )
        raise ConfigError(
            f"the forward engine cannot propagate layer {name or 'model'!r} ({type(module).__name__}); "
            f"supported: Linear, FactorizedLinear, FourierFeatures, PeriodicEmbedding, "
            f"{', '.join(t.__name__ for t in RULES)} in Sequential/MLP/ModifiedMLP. "
            "Use derivatives.engine=autograd for this network"
        )


def _trig_embedding(module: TrigEmbedding, jet: Jet) -> Jet:
    """``[x_P, cos(Bx), sin(Bx)]``: the linear map ``z = Bx``, then cos and sin as activations
    (cos' = -sin, cos'' = -cos; sin' = cos, sin'' = -sin), then the columns side by side."""
    z = jet.linear(module.frequencies(jet.value.dtype), None)
    cos, sin = torch.cos(z.value), torch.sin(z.value)
    parts = [jet[:, module.passthrough]] if module.passthrough else []
    return Jet.cat(parts + [z.activate(cos, -sin, -cos), z.activate(sin, cos, -sin)])


def _modified_mlp(module: ModifiedMLP, jet: Jet, triton: bool = False) -> Jet:
    """The modified MLP's forward pass, step by step, on jets (see :class:`ModifiedMLP`). With
    ``triton`` the encoders and gates (each a linear layer and its activation) run in the fused
    kernels where they apply; the gating itself does not."""
    h = _propagate(module.embedding, jet, triton)
    u, v = _propagate(module.encoder_u, h, triton), _propagate(module.encoder_v, h, triton)
    v_minus_u = v.minus(u)
    for gate in module.gates:
        h = u.plus(_propagate(gate, h, triton).times(v_minus_u))  # U + Z (V - U)
    return _propagate(module.head, h)


def _part_jets(module: OutputTransform, seed: Jet) -> tuple[Jet, Jet]:
    parts = (Jet.of_function(module.scale, seed, name="the hard constraint's scale"),
             Jet.of_function(module.base, seed, name="the hard constraint's base"))
    for name, part in zip(("scale", "base"), parts):
        # The seed's points need no gradient here, so one that does reaches a trained tensor:
        # a parameter that check_supported cannot see (held by a closure, say).
        if any(t is not None and t.requires_grad for t in (part.value, part.jac, part.sec)):
            raise ConfigError(
                f"the hard constraint's {name} depends on a tensor that requires a gradient (a trainable parameter "
                "it reaches from outside, say), but the forward engine takes its derivatives once per point set, as "
                "constants of the training step. Make it a fixed function of the points (detach what it reads), or "
                "use derivatives.engine=autograd"
            )
    return parts


def _transform_jets(module: OutputTransform, seed: Jet) -> tuple[Jet, Jet]:
    r"""The jets of a hard constraint's scale and base at the seed's points.

    They do not depend on the network's parameters. Along the coordinate axes they are
    functions of the points alone, kept by the active :class:`~pinn.point_cache.PointCache` (in
    the trainer's steps): computed once per point set, brought up to date in place when the
    points are written, and read, not computed, by a step replayed as a CUDA graph (taken with
    ``torch.func``, they are several hundred operations).

    Along ``K`` random directions :math:`v_k` (the stochastic engine's, drawn at each
    evaluation) they come from those along the ``d`` axes where that costs no more: where
    ``d + 1`` passes over the points, once per point set, are at most ``K`` passes at each of
    the evaluations the set serves (:func:`~pinn.point_cache.uses_per_set`; all of them where
    the points stay). The first derivatives are then :math:`\nabla f \cdot v_k`, one product,
    and the estimate of :math:`\Delta f` is :math:`\Delta f` itself. The estimate of
    :math:`\Delta(b + s N)` stays unbiased, since the exact Laplacian of a function of the points
    alone is the expectation of its estimate, and it loses that part of its variance.
    Elsewhere (new points at every step in many dimensions) they are computed along the
    directions at every call.
    """
    if seed.is_seed and not seed.exact and seed.second == "laplacian":
        _, k, d = seed.jac.shape
        if d + 1 <= k * uses_per_set(seed.value):
            return tuple(part.along(seed.jac) for part in _transform_jets(module, Jet.seed(seed.value, "laplacian")))
    if not (seed.is_seed and seed.exact):
        return _part_jets(module, seed)
    second = seed.second

    def parts(x: Tensor) -> tuple:
        return tuple(t for jet in _part_jets(module, Jet.seed(x, second)) for t in (jet.value, jet.jac, jet.sec, jet.given))

    def jet(value: Tensor, jac: Tensor, sec: Tensor, given) -> Jet:
        made = Jet(value, jac, second, sec)
        made.given = given
        return made

    stored = at_points((_transform_jets, module, second), parts, seed.value)
    return jet(*stored[:4]), jet(*stored[4:])


def _check_components(scale: Jet, base: Jet, outputs: int, x: Tensor) -> None:
    """A hard constraint's base and scale have one component, or as many as the network has
    outputs (as :class:`~pinn.models.OutputTransform` checks under autograd)."""
    check_pointwise("the hard constraint's base", base.value if base.given is None else base.given, x, outputs)
    check_pointwise("the hard constraint's scale", scale.value if scale.given is None else scale.given, x, outputs)


def propagate(module: nn.Module, jet: Jet, *, triton: bool = False) -> Jet:
    """Push ``jet`` through ``module`` (see :func:`check_supported` for what is supported).

    With ``triton``, each linear layer of an ``nn.Sequential`` (an MLP, or the encoders and
    gates of a modified MLP) that is followed by an activation runs together with it as one
    Triton kernel where :func:`pinn.fused.applies`, or
    for the first layer :func:`pinn.fused.first_layer_applies` (``laplacian`` and ``diagonal``
    modes, the activations of :data:`pinn.fused.ACTIVATIONS`, a CUDA GPU), and as below elsewhere.

    A layer it would not compute as it runs (one :func:`check_supported` refuses: a forward
    hook, an in-place activation, an overridden ``forward``, a layer without a rule) is refused
    with the same :class:`ConfigError`, naming the layer, whether or not the engine's ``check``
    ran before: never answered with the numbers of another network."""
    try:
        return _propagate(module, jet, triton)
    except _Refused:
        check_supported(module)  # raises, naming the layer
        raise


class _Refused(ConfigError):
    """A layer :func:`_propagate` cannot compute as it runs; :func:`propagate` names it."""


def _propagate(module: nn.Module, jet: Jet, triton: bool = False) -> Jet:
    """:func:`propagate`'s recursion."""
    known = type(module) in RULES or isinstance(module, SUPPORTED)
    reason = _why_not_as_is(module) if known else "it has no rule"
    if reason is not None:
        raise _Refused(f"the forward engine cannot propagate a {type(module).__name__}: {reason}. "
                       "Use derivatives.engine=autograd for this network")
    if isinstance(module, MLP):
        return _propagate(module.net, jet, triton)
    if isinstance(module, ModifiedMLP):
        return _modified_mlp(module, jet, triton)
    if isinstance(module, OutputTransform):  # applied to the network's input jet, the seed
        if not jet.is_seed:
            raise _Refused("a hard constraint (OutputTransform) must wrap the whole network: the forward engine "
                           "applies its base and scale to the points, not to a layer's output")
        inner = _propagate(module.net, jet, triton)
        scale, base = _transform_jets(module, jet)
        _check_components(scale, base, inner.value.shape[1], jet.value)
        return inner.shifted_product(scale, base)
    if isinstance(module, nn.Sequential):
        layers, i = list(module), 0
        while i < len(layers):
            pair = (triton and i + 1 < len(layers) and jet.second in fused.MODES
                    and _why_not_as_is(layers[i]) is None and _why_not_as_is(layers[i + 1]) is None)
            if pair and not jet.zero_second and fused.applies(layers[i], layers[i + 1], jet.value, jet.jac, jet.sec):
                value, jac, sec = fused.linear_activate(layers[i], layers[i + 1], jet.value, jet.jac, jet.sec)
                jet, i = Jet(value, jac, jet.second, sec, exact=jet.exact), i + 2
            elif pair and jet.zero_second and fused.first_layer_applies(layers[i], layers[i + 1], jet.value, jet.jac):
                axes = jet.is_seed and jet.exact  # the identity: read the weight's columns, no product
                value, jac, sec = fused.first_linear_activate(layers[i], layers[i + 1], jet.value,
                                                              None if axes else jet.jac[0],
                                                              diagonal=jet.second == "diagonal")
                jet, i = Jet(value, jac, jet.second, sec, exact=jet.exact), i + 2
            else:
                jet, i = _propagate(layers[i], jet, triton), i + 1
        return jet
    if isinstance(module, (nn.Linear, FactorizedLinear)):
        return jet.linear(module.weight, module.bias)  # FactorizedLinear.weight is diag(exp(s)) V
    if isinstance(module, TrigEmbedding):
        return _trig_embedding(module, jet)
    rule = RULES.get(type(module))
    if rule is None:
        raise _Refused(f"the forward engine cannot run a {type(module).__name__} on its own; "
                       "it holds layers for the network that owns it")
    if jet.second in ("laplacian", "diagonal"):
        sec_in = None if jet.zero_second else jet.sec
        value, jac, sec = _Activate.apply(jet.value, jet.jac, sec_in, module, rule, jet.second == "laplacian")
        return Jet(value, jac, jet.second, sec, exact=jet.exact)
    value = module(jet.value)
    return jet.activate(value, *rule(module, jet.value, value)[:2])


# ---------------------------------------------------------------------- Laplacians from Gram matrices


class GramLaplacian(Jet):
    """A field's values and exact Laplacians, without first derivatives: what
    :func:`gram_laplacian` computes. It behaves like a :class:`Jet` whose only operator is the
    Laplacian."""

    def __init__(self, value: Tensor, lap: Tensor):
        super().__init__(value, None, "laplacian", lap)

    def describe(self) -> str:
        return "values and exact Laplacians (computed from Gram matrices, derivatives.gram), no first derivatives"

    def rows(self, start: int, stop: int) -> GramLaplacian:
        return GramLaplacian(self.value[start:stop], self.sec[start:stop])

    def _select(self, cols) -> GramLaplacian:
        field = GramLaplacian(self.value[:, cols], self.sec[:, cols])
        field.points = self.points
        return field

    def operator(self, name: str, *indices: int) -> Tensor:
        if name == "laplacian":
            return self._own(self.sec)
        if name not in ("grad", "jacobian", "divergence", "hessian", "partial"):
            raise ValueError(f"unknown operator {name!r}")
        # what the forward engine must carry instead: first derivatives, and second ones per coordinate or all
        mixed = name == "hessian" or len(indices) == 2 and indices[0] != indices[1]
        second = "hessian" if mixed else "diagonal" if len(indices) == 2 else None
        setting = f"derivatives.gram=false derivatives.second={second}" if second else "derivatives.gram=false"
        declare = ("declare second_order = 'hessian'" if mixed else "declare second_order = 'diagonal'" if second
                   else "declare needs_gradient = True")
        raise ConfigError(
            f"the forward engine computed this field's Laplacian from Gram matrices and carries {self.describe()}, "
            f"so it cannot give {name}; set {setting} (and, for a PDE of your own whose residual reads them, "
            f"{declare} so that auto keeps them)"
        )


def linear_chain(model: nn.Module) -> list[nn.Module] | None:
    """The layers of ``model`` in order, if it is an alternation of linear layers and elementwise
    activations that starts with a linear layer (an :class:`~pinn.models.MLP` without
    embeddings, or ``nn.Sequential`` of such layers); ``None`` otherwise."""
    def flatten(module: nn.Module) -> list[nn.Module] | None:
        if _why_not_as_is(module) is not None:
            return None
        if isinstance(module, MLP):
            return flatten(module.net)
        if isinstance(module, nn.Sequential):
            parts = [flatten(layer) for layer in module]
            return None if any(part is None for part in parts) else [layer for part in parts for layer in part]
        if isinstance(module, (nn.Linear, FactorizedLinear)) or type(module) in RULES:
            return [module]
        return None

    layers = flatten(model)
    if not layers:
        return None
    linear = [isinstance(layer, (nn.Linear, FactorizedLinear)) for layer in layers]
    return layers if all(is_linear == (i % 2 == 0) for i, is_linear in enumerate(linear)) else None


def gram_laplacian(layers: list[nn.Module], x: Tensor) -> GramLaplacian:
    r"""The values and exact Laplacians of the network made of ``layers`` (see :func:`linear_chain`)
    at the points ``x`` ``(N, d)``, at a cost that does not grow with ``d`` past the first layer.

    Write :math:`J` for the first derivatives of a layer's pre-activation :math:`h` (one row per
    coordinate, ``d × m``). The Laplacian rule :math:`L_a = \sigma' L + \sigma'' \sum_i J_i^2`
    needs only :math:`\sum_i J_i^2`, the diagonal of the Gram matrix :math:`G = J^\top J`
    (``m × m``), and the Gram matrices follow from one another without :math:`J`:

    .. math::
        G_1 = W_1 W_1^\top, \qquad
        G_{l+1} = W_{l+1} \operatorname{diag}(\sigma'_l)\, G_l \operatorname{diag}(\sigma'_l) W_{l+1}^\top .

    Each layer then costs about :math:`2 m^3` products per point instead of :math:`d\, m^2`:
    fewer once ``d`` exceeds about one and a half times the width (faster in practice from about
    twice the width, see ``benchmarks/RESULTS.md``). The first layer's Gram matrix
    is the same at every point; the last hidden layer needs only the diagonal,
    :math:`\operatorname{diag}(W S W^\top) = \sum_j W_{\cdot j} (S W^\top)_{j \cdot}`.
    """
    value, lap, _ = _gram_chain(layers, x)
    return GramLaplacian(value, lap)


def _gram_chain(layers: list[nn.Module], x: Tensor,
                along: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Values and Laplacians of the chain at ``x`` by :func:`gram_laplacian`'s rule, and, given
    per-point directions ``along`` ``(N, k, d)``, the derivatives along them ``(N, k, m)``."""
    first = layers[0]
    w = first.weight  # read once per layer: a factorized layer computes it on each read
    h = nn.functional.linear(x, w, first.bias)
    lap = None  # the points' own Laplacians are zero
    slope = None if along is None else along @ w.T  # ∂h along each direction: (N, k, m)
    # The Gram matrix of h is kept as (p, w) with G = w p, p = S wᵀ (S: the input's Gram matrix;
    # for the points, the identity): its diagonal costs m² per point, the full matrix m³.
    p = w.T
    for i in range(1, len(layers), 2):
        activation = layers[i]
        a = activation(h)
        d1, d2, _ = RULES[type(activation)](activation, h, a)
        squares = (p * w.T).sum(dim=-2)  # diag(G) = Σ_i (∂h/∂x_i)²: (m,) for the first layer, else (N, m)
        lap = d2 * squares if lap is None else torch.addcmul(d2 * squares, d1, lap)
        if slope is not None:
            slope = d1.unsqueeze(1) * slope
        if i + 1 == len(layers):
            return a, lap, slope
        linear = layers[i + 1]
        weight = linear.weight
        h = nn.functional.linear(a, weight, linear.bias)
        lap = lap @ weight.T
        if slope is not None:
            slope = slope @ weight.T
        if i + 2 < len(layers):  # an activation follows, which needs this layer's Gram matrix
            gram = torch.matmul(w, p)  # (m, m), or (N, m, m)
            scaled = d1.unsqueeze(-1) * gram * d1.unsqueeze(-2)  # the Gram matrix of a: diag(σ') G diag(σ')
            p, w = scaled @ weight.T, weight
    return h, lap if lap is not None else torch.zeros_like(h), slope


def gram_laplacian_of_transform(module: OutputTransform, layers: list[nn.Module], x: Tensor) -> GramLaplacian:
    r"""Values and exact Laplacians of a hard constraint :math:`u = b + s N` whose network ``N``
    is the chain ``layers`` (see :func:`gram_laplacian`), at the points ``x`` ``(N, d)``:

    .. math::
        \Delta u = \Delta b + s\, \Delta N + 2\, \nabla s \cdot \nabla N + N\, \Delta s .

    :math:`\Delta N` comes from the Gram matrices, and :math:`\nabla s \cdot \nabla N` is the
    derivative of ``N`` along :math:`\nabla s`: one more direction per point through the chain
    (per component of ``s``), at about the cost of the values. :math:`b` and :math:`s` with
    their gradients and Laplacians come from :meth:`Jet.of_function` along the coordinate axes:
    cheap where they are given in closed form (a ``jet`` method), ``d`` forward-mode passes over
    the points otherwise."""
    scale, base = _transform_jets(module, Jet.seed(x, "laplacian"))
    value, lap, slope = _gram_chain(layers, x, along=scale.jac.transpose(1, 2))  # along ∇s: (N, k, d)
    # s and N broadcast as in u = b + s N: one component of s scales every component of N, and
    # k components of both pair up one by one (more components than N has are refused).
    k, m = slope.shape[1:]
    _check_components(scale, base, m, x)
    slope = slope[:, 0, :] if k == 1 else torch.diagonal(slope, dim1=1, dim2=2)  # k == m
    u = base.value + scale.value * value
    return GramLaplacian(u, base.sec + scale.value * lap + 2 * slope + value * scale.sec)
