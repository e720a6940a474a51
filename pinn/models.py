r"""Pointwise networks: row ``i`` of the output depends on row ``i`` of the input only.

That property is what lets one backward pass with ``v = 1`` return every point's own gradient
(see :mod:`pinn.operators`), so no layer here mixes points (no batch normalization).

Two trunks, :class:`MLP` and :class:`ModifiedMLP`, share the same options for what comes
before and inside them:

* an input embedding, applied in this order: :class:`PeriodicEmbedding` (``periods``), which
  makes the network exactly periodic in chosen coordinates, then :class:`FourierFeatures`
  (``fourier_features``, ``fourier_sigma``), which lets it fit high frequencies;
* :class:`FactorizedLinear` layers in place of ``nn.Linear`` (``factorize``), the random weight
  factorization.

Every building block here has an exact forward-mode rule in :mod:`pinn.jet`, so each network
runs under every derivative engine.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from pinn.errors import ConfigError, PDEError, check_flag, check_positive

log = logging.getLogger("pinn")


class Sine(nn.Module):
    """``sin(x)`` as a module: the sine activation (Glorot-initialised like the others, without
    SIREN's frequency factor or initialisation)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


#: Activations with non-zero second derivatives (ReLU's vanishes, useless for second-order PDEs).
ACTIVATIONS = {
    "tanh": nn.Tanh,
    "sin": Sine,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}


# --------------------------------------------------------------------------- building blocks


class TrigEmbedding(nn.Module):
    r"""The map :math:`x \mapsto [x_P,\ \cos(B x),\ \sin(B x)]`: some coordinates ``x_P`` passed
    through unchanged, then cosines and sines of fixed linear combinations of the coordinates.

    ``B`` ``(F, d)`` is a buffer, not a parameter: it is saved in the ``state_dict`` and moves
    with the model, but the optimizer never changes it. It stays in float64 whatever the
    default dtype and whatever dtype the model is moved to, and is used in the dtype of the
    points (so a period of 2 stays exactly :math:`2\pi / 2` in the float64 stage of a run that
    began in float32, instead of the float32 rounding of it).
    ``(N, d) -> (N, len(passthrough) + 2F)``.
    """

    def __init__(self, B: Tensor, passthrough: Sequence[int] = ()):
        super().__init__()
        self.register_buffer("B", B.to(torch.float64))
        self.passthrough = list(passthrough)
        self.in_dim = B.shape[1]
        self.out_dim = len(self.passthrough) + 2 * B.shape[0]

    def frequencies(self, dtype: torch.dtype) -> Tensor:
        return self.B.to(dtype)

    def _apply(self, fn, recurse=True):
        # model.to(dtype=...) casts every floating buffer; B follows the device only.
        exact = self.B
        super()._apply(fn, recurse)
        self.B = exact.to(device=self.B.device)
        return self

    def forward(self, x: Tensor) -> Tensor:
        z = nn.functional.linear(x, self.frequencies(x.dtype))  # (N, F); the forward engine computes it the same way
        parts = [x[:, self.passthrough]] if self.passthrough else []
        return torch.cat(parts + [torch.cos(z), torch.sin(z)], dim=1)


class FourierFeatures(TrigEmbedding):
    r"""Random Fourier features (Tancik et al. 2020, "Fourier features let networks learn high
    frequency functions in low dimensional domains"; Wang, Wang & Perdikaris 2021, "On the
    eigenvector bias of Fourier feature networks"):

    .. math::
        \gamma(x) = [\cos(B x),\ \sin(B x)], \qquad B_{ij} \sim \mathcal N(0, \sigma^2),
        \quad B \in \mathbb{R}^{F \times d}.

    A network of :math:`\gamma(x)` has the frequencies of ``B`` at hand from the start, which
    counters the spectral bias of plain MLPs (they fit low frequencies first and high ones
    very slowly); ``sigma`` sets the frequency scale and should match the solution's angular
    frequencies. There is no factor 2π inside the cosine (as in Wang et al. and jaxpi; Tancik et
    al. write :math:`\cos(2\pi B x)`), so ``sigma`` is 2π times their σ.
    ``B`` is drawn once, at construction, from torch's global generator (so
    ``torch.manual_seed`` reproduces it), and kept fixed. ``(N, d) -> (N, 2F)``.
    """

    def __init__(self, in_dim: int, *, features: int, sigma: float = 1.0):
        check_positive("model.in_dim", in_dim)
        check_positive("model.fourier_features", features)
        check_positive("model.fourier_sigma", sigma, integer=False)
        super().__init__(sigma * torch.randn(features, in_dim, dtype=torch.float64))
        self.sigma = sigma

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, features={self.B.shape[0]}, sigma={self.sigma}"


class PeriodicEmbedding(TrigEmbedding):
    r"""Exact periodicity in chosen coordinates (Dong & Ni 2021, "A method for representing
    periodic functions and enforcing exactly periodic boundary conditions with deep neural
    networks"; jaxpi's ``periodic_embedding``). Coordinate :math:`x_i` with period :math:`P_i`
    is replaced by

    .. math::
        \cos(2\pi x_i / P_i),\ \sin(2\pi x_i / P_i),

    the others are passed through. Any network of the result satisfies
    :math:`u(x + P_i e_i) = u(x)` identically, and so does every derivative of :math:`u`: a
    periodic boundary condition in that coordinate then holds exactly (its loss is round-off).

    Args:
        in_dim: number of coordinates ``d``.
        periods: ``{axis: period}`` (axes counted from 0, in the points' column order), or a
            list of ``d`` entries with ``None`` for the non-periodic axes.

    Output columns: the passed-through coordinates in their order, then the cosines, then
    the sines (the order is immaterial to the dense layer that follows).
    ``(N, d) -> (N, d + p)`` for ``p`` periodic axes.
    """

    def __init__(self, in_dim: int, *, periods: Mapping[int, float] | Sequence[float | None]):
        check_positive("model.in_dim", in_dim)
        self.periods = _parse_periods(in_dim, periods)
        rows = torch.zeros(len(self.periods), in_dim, dtype=torch.float64)
        for row, (axis, period) in enumerate(self.periods.items()):
            rows[row, axis] = 2 * math.pi / period
        super().__init__(rows, passthrough=[i for i in range(in_dim) if i not in self.periods])

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, periods={self.periods}"


def _parse_periods(in_dim: int, periods) -> dict[int, float]:
    """``{axis: period}`` from either accepted form, checked: axes in range, periods > 0."""
    if isinstance(periods, Mapping):
        items = list(periods.items())
    elif isinstance(periods, Sequence) and not isinstance(periods, str):
        if len(periods) != in_dim:
            raise ConfigError(
                f"model.periods as a list needs one entry per coordinate ({in_dim}, null where not periodic); "
                f"got {len(periods)}: {list(periods)!r}. Or give {{axis: period}}"
            )
        items = [(axis, p) for axis, p in enumerate(periods) if p is not None]
    else:
        raise ConfigError(f"model.periods must be {{axis: period}} or a list with null for non-periodic axes; got {periods!r}")
    parsed = {}
    for axis, period in items:
        if isinstance(axis, str) and axis.isdigit():
            axis = int(axis)  # Hydra's `+model.periods.1=3.0` makes the key a string
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ConfigError(f"model.periods: axis {axis!r} is not an axis number; the points have axes 0..{in_dim - 1}")
        if not 0 <= axis < in_dim:
            raise ConfigError(f"model.periods: axis {axis!r} is out of range; the points have axes 0..{in_dim - 1}")
        if isinstance(period, bool) or not isinstance(period, (int, float)) or not 0 < period < math.inf:
            raise ConfigError(f"model.periods: the period of axis {axis} must be a finite number > 0; got {period!r}")
        parsed[axis] = float(period)
    if not parsed:
        raise ConfigError("model.periods names no periodic axis; give {axis: period}, or null for no periodic embedding")
    return dict(sorted(parsed.items()))


class FactorizedLinear(nn.Module):
    r"""A linear layer with random weight factorization (Wang, Wang, Wang & Perdikaris 2022,
    "Random weight factorization improves the training of continuous neural representations"):

    .. math::
        h' = W h + b, \qquad W = \operatorname{diag}(e^{s})\, V,

    with the per-output scales ``s`` ``(out,)`` and the direction matrix ``V`` ``(out, in)``
    both trained. The function class is that of ``nn.Linear``; what changes is the
    parametrization, and with it the optimizer's steps: each output unit gets its own
    learnable step size, which the paper finds to speed up and stabilize training.

    :meth:`from_linear` factorizes an existing layer: ``s ~ N(mu, sigma)``, ``V = W / e^{s}``,
    so the new layer starts as exactly the same function (to round-off).
    """

    def __init__(self, in_features: int, out_features: int, *, mu: float = 1.0, sigma: float = 0.1):
        super().__init__()
        _check_factorization(mu, sigma)
        self.in_features, self.out_features = in_features, out_features
        self.s = nn.Parameter(mu + sigma * torch.randn(out_features))
        self.V = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.xavier_normal_(self.V)
        with torch.no_grad():
            self.V.div_(torch.exp(self.s).unsqueeze(1))  # so that the effective weight is Glorot-normal

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, mu: float = 1.0, sigma: float = 0.1) -> FactorizedLinear:
        """The factorization of ``linear``: the same function, with fresh scales ``s``."""
        layer = cls(linear.in_features, linear.out_features, mu=mu, sigma=sigma)
        with torch.no_grad():
            layer.V.copy_(linear.weight / torch.exp(layer.s).unsqueeze(1))
            layer.bias.copy_(linear.bias)
        return layer.to(linear.weight)

    @property
    def weight(self) -> Tensor:
        """The effective weight ``diag(exp(s)) V`` ``(out, in)``."""
        return torch.exp(self.s).unsqueeze(1) * self.V

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _check_factorization(mu: float, sigma: float) -> None:
    # exp(s) scales the weights, s ~ N(mu, sigma): beyond |mu| = 20 (a factor of 5e8) float32
    # weights and activations overflow long before training could bring them back. With sigma
    # up to 5, |s| stays below 20 + 6 * 5 = 50 in any likely draw, well inside float32's e^88
    # (beyond it exp(s) is infinite, V = W / exp(s) zero, and the network NaN as it is built).
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not -20 <= mu <= 20:
        raise ConfigError(f"model.factorize_mu must be a number in [-20, 20] (the paper uses 0.5 to 1); got {mu!r}")
    check_positive("model.factorize_sigma", sigma, integer=False, allow_zero=True)
    if sigma > 5:
        raise ConfigError(f"model.factorize_sigma must be at most 5 (the paper uses 0.1); got {sigma!r}")


