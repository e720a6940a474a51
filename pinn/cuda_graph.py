r"""Whole training steps captured as one CUDA graph (``trainer.cuda_graph``).

A small PINN on a GPU is limited by kernel launches, not arithmetic: one Adam step of a 3×50
network on a Laplacian loss is many small kernels, and the host spends longer launching them
than the GPU spends running them (measured on an H100: the eager forward-engine step took
4–8 ms at every size up to d = 100, the same step replayed as a graph 0.54 ms at d = 2;
``benchmarks/RESULTS.md``). A CUDA graph records the kernels
of one step once (loss, backward pass and optimizer update) and replays them with a single
launch (`PyTorch's CUDA graphs <https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs>`_).

A replay repeats the recorded kernels on the recorded memory, so the step must read and write
fixed tensors and must never wait for the host:

* the collocation points stay in the same tensors; resampling copies new points into them
  (:func:`copy_points`), and the trainer then brings what it computes once per point set (a
  source, boundary data, a hard constraint's base and scale: :mod:`pinn.point_cache`) up to
  date in place;
* Adam runs with ``capturable=True`` (its step count on the GPU) and its learning rate is a GPU
  tensor that the trainer fills when the schedule changes it (:func:`prepare_adam`, :func:`set_lr`);
  it takes torch's fused update, one kernel for every parameter and one for the step counts,
  where the multi-tensor form replays 17 multi-tensor operations (counted in torch's source);
* the loss values come back in one tensor that every replay overwrites;
* nothing in the step reads a value on the host (``.item()``, shapes that depend on data).

What cannot be captured runs eagerly: L-BFGS (its line search decides on the host), and the
re-estimation of ``grad_norm``/``ntk`` loss weights, which happens before a step, on a loss
evaluation of its own, and writes the weights the graph reads in place. :func:`blockers` names
what rules a run out entirely; with ``trainer.cuda_graph=auto`` such a run trains eagerly and
says why, with ``true`` it is an error. A capture that fails anyway (the step copies from host
memory, say) falls back to eager steps the same way.

The autograd engine is ruled out: on an H100 with PyTorch 2.11 (2026-11-27) capturing its nested
backward passes failed on the Poisson problem in every capture mode (``operation not permitted
when stream is capturing``), and on a heat problem the capture went through but its replays
trained differently from eager steps. The forward and stochastic engines need one ordinary
backward pass, and there their replays matched eager steps to 1e-10 in float64
(``tests/test_cuda_graph.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pinn.errors import check_auto_flag
from pinn.sampling import RARSampler

#: Eager steps before the capture: they create Adam's state and let PyTorch set up its
#: libraries' workspaces, which must not happen inside a capture. They are real training steps.
WARMUP_STEPS = 3


def check_mode(mode) -> bool | str:
    """``trainer.cuda_graph``: ``auto``, ``true`` or ``false`` (a bool, or its name), nothing else
    (not 1 or 0.0, which compare equal to the bools but are not flags)."""
    if isinstance(mode, str) and mode.lower() in ("true", "false"):
        return mode.lower() == "true"
    return check_auto_flag("trainer.cuda_graph", mode)


def blockers(*, device: torch.device, processes: int, sampler, balance, engine,
             adam_steps: int | None = None) -> list[str]:
    """Why this run's Adam steps cannot be captured (empty: they can); ``adam_steps``: how many
    Adam steps the run's optimizer plan takes from its first step. (A plan with fewer than
    ``WARMUP_STEPS`` + 1 of them is not refused: a capture then never comes, which the trainer
    logs, and a resume in a captured run's last Adam steps, with the same settings, must be
    accepted.)"""
    reasons = []
    if adam_steps == 0:
        reasons.append("this run's optimizer takes no Adam step (it starts with L-BFGS, whose steps always run "
                       "eagerly: their line search decides on the host)")
    if device.type != "cuda":
        reasons.append(f"the device is {device.type}, and CUDA graphs need a CUDA GPU")
    if engine.name == "autograd":
        reasons.append("derivatives.engine=autograd nests backward passes, which do not capture reliably; "
                       "use derivatives=forward (or stochastic)")
    if processes > 1:
        reasons.append("a multi-process run averages gradients between processes, outside any graph")
    if isinstance(sampler, RARSampler):
        reasons.append("sampler=rar adds points, so the point tensors change size")
    if balance.weighting == "self_adaptive":
        reasons.append("loss.weighting=self_adaptive ascends its point weights with a second, eager optimizer")
    return reasons


def prepare_adam(optimizer: torch.optim.Optimizer, device: torch.device, captured: bool, fused: bool = True) -> None:
    """Set a freshly built or restored Adam up for captured steps (step counts on the GPU, the
    learning rate a GPU tensor filled by :func:`set_lr`, and with ``fused`` torch's fused update)
    or for eager ones (a checkpoint written by a captured run resumes eagerly, on any device).

    In a replayed graph every kernel costs a few microseconds whatever it does, so captured steps
    take the fused update (``torch.optim.Adam(fused=True)``, which PyTorch tests under graph
    capture): two kernels per step instead of the multi-tensor form's 17. ``fused=False`` keeps
    the multi-tensor form, which the benchmarks compare it with."""
    for group in optimizer.param_groups:
        group["capturable"] = captured
        group["fused"] = True if captured and fused else None  # None: torch's own default
        lr = float(group["lr"])
        group["lr"] = torch.tensor(lr, dtype=torch.float32, device=device) if captured else lr
    for state in optimizer.state.values():
        if "step" in state:
            state["step"] = state["step"].to(device=device if captured else "cpu", dtype=torch.float32)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate: in place where it is a tensor, which a captured step reads."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def copy_points(static: dict[str, Tensor], fresh: dict[str, Tensor]) -> None:
    """Copy freshly drawn points into the tensors a captured step reads."""
    def shapes(points):
        return {k: tuple(v.shape) for k, v in points.items()}

    if shapes(static) != shapes(fresh):
        raise RuntimeError(f"resampled point sets {shapes(fresh)} differ from the captured ones {shapes(static)}")
    for name, points in fresh.items():
        static[name].copy_(points)


class CapturedStep:
    """Runs a training step eagerly for :data:`WARMUP_STEPS` calls, then captures it as a CUDA
    graph and replays that graph at every later call.

    ``step()`` computes the loss, back-propagates and updates the parameters, reading only
    tensors that stay in place, and returns one tensor of loss values; ``zero_grad(set_to_none)``
    clears the gradients. The returned tensor is the graph's output: the next replay overwrites it.

    If the capture fails (the step calls something a capture forbids: a copy from host memory, a
    synchronisation), ``on_failure(reason)`` is called and every step from then on runs eagerly.
    """

    def __init__(self, zero_grad: Callable[[bool], None], warmup: int | None = None,
                 on_failure: Callable[[str], None] | None = None):
        self.zero_grad, self.on_failure = zero_grad, on_failure
        self.warmup = WARMUP_STEPS if warmup is None else warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: Tensor | None = None
        self.failure: str | None = None
        self._calls = 0
        self._side = torch.cuda.Stream()

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, step: Callable[[], Tensor]) -> Tensor:
        if self.failure is not None:
            self.zero_grad(True)
            return step()
        if self.graph is None and self._calls < self.warmup:
            # Warm-up on a side stream, as PyTorch's recipe for whole-network capture asks.
            self._side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self._side):
                self.zero_grad(True)
                out = step()
            torch.cuda.current_stream().wait_stream(self._side)
            self._calls += 1
            return out
        if self.graph is None:
            # Gradients set to None now are allocated inside the graph, and every replay
            # writes them afresh (no accumulation to clear between replays).
            self.zero_grad(True)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    self.output = step()
            except RuntimeError as exc:  # nothing ran: a capture only records
                self.failure = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                del graph
                if self.on_failure is not None:
                    self.on_failure(self.failure)
                self.zero_grad(True)
                return step()
            self.graph = graph
        self.graph.replay()
        return self.output

