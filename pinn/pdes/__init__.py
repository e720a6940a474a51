"""PDE problems, one file per family; each gives its equation in its docstring."""

from pinn.pdes.base import PDE
from pinn.pdes.poisson import Poisson

__all__ = ["PDE", "Poisson"]
