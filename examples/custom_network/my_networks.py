"""A network of one's own, chosen with ``model._target_=my_networks.StreamFunction``.

PYTHONPATH=examples/custom_network python train.py pde=kovasznay model._target_=my_networks.StreamFunction
"""

import torch
from torch import Tensor, nn

from pinn.errors import ConfigError
from pinn.models import MLP


class StreamFunction(nn.Module):
    """(u, v, p) = (∂ψ/∂y, -∂ψ/∂x, p) for a 2-D incompressible flow: the velocity is the curl
    of a stream function ψ, so it is divergence-free whatever the weights, and the continuity
    residual vanishes to round-off. One MLP (the ``model`` group's options) gives ψ and p."""

    def __init__(self, in_dim: int, out_dim: int, **options):
        super().__init__()
        if (in_dim, out_dim) != (2, 3):
            raise ConfigError(f"StreamFunction gives (u, v, p) of a 2-D flow, (N, 2) -> (N, 3); this PDE "
                              f"needs (N, {in_dim}) -> (N, {out_dim})")  # one line, exit status 2
        self.psi_p = MLP(in_dim, 2, **options)

    def forward(self, x: Tensor) -> Tensor:
        build_graph = torch.is_grad_enabled()  # off where the error is measured: no graph kept
        with torch.enable_grad():  # the derivative needs it, also where the caller turned it off
            x = x if x.requires_grad else x.detach().requires_grad_(True)
            psi_p = self.psi_p(x)
            dpsi = torch.autograd.grad(psi_p[:, 0].sum(), x, create_graph=build_graph)[0]
        return torch.stack([dpsi[:, 1], -dpsi[:, 0], psi_p[:, 1]], dim=1)
