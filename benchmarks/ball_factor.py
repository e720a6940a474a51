"""Milliseconds per training step of `pde=poisson_ball` with the hard constraint's factor
``1 - |x|²`` differentiated in closed form (``VanishingOnBall.jet``, what the PDE uses) against
the same function differentiated by ``torch.func`` (the general path of ``Jet.of_function``),
in the same process; with ``--domain box``, of `pde=poisson pde.hard_constraint=true` with
the box's factor ``Π 4(x_i - lo_i)(hi_i - x_i)/w_i²`` (``VanishingOnBox.jet``) against the
plain function ``vanishing_on_box`` through ``torch.func``.

    python benchmarks/ball_factor.py [--cases stochastic:1000:500 forward:100:500 ...]
                                     [--repeats 5] [--seconds 1] [--domain ball|box] [--points new|fixed]

Each case is ``engine:d:N``: the network of ``experiment=poisson_ball`` (3×128 gelu) inside
``u = (1 - |x|²) N(x)`` on ``N`` points of the unit ball in ``d`` dimensions (or inside
``u = φ(x) N(x)`` on the box ``[-1, 1]^d``), the loss of the
trainer (the Laplacian exact under ``forward``, carrying first derivatives, and under
``forward+gram``, carrying Gram matrices; from 16 random directions drawn at every step under
``stochastic``), backward, one Adam step, with the points changed at every step (as with
``trainer.resample_every=1``), or with ``--points fixed`` the same points at every step, where
the factor's derivatives are kept from the first step on (``pinn.point_cache``; under
``stochastic``, along the axes, whose projections serve every step's random directions). The
two versions take turns in blocks of about ``--seconds``; the printed times are medians over
``--repeats`` blocks, so that a load that comes and goes on the machine falls on both. Before
timing, both versions must give the same loss; under ``stochastic`` on the box that is
checked with the exact engine on 16 of the points, since the box's closed form estimates
``Δφ`` by ``Δφ`` itself where ``torch.func`` takes the random directions' estimate.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from common import alternate, make_step, parse_case  # noqa: E402
from pinn.derivatives import ForwardEngine, StochasticEngine  # noqa: E402
from pinn.models import MLP, OutputTransform  # noqa: E402
from pinn.pdes import Poisson, PoissonBall  # noqa: E402
from pinn.pdes.base import vanishing_on_box  # noqa: E402
from pinn.trainer import Trainer  # noqa: E402

ENGINES = ("forward", "forward+gram", "stochastic")
DEFAULT_CASES = ("stochastic:100:500", "stochastic:1000:500", "forward:10:500", "forward:100:500")


def check_same_loss(engine: str, pde, models: dict, points: dict) -> None:
    """Both versions must compute the same loss (the same random directions for each)."""
    if engine == "stochastic" and isinstance(pde, Poisson):  # the box: estimates of Δφ differ, see above
        engine, points = "forward", {"interior": points["interior"][:16]}
    engine = {"forward": lambda: ForwardEngine(gram=False), "forward+gram": lambda: ForwardEngine(gram=True),
              "stochastic": StochasticEngine}[engine]()
    losses = {}
    for name, model in models.items():
        torch.manual_seed(1)
        losses[name] = Trainer().losses(pde, model, engine, points)[0].item()
    a, b = losses.values()
    if abs(a - b) > 1e-4 * abs(b):
        sys.exit(f"error: the two versions disagree: losses {losses}")


def compare(engine: str, d: int, n: int, repeats: int, seconds: float, domain: str = "ball",
            new_points: bool = True) -> dict[str, float]:
    """Median milliseconds per step of the closed form and of torch.func on one case."""
    pde = PoissonBall(dim=d) if domain == "ball" else Poisson(dim=d, hard_constraint=True)
    torch.manual_seed(0)
    draws = [pde.domain.interior(torch.rand(n, pde.domain.interior_unit_dim)) for _ in range(2)]
    points = {"interior": draws[0].clone()}
    steps, models = {}, {}
    for name in ("torch.func", "closed form"):
        torch.manual_seed(0)
        model = pde.constrain(MLP(d, 1, width=128, depth=3, activation="gelu"))
        if name == "torch.func" and domain == "ball":  # the same factor, seen as a plain function
            factor = model.scale
            model = OutputTransform(model.net, model.base, lambda x, factor=factor: factor(x))
        elif name == "torch.func":  # the box's factor as a plain function
            lo, hi = pde.domain.bounds
            model = OutputTransform(model.net, model.base, lambda x: vanishing_on_box(x, lo, hi))
        models[name] = model
        # the weights stay (nearly) put
        step = make_step(engine, pde, model, points, "cpu", lr=1e-9, resample_every=int(new_points))

        def resampled(step=step, count=itertools.count(1)):
            # New points at every step (trainer.resample_every=1): the factor's jet is cached
            # while the points stay the same.
            points["interior"].copy_(draws[next(count) % 2])
            step()
        steps[name] = resampled if new_points else step
    check_same_loss(engine, pde, models, points)
    return alternate(steps, repeats, seconds, warmup=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES),
                        help="engine:d:N, e.g. stochastic:1000:500")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one block of steps")
    parser.add_argument("--domain", choices=("ball", "box"), default="ball",
                        help="the ball's factor 1 - |x|² (default) or the box's")
    parser.add_argument("--points", choices=("new", "fixed"), default="new",
                        help="new points at every step (default), or the same ones")
    args = parser.parse_args()
    cases = [parse_case(case, ENGINES, name="engine", example="stochastic:1000:500", min_dim=2)
             for case in args.cases]
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), float32, median of {args.repeats} blocks, the {args.domain}'s factor, "
          f"{args.points} points at every step")
    print(f"{'engine:d:N':>22} {'torch.func':>12} {'closed form':>12} {'ratio':>7}")
    for case, parsed in zip(args.cases, cases):
        row = compare(*parsed, args.repeats, args.seconds, args.domain, args.points == "new")
        print(f"{case:>22} {row['torch.func']:>9.2f} ms {row['closed form']:>9.2f} ms "
              f"{row['torch.func'] / row['closed form']:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