# --------------------------------------------------------------------------- shared options


def _check_sizes(in_dim: int, out_dim: int, width: int, depth: int, activation: str) -> None:
    for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("width", width), ("depth", depth)):
        check_positive(f"model.{name}", value)
    _check_activation(activation)


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown model.activation {activation!r}; valid choices: {', '.join(ACTIVATIONS)}")


def _embedding(in_dim: int, periods, fourier_features: int, fourier_sigma: float) -> list[nn.Module]:
    """The input embedding the options ask for (periodic, then Fourier features), possibly none."""
    check_positive("model.fourier_features", fourier_features, allow_zero=True)
    check_positive("model.fourier_sigma", fourier_sigma, integer=False)
    if not fourier_features and fourier_sigma != 1.0:  # (1.0, the default, is set in every model config)
        log.warning("model.fourier_sigma=%g has no effect without Fourier features (model.fourier_features=0); "
                    "set model.fourier_features > 0, or choose model=fourier", fourier_sigma)
    layers: list[nn.Module] = []
    if periods is not None:
        layers.append(PeriodicEmbedding(in_dim, periods=periods))
        in_dim = layers[-1].out_dim
    if fourier_features:
        layers.append(FourierFeatures(in_dim, features=fourier_features, sigma=fourier_sigma))
    return layers


