"""Milliseconds per training step and peak memory of each derivative engine, same run.

    python benchmarks/derivatives.py [--dims 2 3 10 100] [--points 1000 4000] [--device cpu]
                                     [--variants autograd forward stochastic] [--seconds 2] [--rounds R]

One Adam step on Poisson's equation (3x50 tanh MLP, the PDE loss on N interior points and the
boundary loss on N/5 boundary points), for the engines autograd (nested reverse mode), forward
(forward-mode Laplacian carrying first derivatives; ``forward+gram``: carrying their Gram
matrices) and stochastic (16 random directions), optionally with ``+compile``, ``+graph`` (CUDA)
or ``+tf32`` (CUDA) as in benchmarks/common.py. On the CPU each variant runs
in its own process, so that peak memory (growth of the resident set) is its own; on CUDA they
run in one process, and peak memory is the allocator's peak for that variant. Prints a table
with each variant's speed-up over nested autograd (eager) at the same d and N: autograd's step
time divided by the variant's.

On a machine whose speed comes and goes (a shared VM), ``--rounds R`` (CPU) times the variants
of each d and N in turns within one process instead: R rounds, in each a block of steps of
every variant (as many steps as the first variant takes in about ``--seconds``), and the
median block per variant. The ratios are then measured under the same load, with the variants
sharing one process (its memory allocator and caches); peak memory is not measured (``-``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_VARIANTS = ("autograd", "forward", "stochastic")
CUDA_VARIANTS = ("autograd", "forward", "stochastic", "forward+graph", "stochastic+graph")


def problem(dim: int, points: int, device: str, dtype: str):
    """The benchmark's PDE, a fresh network (the same for every variant) and its points."""
    import torch

    from pinn.models import MLP
    from pinn.pdes import Poisson
    from pinn.sampling import SobolSampler

    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    pde = Poisson(dim=dim)
    model = MLP(dim, 1, width=50, depth=3).to(device=device, dtype=dt)
    sampler = SobolSampler(n_interior=points, n_boundary=max(points // 5, 1))
    pts = {k: v.to(device=device, dtype=dt) for k, v in sampler.sample(pde.domain, torch.Generator().manual_seed(0)).items()}
    return pde, model, pts


def measure(variant: str, dim: int, points: int, device: str, dtype: str, seconds: float) -> dict:
    """Time Adam steps of one variant (in a child process on the CPU)."""
    import torch

    import train
    from common import make_step, time_steps

    train.tune_cpu_allocator()
    pde, model, pts = problem(dim, points, device, dtype)
    cuda = device.startswith("cuda")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        allocated_before = torch.cuda.memory_allocated()
    ms, steps = time_steps(make_step(variant, pde, model, pts, device), device, seconds=seconds, warmup=5)
    if cuda:
        peak_mb = (torch.cuda.max_memory_allocated() - allocated_before) / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return {"variant": variant, "dim": dim, "points": points, "ms_per_step": ms, "peak_mb": peak_mb, "steps": steps}


def interleaved(variants: list[str], dim: int, points: int, dtype: str, seconds: float, rounds: int) -> dict:
    """Median milliseconds per step of each variant on the CPU, timed in turns in this process
    (``--rounds``); a variant that cannot be built is named with its error instead."""
    import torch

    import train
    from common import alternate, make_step

    train.tune_cpu_allocator()
    # Each d and N compiles the same loss afresh: past torch's recompile limit it would run
    # uncompiled, without a word, under a compiled variant's name.
    torch.compiler.reset()
    steps, failed = {}, {}
    for variant in variants:
        try:
            steps[variant] = make_step(variant, *problem(dim, points, "cpu", dtype), "cpu")
            steps[variant]()  # compiled ones compile here, not in the first timed block
        except Exception as exc:  # noqa: BLE001 -- one failed variant must not end the table
            failed[variant] = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    timed = alternate(steps, rounds, seconds) if steps else {}
    return {variant: timed.get(variant, failed.get(variant)) for variant in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3, 10, 100])
    parser.add_argument("--points", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--variants", "--engines", nargs="+",
                        help=f"default: {' '.join(CPU_VARIANTS)} on the CPU, {' '.join(CUDA_VARIANTS)} on CUDA")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per variant (per block with --rounds)")
    parser.add_argument("--rounds", type=int, help="CPU: time the variants in turns in one process, this many rounds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, dim, points = args.child.split(",")
        print(json.dumps(measure(variant, int(dim), int(points), args.device, args.dtype, args.seconds)))
        return

    import torch

    cuda = args.device.startswith("cuda")
    if args.rounds is not None and (cuda or args.rounds < 1):
        parser.error("--rounds takes a number of rounds >= 1, on the CPU")
    variants = args.variants or (CUDA_VARIANTS if cuda else CPU_VARIANTS)
    where = torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# {time.strftime('%Y-%m-%d')}, {where}, torch {torch.__version__}, device {args.device}, {args.dtype}")
    print(f"{'d':>5} {'N':>7} {'variant':>22} {'ms/step':>9} {'peak MB':>8} {'vs autograd':>12}")
    if cuda or args.rounds:  # measured in this process, which imports train (the root) and common (benchmarks/)
        sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    for dim in args.dims:
        for points in args.points:
            base = None
            if args.rounds:
                measured = interleaved(variants, dim, points, args.dtype, args.seconds, args.rounds)
                base = measured.get("autograd") if isinstance(measured.get("autograd"), float) else None
                for variant, ms in measured.items():
                    if not isinstance(ms, float):
                        print(f"{dim:>5} {points:>7} {variant:>22}  failed: {ms}", flush=True)
                        continue
                    ratio = f"{base / ms:.2f}x" if base and variant != "autograd" else ""
                    print(f"{dim:>5} {points:>7} {variant:>22} {ms:>9.3f} {'-':>8} {ratio:>12}", flush=True)
                continue
            for variant in variants:
                try:
                    if cuda:  # in this process: the allocator's peak is reset per variant
                        r = measure(variant, dim, points, args.device, args.dtype, args.seconds)
                    else:
                        out = subprocess.run(
                            [sys.executable, __file__, "--child", f"{variant},{dim},{points}", "--device", args.device,
                             "--dtype", args.dtype, "--seconds", str(args.seconds)],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])})
                        if out.returncode != 0:
                            raise RuntimeError((out.stderr.strip().splitlines() or ["?"])[-1])
                        r = json.loads(out.stdout.strip().splitlines()[-1])
                except Exception as exc:  # noqa: BLE001 -- one failed variant must not end the table
                    print(f"{dim:>5} {points:>7} {variant:>22}  failed: {(str(exc).splitlines() or [type(exc).__name__])[0][:200]}", flush=True)
                    continue
                base = r["ms_per_step"] if variant == "autograd" else base
                ratio = f"{base / r['ms_per_step']:.2f}x" if base and variant != "autograd" else ""
                print(f"{dim:>5} {points:>7} {variant:>22} {r['ms_per_step']:>9.3f} {r['peak_mb']:>8.0f} {ratio:>12}",
                      flush=True)


if __name__ == "__main__":
    main()
