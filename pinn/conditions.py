r"""Boundary and initial conditions, each a residual on its own points."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


class Dirichlet:
    r"""Prescribed values :math:`u = g` on boundary points: residual :math:`u(x) - g(x)`.

    Args:
        value: ``g``, a function of points ``(N, d)`` returning ``(N, m)``.
    """

    def __init__(self, value: Callable[[Tensor], Tensor]):
        self.value = value

    def residual(self, model: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """``(N, m)``: the network's values minus the prescribed ones."""
        return model(x) - self.value(x)
