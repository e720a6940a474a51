"""The interface every PDE implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from torch import Tensor

from pinn.derivatives import Engine
from pinn.geometry import Domain

Model = Callable[[Tensor], Tensor]


class PDE(ABC):
    r"""A problem: an equation on a domain, its conditions, and (where known) its solution.

    Subclasses set :attr:`domain`, :attr:`n_outputs` and :attr:`point_sets` and implement
    :meth:`losses`; the residual itself is a method that reads like the equation.
    """

    domain: Domain
    n_outputs: int = 1
    #: The named point sets :meth:`losses` reads, as produced by the sampler.
    point_sets: tuple[str, ...] = ("interior", "boundary")

    @property
    def dim(self) -> int:
        """Number of input coordinates ``d``."""
        return self.domain.dim

    @abstractmethod
    def losses(self, model: Model, points: dict[str, Tensor], engine: Engine) -> dict[str, Tensor]:
        """Mean squared residual of every term, by name (``{"pde": ..., "boundary": ...}``)."""

    def exact(self, x: Tensor) -> Tensor | None:
        """The exact solution ``(N, n_outputs)`` at ``x``, or ``None`` where none is known."""
        return None