def _width(in_dim: int, embedding: list[nn.Module]) -> int:
    return embedding[-1].out_dim if embedding else in_dim


def _dense(sizes: list[tuple[int, int]], factorize: bool, mu: float, sigma: float) -> list[nn.Module]:
    """Linear layers ``(fan_in, fan_out)``, Glorot-normal with zero biases, each factorized if
    asked (the same function). All are built before any is initialised, the order that
    earlier versions used, so a seed gives the same plain MLP as before."""
    check_flag("model.factorize", factorize)
    _check_factorization(mu, sigma)
    if not factorize and (mu, sigma) != (1.0, 0.1):  # the defaults, set in every model config
        log.warning("model.factorize_mu=%g and model.factorize_sigma=%g have no effect without the factorization "
                    "(model.factorize=false); set model.factorize=true, or choose model=rwf", mu, sigma)
    layers = [nn.Linear(fan_in, fan_out) for fan_in, fan_out in sizes]
    for layer in layers:
        nn.init.xavier_normal_(layer.weight)
        nn.init.zeros_(layer.bias)
    if factorize:
        return [FactorizedLinear.from_linear(layer, mu=mu, sigma=sigma) for layer in layers]
    return layers


# --------------------------------------------------------------------------- networks


class MLP(nn.Module):
    r"""Fully connected network :math:`\mathbb{R}^{d} \to \mathbb{R}^{m}`.

    ``depth`` hidden layers of ``width`` units with the chosen activation, then a linear output.
    Weights start Glorot-normal and biases at zero, the usual PINN initialisation.

    Args:
        in_dim: number of input coordinates ``d`` (passed by the PDE).
        out_dim: number of output components ``m`` (passed by the PDE).
        width, depth: hidden layer size and count.
        activation: one of :data:`ACTIVATIONS`.
        periods: exact periodicity (:class:`PeriodicEmbedding`): ``{axis: period}``, or a list
            with ``None`` for non-periodic axes; ``None`` for none.
        fourier_features, fourier_sigma: :class:`FourierFeatures` with that many frequencies
            (``0``: none) of scale ``fourier_sigma``, after the periodic embedding if both.
        factorize, factorize_mu, factorize_sigma: :class:`FactorizedLinear` layers with
            ``s ~ N(mu, sigma)`` instead of ``nn.Linear``.
    """

    def __init__(self, in_dim: int, out_dim: int, *, width: int = 50, depth: int = 3, activation: str = "tanh",
                 periods=None, fourier_features: int = 0, fourier_sigma: float = 1.0,
                 factorize: bool = False, factorize_mu: float = 1.0, factorize_sigma: float = 0.1):
        super().__init__()
        _check_sizes(in_dim, out_dim, width, depth, activation)
        self.in_dim, self.out_dim, self.activation = in_dim, out_dim, activation
        layers = _embedding(in_dim, periods, fourier_features, fourier_sigma)
        sizes = [_width(in_dim, layers)] + [width] * depth + [out_dim]
        *hidden, last = _dense(list(zip(sizes[:-1], sizes[1:])), factorize, factorize_mu, factorize_sigma)
        for linear in hidden:
            layers += [linear, ACTIVATIONS[activation]()]
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, d) -> (N, m)``."""
        _check_points(x, self.in_dim, "MLP")
        return self.net(x)


class ModifiedMLP(nn.Module):
    r"""The modified MLP of Wang, Teng & Perdikaris 2021 ("Understanding and mitigating gradient
    pathologies in physics-informed neural networks"): two encoders of the input gate every
    hidden layer,

    .. math::
        U = \sigma(W_u x + b_u), \quad V = \sigma(W_v x + b_v), \qquad H_0 = x,

        Z_k = \sigma(W_k H_{k-1} + b_k), \quad H_k = (1 - Z_k) \odot U + Z_k \odot V
        \quad (k = 1, \dots, \text{depth}),

        u = W H_{\text{depth}} + b.

    The input reaches every layer through ``U`` and ``V`` (a multiplicative skip connection),
    which the paper finds to make training less stiff. As in jaxpi (the same group's library,
    ``ModifiedMlp``), every hidden layer is gated, the first included; the paper's equations
    write the first one, :math:`H_1 = \sigma(W_1 x + b_1)`, ungated. With ``depth`` hidden
    layers the network has the layers of :class:`MLP` of the same ``width`` and ``depth`` plus
    the two encoders. :math:`H_k` is computed as :math:`U + Z_k \odot (V - U)`: algebraically
    the same, with one product instead of two.

    ``x`` is the embedded input when an embedding is asked for. Options as for :class:`MLP`.
    """

    def __init__(self, in_dim: int, out_dim: int, *, width: int = 50, depth: int = 3, activation: str = "tanh",
                 periods=None, fourier_features: int = 0, fourier_sigma: float = 1.0,
                 factorize: bool = False, factorize_mu: float = 1.0, factorize_sigma: float = 0.1):
        super().__init__()
        _check_sizes(in_dim, out_dim, width, depth, activation)
        self.in_dim, self.out_dim, self.activation = in_dim, out_dim, activation
        self.embedding = nn.Sequential(*_embedding(in_dim, periods, fourier_features, fourier_sigma))
        fan_in = _width(in_dim, list(self.embedding))
        sizes = [(fan_in, width)] * 3 + [(width, width)] * (depth - 1) + [(width, out_dim)]
        enc_u, enc_v, *gates, head = _dense(sizes, factorize, factorize_mu, factorize_sigma)

        def hidden(linear: nn.Module) -> nn.Sequential:  # σ(W h + b)
            return nn.Sequential(linear, ACTIVATIONS[activation]())

        self.encoder_u, self.encoder_v = hidden(enc_u), hidden(enc_v)
        self.gates = nn.ModuleList([hidden(linear) for linear in gates])
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        """``(N, d) -> (N, m)``."""
        _check_points(x, self.in_dim, "ModifiedMLP")
        h = self.embedding(x)
        u, v = self.encoder_u(h), self.encoder_v(h)
        for gate in self.gates:
            h = u + gate(h) * (v - u)  # (1 - Z) U + Z V
        return self.head(h)


def _check_points(x: Tensor, in_dim: int, name: str) -> None:
    if x.dim() != 2 or x.shape[1] != in_dim:
        raise ValueError(f"{name} expects points of shape (N, {in_dim}); got {tuple(x.shape)}")


class OutputTransform(nn.Module):
    r"""A network whose output satisfies some conditions exactly (a hard constraint):

    .. math::
        u(x) = b(x) + s(x)\, N(x),

    with ``N`` the wrapped network, ``b`` a field that meets the prescribed values and ``s`` a
    factor that vanishes where they are prescribed (a distance-like function of the boundary,
    or :math:`t - t_0` for initial values). ``b`` and ``s`` are pointwise functions of the points
    ``(N, d) -> (N, m)`` or ``(N, 1)``, written with torch operations. The forward and
    stochastic engines take their derivatives with ``torch.func``, or from the function's own
    ``jet(seed)`` method where it has one (:meth:`pinn.jet.Jet.of_function`), once per point set:
    they must be fixed functions of the points, with no trainable parameters (refused) and
    nothing else that changes between steps (not seen, while the points stay the same).
    """

    def __init__(self, net: nn.Module, base, scale):
        super().__init__()
        self.net, self.base, self.scale = net, base, scale

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        if out.dim() != 2:
            raise ConfigError(f"the network inside a hard constraint must map points (N, d) to (N, m); it returned "
                              f"{tuple(out.shape)} for points of shape {tuple(x.shape)}")
        outputs = out.shape[1]  # b and s have as many components, or one for all
        return (check_pointwise("the hard constraint's base", self.base(x), x, outputs)
                + check_pointwise("the hard constraint's scale", self.scale(x), x, outputs) * out)


def check_pointwise(what: str, y, x: Tensor, columns: int | None = None):
    """``y`` itself, if it broadcasts as a field of the points ``x`` ``(N, d)`` should: one row
    per point, ``(N, m)``, or one row for all, ``(1, m)``, or a number; with ``m`` equal to
    ``columns`` or 1 where ``columns`` is given. (An ``(N,)`` result would broadcast against an
    ``(N, 1)`` field into an ``(N, N)`` one, silently.)"""
    if isinstance(y, numbers.Real) and not isinstance(y, (bool, np.bool_)) or isinstance(y, Tensor) and y.dim() == 0:
        return y
    if not (isinstance(y, Tensor) and y.dim() == 2 and y.shape[0] in (1, x.shape[0])
            and (columns is None or y.shape[1] in (1, columns))):
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        want = f"({x.shape[0]}, {columns if columns is not None else 'm'})"
        if isinstance(y, Tensor) and y.dim() == 2 and y.shape[0] in (1, x.shape[0]):  # rows right, columns not
            hint = "give it one column" if columns == 1 else f"give it {columns} columns, or one for all"
        elif isinstance(y, Tensor) and y.dim() == 1 and y.shape[0] == x.shape[0]:
            hint = "keep the column dimension: x[:, 0:1], not x[:, 0]"
        elif isinstance(y, Tensor):
            hint = f"give one row per point ({x.shape[0]}) and one column per output"
        else:
            hint = "give a number or a tensor"
        raise PDEError(f"{what} must be a function of the points (N, d) -> (N, {columns or 'm'}); for points of "
                       f"shape {tuple(x.shape)} it returned {shape}, not {want}; {hint}")
    return y
