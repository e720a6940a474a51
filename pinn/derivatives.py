r"""Derivative engines: how a network is evaluated so that the operators can differentiate it.

A PDE's loss asks the engine for ``(x, u)`` at its points and hands both to the operators of
:mod:`pinn.operators`; it never calls ``torch.autograd`` itself, so the engine can change
underneath it (``derivatives.engine`` in the config).

* ``autograd`` (any network): ``x`` is marked ``requires_grad`` and ``u = model(x)`` is an
  ordinary tensor; the operators differentiate it by reverse mode, nesting backward passes for
  second derivatives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from torch import Tensor


class Engine(ABC):
    """Evaluates a pointwise network so that operators can be applied to the result."""

    name: str

    @abstractmethod
    def evaluate(self, model: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(x, u)``: the points as the operators need them and the field ``u = model(x)``."""


class AutogradEngine(Engine):
    """Reverse-mode automatic differentiation through ``torch.autograd.grad``."""

    name = "autograd"

    def evaluate(self, model: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.detach().requires_grad_(True)
        return x, model(x)

    def __repr__(self) -> str:
        return "AutogradEngine()"
