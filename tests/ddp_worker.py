"""Run under torchrun by test_distributed.py: this rank's averaged gradient and grad_norm loss
weights, written to files.

Each of the ranks takes an equal, contiguous share of one fixed point set, computes the
Poisson loss on it, and averages the gradients over the ranks with pinn.distributed.
"""

import sys

import torch
import torch.distributed as dist

from pinn.balancing import LossBalance
from pinn.derivatives import AutogradEngine
from pinn.distributed import init_from_env
from pinn.models import MLP
from pinn.pdes import Poisson
from pinn.sampling import UniformSampler
from pinn.trainer import Trainer


def union_points():
    pde = Poisson(dim=2)
    return pde, UniformSampler(n_interior=64, n_boundary=16).sample(pde.domain, torch.Generator().manual_seed(3))


def gradients(points):
    torch.manual_seed(0)
    model = MLP(2, 1, width=8, depth=2).double()
    pde, _ = union_points()
    total, _ = Trainer().losses(pde, model, AutogradEngine(), points)
    total.backward()
    return model


def grad_norm_weights(points, average=lambda values: values):
    """The grad_norm weights of the Poisson terms on ``points`` (one update, no smoothing)."""
    torch.manual_seed(0)
    model = MLP(2, 1, width=8, depth=2).double()
    pde, _ = union_points()
    balance = LossBalance(weighting="grad_norm", momentum=0.0)
    terms = pde.losses(model, points, AutogradEngine())
    balance.combine(terms, {})
    balance.update(terms, list(model.parameters()), None, average=average)
    return balance.weights()


if __name__ == "__main__":
    comm = init_from_env("cpu")
    _, points = union_points()
    share = {k: v.chunk(comm.world)[comm.rank] for k, v in points.items()}
    model = gradients(share)
    comm.average_gradients(model)
    torch.save([p.grad for p in model.parameters()], f"{sys.argv[1]}.rank{comm.rank}")
    torch.save(grad_norm_weights(share, comm.average), f"{sys.argv[1]}.weights.rank{comm.rank}")
    dist.destroy_process_group()
