"""One training step of a benchmark variant, built from the trainer's own pieces.

A variant is an engine name with options: ``forward``, ``forward+compile``, ``stochastic+graph``,
``forward+compile+graph``, ``forward+graph+tf32``... ``compile`` wraps the loss in
``torch.compile`` (as ``trainer.compile=true``), ``graph`` replays the whole step as a CUDA graph
(as ``trainer.cuda_graph``; refused for the autograd engine, as there), ``tf32`` lets float32
matrix products use TF32 (as ``trainer.tf32=true``), ``fused`` takes Adam's fused update (one
kernel for every parameter, ``torch.optim.Adam(fused=True)``, and one for the step counts)
instead of the multi-tensor one (17 multi-tensor operations per step in its capturable form, in
torch's source). The trainer's captured steps take the fused update (``graph+fused``); eager
ones, the multi-tensor update (plain ``graph`` keeps it, to compare the two).
``gram`` makes the forward engine carry Gram matrices of the first derivatives instead of the
first derivatives (``derivatives.gram=true``); plain ``forward`` carries first derivatives
(``derivatives.gram=false``), whatever the dimension. ``triton`` runs each layer of the MLP but
the last as one Triton kernel, forward and backward (``derivatives.triton=true``, a CUDA GPU).
``onepass`` evaluates the network once at the interior and boundary points together
(``derivatives.one_pass=true``), ``separate`` once per point set (``false``); without either,
``auto`` decides (together on a CUDA device up to 10,000 points).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch

from pinn import fused
from pinn.cuda_graph import CapturedStep, prepare_adam
from pinn.derivatives import AutogradEngine, ForwardEngine, StochasticEngine
from pinn.jet import shared_constant
from pinn.trainer import Trainer

OPTIONS = ("compile", "graph", "tf32", "fused", "gram", "triton", "onepass", "separate")


def parse(variant: str) -> tuple[str, set[str]]:
    engine, *options = variant.split("+")
    if engine not in ("autograd", "forward", "stochastic") or not set(options) <= set(OPTIONS):
        raise ValueError(f"unknown variant {variant!r}: an engine (autograd, forward, stochastic) "
                         f"with options from {OPTIONS}, joined by '+'")
    return engine, set(options)


def check_variant(variant: str, device) -> tuple[str, set[str]]:
    """``variant``'s engine and options (:func:`parse`), where they go together on ``device``."""
    name, options = parse(variant)
    if "graph" in options and torch.device(device).type != "cuda":
        raise ValueError(f"{variant}: CUDA graphs need a CUDA device, not {device}")
    if "graph" in options and name == "autograd":
        raise ValueError(f"{variant}: refused, as by the trainer: nested backward passes do not capture reliably")
    if "gram" in options and name != "forward":
        raise ValueError(f"{variant}: gram is an option of the forward engine")
    if "triton" in options and name == "autograd":
        raise ValueError(f"{variant}: triton is an option of the forward and stochastic engines")
    if options & {"onepass", "separate"} and name == "autograd":
        raise ValueError(f"{variant}: onepass and separate are options of the forward and stochastic engines")
    if {"onepass", "separate"} <= options:
        raise ValueError(f"{variant}: onepass and separate exclude each other")
    return name, options


def make_step(variant: str, pde, model, points, device, lr: float = 1e-3, samples: int = 16,
              resample_every: int = 0) -> Callable[[], None]:
    """A function that runs one Adam step of ``variant`` on ``points`` (fixed, or written in place
    every ``resample_every`` steps by the caller, which the trainer's point cache is told)."""
    name, options = check_variant(variant, device)
    triton = "triton" in options
    one_pass = True if "onepass" in options else False if "separate" in options else "auto"
    engine = {"autograd": AutogradEngine,
              "forward": lambda: ForwardEngine(gram="gram" in options, triton=triton, one_pass=one_pass),
              "stochastic": lambda: StochasticEngine(samples=samples, triton=triton, one_pass=one_pass)}[name]()
    engine.check_pde(pde)
    engine.check_device(torch.device(device))
    torch.backends.cuda.matmul.allow_tf32 = "tf32" in options
    losses = Trainer(resample_every=resample_every).losses
    if "compile" in options:
        losses = torch.compile(losses)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True if "fused" in options else None)

    def step() -> torch.Tensor:
        total = losses(pde, model, engine, points)[0]
        total.backward(shared_constant("one", total.dtype, total.device))  # as the trainer's step
        optimizer.step()
        return total.detach()

    if "graph" not in options:
        def eager():
            optimizer.zero_grad(set_to_none=True)
            step()
        return eager
    def refuse(reason: str):  # a graph variant that ran eagerly would be mislabelled
        raise RuntimeError(f"capture failed: {reason}")

    prepare_adam(optimizer, torch.device(device), captured=True, fused="fused" in options)
    captured = CapturedStep(lambda none: optimizer.zero_grad(set_to_none=none), on_failure=refuse)
    return lambda: captured(step)


@contextlib.contextmanager
def wrapped_kernels(wrap: Callable[[object, str], object]) -> Iterator[None]:
    """Replace each of ``pinn.fused``'s Triton kernels by ``wrap(kernel, name)`` (indexed by a
    grid, as a kernel is) meanwhile: to count or inspect their launches."""
    originals = {name: getattr(fused, name) for name in fused.KERNELS if hasattr(fused, name)}
    try:
        for name, kernel in originals.items():
            setattr(fused, name, wrap(kernel, name))
        yield
    finally:
        for name, kernel in originals.items():
            setattr(fused, name, kernel)


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(step: Callable[[], None], device: str, *, iterations: int | None = None, seconds: float = 2.0,
               warmup: int = 10) -> tuple[float, int]:
    """Milliseconds per step after ``warmup`` steps (compilation and graph capture happen there):
    ``iterations`` steps, or as many as fill ``seconds``. Returns (ms, steps)."""
    for _ in range(warmup):
        step()
    sync(device)
    steps, start = 0, time.perf_counter()
    while (steps < iterations) if iterations else (steps < 5 or time.perf_counter() - start < seconds):
        step()
        steps += 1
        if not iterations and steps % 10 == 0:
            sync(device)  # a bounded queue, so the clock check sees real progress
    sync(device)
    return 1000 * (time.perf_counter() - start) / steps, steps


def alternate(steps: dict[str, Callable[[], None]], repeats: int, seconds: float, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds per step of each of ``steps`` (CPU), timed in turns: ``repeats`` rounds
    of one block of about ``seconds`` per step function, so that a load that comes and goes on
    the machine falls on all of them."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    start = time.perf_counter()
    next(iter(steps.values()))()
    block = max(1, round(seconds / (time.perf_counter() - start)))
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(block):
                step()
            times[name].append((time.perf_counter() - start) / block * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def parse_case(case: str, choices: tuple[str, ...], *, name: str, example: str,
               min_dim: int = 1) -> tuple[str, int, int]:
    """``name:d:N`` (``forward:2:2000``) as ``(name, d, N)``; a clear exit for anything else."""
    try:
        label, d, n = case.split(":")
        d, n = int(d), int(n)
    except ValueError:
        sys.exit(f"error: case {case!r} is not {name}:d:N, e.g. {example}")
    if label not in choices or d < min_dim or n < 1:
        sys.exit(f"error: case {case!r}: the {name} must be {', '.join(choices[:-1])} or {choices[-1]}, "
                 f"d at least {min_dim} and N positive")
    return label, d, n
