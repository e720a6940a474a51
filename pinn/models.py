r"""Pointwise networks: row ``i`` of the output depends on row ``i`` of the input only.

That property is what lets one backward pass with ``v = 1`` return every point's own gradient
(see :mod:`pinn.operators`), so no layer here mixes points (no batch normalization).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pinn.errors import ConfigError, check_positive


class Sine(nn.Module):
    """``sin(x)`` as a module (SIREN-style activations)."""

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


class MLP(nn.Module):
    r"""Fully connected network :math:`\mathbb{R}^{d} \to \mathbb{R}^{m}`.

    ``depth`` hidden layers of ``width`` units with the chosen activation, then a linear output.
    Weights start Glorot-normal and biases at zero, the usual PINN initialisation.

    Args:
        in_dim: number of input coordinates ``d`` (passed by the PDE).
        out_dim: number of output components ``m`` (passed by the PDE).
        width, depth: hidden layer size and count.
        activation: one of :data:`ACTIVATIONS`.
    """

    def __init__(self, in_dim: int, out_dim: int, *, width: int = 50, depth: int = 3, activation: str = "tanh"):
        super().__init__()
        check_positive("model.in_dim", in_dim)
        check_positive("model.out_dim", out_dim)
        check_positive("model.width", width)
        check_positive("model.depth", depth)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown model.activation {activation!r}; valid choices: {', '.join(ACTIVATIONS)}")
        self.in_dim, self.out_dim, self.activation = in_dim, out_dim, activation
        sizes = [in_dim] + [width] * depth
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(sizes[-1], out_dim))
        self.net = nn.Sequential(*layers)
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, d) -> (N, m)``."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MLP expects points of shape (N, {self.in_dim}); got {tuple(x.shape)}")
        return self.net(x)


class OutputTransform(nn.Module):
    r"""A network whose output satisfies some conditions exactly (a hard constraint):

    .. math::
        u(x) = b(x) + s(x)\, N(x),

    with ``N`` the wrapped network, ``b`` a field that meets the prescribed values and ``s`` a
    factor that vanishes where they are prescribed (a distance-like function of the boundary,
    or :math:`t - t_0` for initial values). ``b`` and ``s`` are pointwise functions of the points
    ``(N, d) -> (N, m)`` or ``(N, 1)``, written with torch operations (the forward engine takes
    their derivatives with ``torch.func``).
    """

    def __init__(self, net: nn.Module, base, scale):
        super().__init__()
        self.net, self.base, self.scale = net, base, scale

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + self.scale(x) * self.net(x)
