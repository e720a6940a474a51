"""PDE problems, one file per family; each gives its equation in its docstring."""

from pinn.pdes.allen_cahn import AllenCahn
from pinn.pdes.base import PDE
from pinn.pdes.burgers import Burgers
from pinn.pdes.heat import Heat, HeatInverse
from pinn.pdes.helmholtz import Helmholtz
from pinn.pdes.navier_stokes import Cavity, Kovasznay
from pinn.pdes.poisson import Poisson, PoissonBall, PoissonInverse, PoissonLShape
from pinn.pdes.wave import Wave

__all__ = ["PDE", "AllenCahn", "Burgers", "Cavity", "Heat", "HeatInverse", "Helmholtz", "Kovasznay", "Poisson",
           "PoissonBall", "PoissonInverse", "PoissonLShape", "Wave"]
