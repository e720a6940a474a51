"""How much TF32 matrix products change a PINN's loss and gradient (on a CUDA GPU).

    python benchmarks/tf32.py [--points 2000 200000] [--steps 300]

2-D Poisson, 3x50 tanh MLP, N interior + N/5 boundary points. The network is first trained
for ``--steps`` Adam steps in float32 (so the loss is no longer dominated by its random start),
then the loss and its gradient are evaluated in float64 (the reference), float32 and float32 with
TF32 matrix products, for the autograd and forward engines, and for the forward engine with the
fused Triton layers (``triton``, where Triton runs: their float32 products are three TF32
products each, or one under TF32). Prints the relative error of each against float64: the loss,
and the gradient as ||g - g64|| / ||g64||.

First, on any device, the same for one product of a 2,000 x 50 matrix by a 50 x 50 one with
the products emulated on the CPU: float32, one TF32 product (each factor rounded to TF32's 10
mantissa bits) and three (each factor split into a TF32 number and a TF32 remainder, the
remainders' product left out), each summed term by term in float32, the float32 product too.
"""

from __future__ import annotations

import argparse
import time

import torch

from pinn import fused
from pinn.derivatives import AutogradEngine, ForwardEngine
from pinn.models import MLP
from pinn.pdes import Poisson
from pinn.sampling import SobolSampler
from pinn.trainer import Trainer


def _tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 ``x`` rounded to the nearest TF32 number (10 explicit mantissa bits)."""
    return ((x.view(torch.int32) + 0x1000) & ~0x1FFF).view(torch.float32)


def emulated_products() -> dict[str, float]:
    """Relative errors against float64 of float32, one-TF32 and three-TF32 matrix products."""
    generator = torch.Generator().manual_seed(0)
    a, w = torch.randn(2000, 50, generator=generator), torch.randn(50, 50, generator=generator) / 50**0.5
    exact = a.double() @ w.double()

    def summed(*pairs):  # Σ_k of the products x[:, k] y[k, :] of each pair, added one by one in float32
        total = torch.zeros(a.shape[0], w.shape[1])
        for k in range(a.shape[1]):
            for x, y in pairs:  # exact in float32 for two TF32 numbers (11 significant bits each)
                total += x[:, k:k + 1] * y[k:k + 1, :]
        return total

    a_hi, w_hi = _tf32(a), _tf32(w)
    a_lo, w_lo = _tf32(a - a_hi), _tf32(w - w_hi)
    results = {"float32": summed((a, w)), "tf32": summed((a_hi, w_hi)),
               "3 x tf32": summed((a_lo, w_hi), (a_hi, w_lo), (a_hi, w_hi))}
    return {name: ((r.double() - exact).norm() / exact.norm()).item() for name, r in results.items()}


def loss_and_gradient(model, pde, engine, points, dtype, tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    model = model.to(dtype)
    model.zero_grad(set_to_none=True)
    total = Trainer().losses(pde, model, engine, {k: v.to(dtype) for k, v in points.items()})[0]
    total.backward()
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
    torch.backends.cuda.matmul.allow_tf32 = False
    return total.item(), grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, nargs="+", default=[2000, 200000])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="default: cuda where there is a GPU, else cpu (where TF32 changes nothing)")
    args = parser.parse_args()
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {device}, but PyTorch sees no CUDA GPU here; use --device cpu")
    where = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU (TF32 has no effect)"
    print(f"# {time.strftime('%Y-%m-%d')}, {where}, torch {torch.__version__}")
    print("# emulated 2000x50 @ 50x50 product, relative error: "
          + ", ".join(f"{name} {err:.1e}" for name, err in emulated_products().items()))
    print(f"{'N':>7} {'engine':>9} {'mode':>8} {'loss rel err':>13} {'grad rel err':>13}")
    engines = [("autograd", AutogradEngine()), ("forward", ForwardEngine())]
    if fused.why_unavailable(torch.device(device)) is None:
        engines.append(("triton", ForwardEngine(triton=True)))
    pde = Poisson(dim=2)
    for n in args.points:
        points = {k: v.to(device) for k, v in SobolSampler(n_interior=n, n_boundary=n // 5).sample(
            pde.domain, torch.Generator().manual_seed(0)).items()}
        torch.manual_seed(0)
        model = MLP(2, 1, width=50, depth=3).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(args.steps):
            optimizer.zero_grad(set_to_none=True)
            Trainer().losses(pde, model, ForwardEngine(), {k: v.float() for k, v in points.items()})[0].backward()
            optimizer.step()
        for name, engine in engines:
            engine.check_pde(pde)
            ref_loss, ref_grad = loss_and_gradient(model, pde, engine, points, torch.float64, False)
            for mode, tf32 in (("float32", False), ("tf32", True)):
                loss, grad = loss_and_gradient(model, pde, engine, points, torch.float32, tf32)
                print(f"{n:>7} {name:>9} {mode:>8} {abs(loss - ref_loss) / abs(ref_loss):>13.3e} "
                      f"{((grad - ref_grad).norm() / ref_grad.norm()).item():>13.3e}", flush=True)
            model.float()


if __name__ == "__main__":
    main()
