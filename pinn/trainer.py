r"""The training loop: losses, optimizer steps, evaluation, checkpoints and logging calls.

One step: evaluate every loss term of the PDE on its own points, form the weighted sum
:math:`L = \sum_k w_k L_k`, back-propagate, and step the optimizer (Adam directly, L-BFGS
through a closure that repeats the same computation for its line search). Every
``eval_every`` steps the relative L2 error against the exact solution is measured on a fixed
test set; every ``image_every`` steps, and at the end, a figure of the solution goes to the
logger; every ``checkpoint_every`` steps, and at the end, the whole state is saved.
"""

from __future__ import annotations

import bisect
import inspect
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from pinn.balancing import LossBalance
from pinn.checkpoint import load_checkpoint, remove_leftovers, save_checkpoint, write_json_atomically
from pinn.cuda_graph import WARMUP_STEPS, CapturedStep, blockers, check_mode, copy_points, prepare_adam, set_lr
from pinn.derivatives import Engine, ForwardEngine, OnePass
from pinn.distributed import Communicator
from pinn.errors import ConfigError, PDEError, check_flag, check_positive
from pinn.jet import shared_constant
from pinn.loggers import Logger, NullLogger
from pinn.optim import OptimizerPlan
from pinn.pdes.base import PDE, check_losses, check_residuals
from pinn.point_cache import PointCache
from pinn.sampling import AdaptiveSampler, Sampler

#: Seed of the test set: fixed, so runs with different seeds are scored on the same points.
TEST_SEED = 20231

CHECKPOINT_NAME = "last.pt"
#: the finest logged solution image, points per axis (the slice is evaluated at once, as one batch)
MAX_IMAGE_RESOLUTION = 2001
METRICS_NAME = "metrics.json"  # in the run folder, once training has finished
#: What to try after a divergence. A resume must keep the learning rate and the dtype (train.py
#: refuses other settings), so those remedies are a new run's.
REMEDY = ("Try a new run with a smaller optimizer.lr or dtype=float64, or loss weights that balance the terms "
          "(trainer.loss_weights, which a resume may also change)")
#: What ``evaluate.py`` writes into a run folder: like the metrics, they describe its checkpoint.
EVALUATION_NAMES = ("evaluation.json", "solution.png", "error.png")

log = logging.getLogger("pinn")


class TrainingDiverged(RuntimeError):
    """The loss or the parameters became NaN or Inf."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; a checkpoint was written before stopping."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; checkpoint saved to {checkpoint}")


def _shown(error: float) -> str:
    """An error for the progress bar: ``-`` before the first evaluation (or without a reference)."""
    return "-" if math.isnan(error) else f"{error:.2e}"


class _StopOnSignal:
    """Turns SIGINT and SIGTERM into a request the loop honours between steps, so a checkpoint
    can be written first. A second signal acts as usual (Ctrl-C twice stops at once), unless it
    comes within ``REPEAT_SECONDS`` of the first: then it is the same request delivered twice,
    as ``timeout`` and terminals do when they signal a process and then its process group."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    REPEAT_SECONDS = 1.0

    def __init__(self):
        self.signum: int | None = None
        self._first = 0.0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._first = signum, now
            return
        if now - self._first < self.REPEAT_SECONDS:
            return
        previous = self._previous[signum]
        if callable(previous):  # Python's own SIGINT handler raises KeyboardInterrupt here
            signal.signal(signum, previous)
            previous(signum, frame)
        else:  # the default action; also where the signal was ignored (a background job's SIGINT),
            signal.signal(signum, signal.SIG_DFL)  # since the first one was taken as a request to stop
            os.kill(os.getpid(), signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


@dataclass
class _PhaseClock:
    steps: int = 0
    seconds: float = 0.0


@dataclass
class _State:
    step: int = 0
    phase: str | None = None
    optimizer: torch.optim.Optimizer | None = None
    points: dict[str, Tensor] = field(default_factory=dict)
    clocks: dict[str, _PhaseClock] = field(default_factory=dict)
    rel_l2: float = float("nan")
    dtype: torch.dtype = torch.float32  # of the current phase (L-BFGS may run in float64)
    lbfgs_evaluations: int = 0  # loss evaluations by L-BFGS so far, each logged
    lr: float | None = None  # the learning rate last set on the optimizer
    captured: CapturedStep | None = None  # the Adam step as a CUDA graph (trainer.cuda_graph)
    # An L-BFGS step's first loss evaluation, at the parameters it started from, and its terms
    # (the step reports the loss at the parameters it ended at)
    lbfgs_start: tuple[Tensor, dict[str, Tensor]] | None = None


@contextmanager
def _matmul_tf32(enabled: bool):
    """CUDA float32 matrix products in TF32 inside the block (``trainer.tf32``), as before after it."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _on_cpu(state):
    """``state`` (nested dicts, lists and tuples) with its tensors copied to the CPU, to be sent
    between processes (a GPU tensor would arrive on the sender's device)."""
    if isinstance(state, Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _on_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_on_cpu(v) for v in state)
    return state


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config to ``{"model.width": 50, "optimizer.betas": "[0.9, 0.999]", ...}`` for
    hparams, which take numbers, strings and bools: lists as their text, nulls left out."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        elif isinstance(value, (list, tuple)):
            flat[name] = str(list(value))
    return flat


def _draws_on(device: torch.device) -> Tensor:
    """The state of the generator that random draws on ``device`` come from."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _draw_again(device: torch.device, state: Tensor) -> None:
    """Put the generator of ``device`` back to ``state`` (:func:`_draws_on`)."""
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def one_pass_points(pde: PDE, points: dict[str, Tensor]) -> dict[str, Tensor]:
    """The point sets ``derivatives.one_pass`` may evaluate together: the PDE's ``one_pass_sets``."""
    return points if pde.one_pass_sets is None else {k: points[k] for k in pde.one_pass_sets if k in points}


class Trainer:
    r"""Trains a network on a PDE.

    Args:
        max_steps: total optimizer steps (Adam steps plus L-BFGS ``step(closure)`` calls).
        log_every: steps between scalar logs and progress-bar updates.
        eval_every: steps between measurements of the error on the test set.
        image_every: steps between figures of the solution for the logger (0: only at the end).
            A figure takes 0.15-0.6 s to draw (one output to three, 101 x 101 points), as long
            as hundreds of Adam steps on a GPU, so figures come less often than the error.
        checkpoint_every: steps between checkpoints (0: only at the end).
        resample_every: draw fresh collocation points every this many Adam steps (0: never).
            Points stay fixed during L-BFGS, whose line search needs a fixed loss.
        n_test: size of the fixed test set (scrambled Sobol, seed :data:`TEST_SEED`).
        image_resolution: grid points per axis of the logged solution slice.
        loss_weights: weight of each loss term by name; terms not named get weight 1.
        progress: show a progress bar.
        compile: compile the loss with ``torch.compile`` (forward and stochastic engines only:
            the autograd engine's nested backward passes cannot be compiled). Compiling takes
            tens of seconds on a CPU and pays off in long runs.
        cuda_graph: capture each Adam step (loss, backward pass, update) as one CUDA graph and
            replay it (:mod:`pinn.cuda_graph`): ``auto`` where the device is a CUDA GPU and the
            run allows it (otherwise it trains eagerly and logs why), ``true`` to insist (an
            error where it cannot), ``false`` never. L-BFGS steps always run eagerly.
        tf32: on a CUDA GPU, let float32 matrix products round their inputs to TF32 (10-bit
            mantissas) for speed, during training only (the pre-flight check and the error
            measurement stay in full float32). No effect on the CPU or in float64.
    """

    def __init__(self, *, max_steps: int = 3000, log_every: int = 50, eval_every: int = 500, image_every: int = 500,
                 checkpoint_every: int = 1000, resample_every: int = 0, n_test: int = 10000,
                 image_resolution: int = 101, loss_weights: dict[str, float] | None = None, progress: bool = True,
                 compile: bool = False, cuda_graph: bool | str = "auto", tf32: bool = False):
        check_positive("trainer.max_steps", max_steps)
        check_positive("trainer.log_every", log_every)
        check_positive("trainer.eval_every", eval_every)
        check_positive("trainer.image_every", image_every, allow_zero=True)
        check_positive("trainer.checkpoint_every", checkpoint_every, allow_zero=True)
        check_positive("trainer.resample_every", resample_every, allow_zero=True)
        check_positive("trainer.n_test", n_test)
        check_positive("trainer.image_resolution", image_resolution)
        if not 2 <= image_resolution <= MAX_IMAGE_RESOLUTION:  # the slice is evaluated at resolution² points at once
            raise ConfigError(f"trainer.image_resolution must be from 2 to {MAX_IMAGE_RESOLUTION} (points per axis, "
                              f"edges included); got {image_resolution}")
        self.max_steps, self.log_every, self.eval_every = max_steps, log_every, eval_every
        self.image_every = image_every
        self.checkpoint_every, self.resample_every = checkpoint_every, resample_every
        self.n_test, self.image_resolution = n_test, image_resolution
        if loss_weights is not None and not isinstance(loss_weights, Mapping):
            raise ConfigError(f"trainer.loss_weights must map loss terms to weights, as "
                              f"trainer.loss_weights={{boundary: 10.0}}; got {loss_weights!r}")
        self.loss_weights = dict(loss_weights or {})
        for name, w in self.loss_weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf:
                raise ConfigError(f"trainer.loss_weights.{name} must be a finite number >= 0; got {w!r}")
        self.progress = check_flag("trainer.progress", progress)
        self.compile = check_flag("trainer.compile", compile)
        self.cuda_graph = check_mode(cuda_graph)
        self.tf32 = check_flag("trainer.tf32", tf32)
        self._graphs = False  # whether this run's Adam steps are captured (decided in fit)
        self._captured_steps: list[CapturedStep] = []  # one per Adam phase entered, for inspection
        self.balance = LossBalance()  # fit() takes the configured one
        self._loss_fn = self.losses
        # the values of functions of the current points, which serve resample_every steps
        self.point_cache = PointCache(uses_per_set=resample_every or math.inf)
        self._comm = Communicator()
        self._started: Callable[[], None] = lambda: None  # fit's "training is under way"
        self._stale: list[Path] = []  # records of an earlier checkpoint, removed before fit writes the next

    # ------------------------------------------------------------------ pieces of a step

    def losses(self, pde: PDE, model: nn.Module, engine: Engine, points: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted total and each term's loss (see :mod:`pinn.balancing` for the weights).
        Functions of the points alone (a source, boundary data) are computed once per point set
        (:mod:`pinn.point_cache`), except in a compiled loss, where the compiler fuses them into
        the kernels around them."""
        if torch.compiler.is_compiling():
            return self._losses(pde, model, engine, points)
        with self.point_cache.active(points):
            return self._losses(pde, model, engine, points)

    def _losses(self, pde: PDE, model: nn.Module, engine: Engine, points: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        balance = self.balance
        # The network as the PDE sees it: evaluated once at its point sets together, where the
        # engine's one_pass setting asks for it (one such evaluation per call of the PDE's residuals).
        together = one_pass_points(pde, points)
        shared = lambda: engine.shared(model, together)  # noqa: E731
        if getattr(engine, "unbiased", False):  # two independent estimates, multiplied (pinn.derivatives)
            first, second = pde.residuals(shared(), points, engine), pde.residuals(shared(), points, engine)
            terms = balance.term_losses(first, points, pde, second)
        elif balance.needs_residuals:
            terms = balance.term_losses(pde.residuals(shared(), points, engine), points, pde)
        else:
            terms = pde.losses(shared(), points, engine)
            check_losses(pde, terms)
        unknown = set(self.loss_weights) - set(terms)
        if unknown:
            raise ConfigError(
                f"trainer.loss_weights names unknown loss terms {sorted(unknown)}; this PDE's terms are {sorted(terms)}"
            )
        if all(self.loss_weights.get(name, 1.0) == 0 for name in terms):
            raise ConfigError(f"trainer.loss_weights sets the weight of every loss term ({', '.join(terms)}) to 0, so "
                              "nothing would be trained; give at least one of them a weight > 0")
        constant = [name for name, term in terms.items()
                    if not term.requires_grad and self.loss_weights.get(name, 1.0) != 0]
        if constant and torch.is_grad_enabled():
            raise PDEError(f"{type(pde).__name__}'s loss terms {constant} do not depend on the network (nor on a "
                           "parameter of the PDE), so training cannot change them: computed without the network, or "
                           "from a detached tensor? (A term meant to stay fixed takes trainer.loss_weights 0)")
        return balance.combine(terms, self.loss_weights), terms

    def reported(self, total: Tensor, terms: dict[str, Tensor]) -> Tensor:
        """``[total, *terms, *mean squares]`` of one loss evaluation, detached, in one tensor (to
        average over the ranks at once). A term's mean square is its plain mean squared residual:
        the term itself, unless the loss balance weights its points or times (then ``mse/<term>``
        of its logs)."""
        plain = [self.balance.logs.get(f"mse/{name}", value) for name, value in terms.items()]
        return torch.stack([total.detach(), *(v.detach() for v in terms.values()), *(p.detach() for p in plain)])

    @staticmethod
    def unpack(values: Tensor, names: list[str]) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """:meth:`reported`'s tensor as ``(total, terms, mean squares)``, by term name."""
        n = len(names)
        return values[0], dict(zip(names, values[1:1 + n])), dict(zip(names, values[1 + n:]))

    def _step(self, pde, model, engine, state: _State, trainable: nn.Module, plan: OptimizerPlan,
              logger: Logger) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """One optimizer step; returns the loss, its terms and their plain mean squares
        (:meth:`reported`), averaged over the ranks."""
        optimizer, balance = state.optimizer, self.balance
        lr = plan.lr_at(state.step)
        if lr is not None and lr != state.lr:
            set_lr(optimizer, lr)
            state.lr = lr
        if state.phase == "lbfgs":
            return self._lbfgs_step(pde, model, engine, state, trainable, logger)

        if balance.due(state.step):
            self._update_weights(pde, model, engine, state, trainable)

        def step() -> Tensor:
            return self._adam_step(pde, model, engine, state, trainable)

        if state.captured is None:
            optimizer.zero_grad(set_to_none=True)
            balance.zero_grad(set_to_none=True)
            values = step()
        else:
            values = state.captured(step)
        balance.ascend()
        return self.unpack(values, self._term_names)

    def _update_weights(self, pde, model, engine, state: _State, trainable: nn.Module) -> None:
        """Re-estimate the ``grad_norm``/``ntk`` loss weights at the current parameters, before the
        step that uses them: eagerly, on a loss evaluation of its own, so that the step itself
        never changes (and can be replayed as a CUDA graph). The weights change in place. The
        loss is evaluated uncompiled even under ``trainer.compile``: a compiled backward function
        may donate its buffers to its first backward pass, and ``grad_norm`` takes one pass per
        term over the same graph."""
        terms = self.losses(pde, model, engine, state.points)[1]
        params = [p for p in trainable.parameters() if p.requires_grad]
        # ntk: a few points of each set, drawn afresh at each update (a function of the step
        # alone, so that a resumed run draws the same)
        draw = torch.Generator().manual_seed(state.step)
        few = {k: v[torch.randperm(len(v), generator=draw)[:self.balance.ntk_points].to(v.device)]
               for k, v in state.points.items()}

        def few_residuals():
            residuals = pde.residuals(model, few, engine)
            times = few["interior"][:, -1] if "interior" in few else None
            return residuals, {name: self.balance.weight_in_loss(name, times, pde.domain) for name in residuals}

        self.balance.update(terms, params, few_residuals, average=self._comm.average, generator=draw)
        self.balance.term_weights.copy_(self._comm.average(self.balance.term_weights))  # the same on every rank, exactly

    def _adam_step(self, pde, model, engine, state: _State, trainable: nn.Module) -> Tensor:
        """Loss, backward pass and Adam update; returns :meth:`reported`'s tensor, averaged over
        the ranks. Captured as a CUDA graph where ``trainer.cuda_graph`` allows."""
        total, terms = self._loss_fn(pde, model, engine, state.points)
        self._term_names = list(terms)
        # the seed of the backward pass, a one made once (backward() would make it at every step)
        total.backward(shared_constant("one", total.dtype, total.device))
        self._comm.average_gradients(trainable)  # across ranks: the mean gradient
        state.optimizer.step()
        return self._comm.average(self.reported(total, terms))

    def _lbfgs_step(self, pde, model, engine, state: _State, trainable: nn.Module,
                    logger: Logger) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        optimizer, last = state.optimizer, {}
        params = list(trainable.parameters())  # where each evaluation took place: last["at"]
        state.lbfgs_start = None
        # The stochastic engine's random directions are drawn afresh at every loss evaluation;
        # within one step every evaluation of the line search draws the same ones, so that it
        # searches along one function (the next step draws new ones).
        device = next(iter(state.points.values())).device
        draws = _draws_on(device) if engine.name == "stochastic" else None

        def closure() -> Tensor:
            if draws is not None:
                _draw_again(device, draws)
            optimizer.zero_grad(set_to_none=True)
            self.balance.zero_grad(set_to_none=True)
            total, terms = self._loss_fn(pde, model, engine, state.points)
            total.backward()
            # Across ranks: the mean gradient, and the mean loss (L-BFGS decides on its value).
            self._comm.average_gradients(trainable)
            averaged = self._comm.average(self.reported(total, terms))
            last["total"], last["terms"], last["plain"] = self.unpack(averaged, list(terms))
            last["at"] = [p.detach().clone() for p in params]
            if state.lbfgs_start is None:  # the step's first evaluation
                state.lbfgs_start = last["total"], last["terms"]
            state.lbfgs_evaluations += 1  # every evaluation of the line search, on its own axis
            logger.evaluation_scalar("lbfgs/loss", averaged[0].item(), state.lbfgs_evaluations)
            return averaged[0]

        with self.balance.holding_causal_weights():  # one function for the whole step, as with the directions
            try:
                optimizer.step(closure)
            except RuntimeError as exc:  # a line search stepping past the dtype's range: float(t) overflows
                if "overflow" not in str(exc):
                    raise
                raise TrainingDiverged(f"training diverged at step {state.step + 1}: the line search's step length "
                                       f"overflowed ({exc}). Try a new run with a smaller optimizer.lbfgs_lr (or "
                                       "optimizer.lr), or dtype=float64") from None
            if not all(torch.equal(p, at) for p, at in zip(params, last["at"])):
                # The line search ended at a point other than its last trial (its budget ran out, or
                # it kept the better end of a bracket): the loss where the parameters are.
                if draws is not None:
                    _draw_again(device, draws)
                total, terms = self._loss_fn(pde, model, engine, state.points)
                last["total"], last["terms"], last["plain"] = self.unpack(
                    self._comm.average(self.reported(total.detach(), {k: v.detach() for k, v in terms.items()})),
                    list(terms))
        return last["total"], last["terms"], last["plain"]

    def _sample(self, sampler: Sampler, pde: PDE, generator: torch.Generator, device, dtype) -> dict[str, Tensor]:
        points = sampler.sample(pde.domain, generator, pde.point_sets)
        pde.check_points(points)  # in float64, before rounding to the training dtype
        return {name: p.to(device=device, dtype=dtype) for name, p in points.items()}

    def _adapt(self, sampler: AdaptiveSampler, pde: PDE, model, engine, generator, state: _State) -> dict[str, Tensor]:
        """Score fresh candidates by the equation's squared residual and let the sampler place points."""
        candidates = sampler.candidates(pde.domain, generator)
        # The candidates and any sets the sampler draws afresh (RAD's boundary sets) are checked
        # in float64, as _sample checks fresh points; the points kept from the current sets were
        # checked when drawn (rounded to the training dtype since, those on a boundary may lie a
        # rounding error outside it).
        pde.check_inside("adaptive sampling candidates", candidates)
        like = state.points["interior"]
        scores = torch.zeros(len(candidates), dtype=torch.float64)
        for chunk in torch.arange(len(candidates)).split(4096):  # bounded memory for many candidates
            points = {**state.points, "interior": candidates[chunk].to(like)}
            residuals = pde.residuals(model, points, engine)
            check_residuals(pde, residuals, points)
            equation = pde.equation_terms(residuals, "adaptive sampling")
            score = sum(residuals[name].detach().square().sum(dim=1) for name in equation)
            scores[chunk] = score.double().cpu()
        if not torch.isfinite(scores).all():  # the sampler would draw by them (RAD: an error; RAR: these points)
            raise TrainingDiverged(
                f"training diverged by step {state.step}: the equation's residual is not finite at "
                f"{int((~torch.isfinite(scores)).sum())} of the {len(scores)} candidate points the adaptive sampler "
                f"scored. {REMEDY}.")
        current = {k: v.detach().double().cpu() for k, v in state.points.items()}
        points = sampler.adapt(pde.domain, generator, pde.point_sets, current, candidates, scores)
        for name, p in points.items():
            if name != "interior" and p is not current.get(name):
                pde.check_inside(f"{type(pde).__name__}'s point set {name!r}", p)
        return {name: p.to(like) for name, p in points.items()}

    # ------------------------------------------------------------------ evaluation

    def test_set(self, pde: PDE, device) -> tuple[Tensor | None, Tensor | None]:
        """The PDE's reference points and values (:meth:`PDE.reference`, ``n_test`` points where
        it samples them, seed :data:`TEST_SEED`), or ``(None, None)``. Both stay in float64:
        :meth:`evaluate` rounds the points to the network's dtype, so a network trained on to
        float64 is measured at the points the reference values belong to."""
        reference = pde.reference(self.n_test, TEST_SEED)
        if reference is None:
            return None, None
        x, values = reference
        if not (isinstance(values, Tensor) and values.shape == (x.shape[0], pde.n_outputs)):
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            hint = (" Keep the column dimension: x[:, 0:1], not x[:, 0]" if isinstance(values, Tensor) and values.dim() == 1
                    else "")
            raise PDEError(f"{type(pde).__name__}'s reference values (from its exact() or reference(), at {x.shape[0]} "
                           f"points) must have shape (P, n_outputs) = ({x.shape[0]}, {pde.n_outputs}); got {shape}."
                           f"{hint}")
        if not torch.isfinite(values).any():  # NaN marks a value not known; here none is
            raise PDEError(f"{type(pde).__name__}'s reference values (from its exact() or reference()) are all NaN or "
                           "infinite: no error could be measured. Return None from exact() where no solution is known")
        if not values[torch.isfinite(values)].any():
            log.warning("%s's reference values are all zero: no relative error (rel_l2) is defined, only the largest "
                        "pointwise one (max_abs_error)", type(pde).__name__)
        return x.to(device=device, dtype=torch.float64), values.to(device=device, dtype=torch.float64)

    @torch.no_grad()
    def evaluate(self, pde: PDE, model: nn.Module, x: Tensor | None, reference: Tensor | None) -> dict[str, float]:
        """Relative L2 error :math:`\\|u - u^\\star\\|_2 / \\|u^\\star\\|_2` over every output the
        reference knows (NaN entries are skipped; none for a reference of zeros, which has no
        relative error), the largest pointwise error, with several
        outputs each one's own relative error (``rel_l2_<output>``, where its reference is not
        zero), and the PDE's own numbers (an inverse problem's coefficient)."""
        metrics = dict(pde.metrics())
        if reference is None:
            return metrics
        known = torch.isfinite(reference)
        dtype = next((p.dtype for p in model.parameters()), x.dtype)  # float64 after a float64 L-BFGS stage
        difference = model(x.to(dtype)).double() - reference
        error = difference[known]
        scale = reference[known].norm()
        if scale > 0:
            metrics["rel_l2"] = (error.norm() / scale).item()
        metrics["max_abs_error"] = error.abs().max().item()
        if reference.shape[1] > 1:  # several outputs: which of them the error is in
            names = pde.outputs if len(pde.outputs) == reference.shape[1] else [f"u{j}" for j in range(reference.shape[1])]
            for j, name in enumerate(names):
                scale = reference[known[:, j], j].norm()
                if scale > 0:
                    metrics[f"rel_l2_{name}"] = (difference[known[:, j], j].norm() / scale).item()
        return metrics

    def _solution_image(self, pde: PDE, model: nn.Module, device, dtype):
        from pinn.plotting import solution_figure, solution_slice  # here: importing matplotlib takes 0.4 s

        return solution_figure(solution_slice(pde, model, self.image_resolution, device, dtype))

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self, path: Path, model, pde, generator, state: _State, config) -> None:
        # Each rank's own point stream: its generator, random state and current points; with
        # several ranks also its loss weights (self-adaptive ones belong to its own points).
        mine = {**_rng_state(generator), "points": {k: v.detach().cpu() for k, v in state.points.items()}}
        if self._comm.active:
            mine["balance"] = _on_cpu(self.balance.state_dict())
        ranks = self._comm.gather(mine)
        if not self._comm.is_main:
            return
        for record in self._stale:  # an earlier run's metrics and evaluation describe the checkpoint about to change
            record.unlink(missing_ok=True)
        self._stale = []
        save_checkpoint(path, {
            "ranks": ranks,
            "step": state.step,
            "phase": state.phase,
            "model": model.state_dict(),
            "pde": pde.state_dict(),
            "balance": self.balance.state_dict(),  # rank 0's
            "dtype": str(state.dtype).removeprefix("torch."),
            "lbfgs_evaluations": state.lbfgs_evaluations,
            "optimizer": state.optimizer.state_dict() if state.optimizer is not None else {},
            "points": ranks[0]["points"],  # the same tensors as rank 0's stream: saved once
            "clocks": {k: [c.steps, c.seconds] for k, c in state.clocks.items()},
            "rel_l2": state.rel_l2,
            "config": config or {},
            **{k: v for k, v in ranks[0].items() if k != "points"},  # rank 0's random state
        })

    def _restore(self, path, model, pde, plan: OptimizerPlan, generator, state: _State, device, dtype) -> None:
        payload = load_checkpoint(path, map_location=device)
        dtype = plan.dtype_of(payload["phase"]) or dtype  # a float64 L-BFGS stage resumes in float64
        model.to(dtype=dtype)
        pde.to(dtype=dtype)
        state.dtype = dtype
        state.lbfgs_evaluations = int(payload.get("lbfgs_evaluations", 0))
        ranks = payload.get("ranks") or [payload]
        if len(ranks) != self._comm.world:
            raise ConfigError(
                f"checkpoint {path} was written by {len(ranks)} process(es); resume it with as many, not {self._comm.world}"
            )
        mine = ranks[self._comm.rank]
        try:
            model.load_state_dict(payload["model"])
            pde.load_state_dict(payload.get("pde", {}))
            self.balance.load(mine.get("balance", payload.get("balance", {})), device)
        except RuntimeError as exc:
            raise ConfigError(f"checkpoint {path} does not fit this model (different width, depth or PDE?): "
                              f"{' '.join(str(exc).split())}") from exc
        trainable = nn.ModuleDict({"model": model, "pde": pde})
        state.step, state.phase = int(payload["step"]), payload["phase"]
        if state.phase is not None:
            state.optimizer = plan.build(state.phase, trainable.parameters())
            state.optimizer.load_state_dict(payload["optimizer"])
        state.points = {k: v.to(device=device, dtype=dtype) for k, v in mine["points"].items()}
        state.clocks = {k: _PhaseClock(int(s), float(t)) for k, (s, t) in payload.get("clocks", {}).items()}
        state.rel_l2 = float(payload.get("rel_l2", float("nan")))
        generator.set_state(mine["generator"].cpu())
        torch.set_rng_state(mine["torch"].cpu())
        if "cuda" in mine and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in mine["cuda"]])

    # ------------------------------------------------------------------ the loop

    def fit(self, *, pde: PDE, model: nn.Module, engine: Engine, sampler: Sampler, optimizer: OptimizerPlan,
            generator: torch.Generator, run_dir: str | Path, device: torch.device | str = "cpu",
            dtype: torch.dtype = torch.float32, logger: Logger | None = None, config: dict | None = None,
            resume: str | Path | None = None, comm: Communicator | None = None,
            balance: LossBalance | None = None, started: Callable[[], None] | None = None) -> dict[str, Any]:
        """Train ``model`` and return the final metrics (also written to ``run_dir/metrics.json``).

        Args:
            model: the network the PDE's terms are written for: ``pde.constrain(net)`` where the
                PDE has a hard constraint (refused otherwise), as ``train.py`` builds it.
            generator: the only source of randomness for collocation points.
            run_dir: where ``checkpoints/last.pt`` and ``metrics.json`` go.
            config: the resolved configuration, stored in checkpoints and logged.
            resume: a run folder or checkpoint to continue from.
            comm: the process group of a data-parallel run (:mod:`pinn.distributed`); only its
                rank 0 evaluates, logs and writes files.
            balance: how the loss terms are weighted (:mod:`pinn.balancing`); fixed by default.
            started: called once training is under way: after the first step (whose first loss
                evaluation is the last check of the settings), or at once where no step is left.
                A run refused before then has written no checkpoint or metrics into ``run_dir``,
                nor removed any.
        """
        self._comm = comm = comm or Communicator()
        device, run_dir = torch.device(device), Path(run_dir)
        logger = (logger or NullLogger()) if comm.is_main else NullLogger()
        pde.check_definition()
        engine.check(model)
        engine.check_pde(pde)
        engine.check_device(device)
        pde.check_network(model)
        constrained = pde.constrain(model)  # the kind of network the PDE's terms are written for
        if constrained is not model and not any(isinstance(m, type(constrained)) for m in model.modules()):
            raise ConfigError(f"{pde!r} builds some conditions into the network (a hard constraint) and has no loss "
                              f"terms for them, but this {type(model).__name__} holds no {type(constrained).__name__}: "
                              "train pde.constrain(model)")
        if comm.is_main and isinstance(engine, ForwardEngine) and engine.gram_layers(model, pde.dim) is not None:
            log.info("derivatives: Laplacians from Gram matrices (derivatives.gram=%s, d = %d): values and Laplacians "
                     "only, no first derivatives", str(engine.gram).lower(), pde.dim)
        self.balance = balance = balance or LossBalance()
        balance.check(pde, self.resample_every)
        if pde.one_pass_sets is not None and not (isinstance(pde.one_pass_sets, (tuple, list))
                                                  and all(isinstance(name, str) for name in pde.one_pass_sets)):
            raise ConfigError(f"{type(pde).__name__}.one_pass_sets must be a tuple of point set names, such as "
                              f"('interior',) (mind the comma); got {pde.one_pass_sets!r}")
        stray = [name for name in pde.one_pass_sets or () if name not in pde.point_sets]
        if stray:
            raise ConfigError(f"{type(pde).__name__}.one_pass_sets names {stray}, which are not among its point sets "
                              f"{pde.point_sets}; name only sets its point_sets declares")
        if balance.weighting != "fixed" and optimizer.phase_at(0) == "lbfgs":
            why = (f"loss.weighting={balance.weighting} updates its weights at Adam steps, and this optimizer takes none "
                   "(it starts with L-BFGS), so they stay at 1")
            if resume is None:
                raise ConfigError(f"{why}; use optimizer=adam_lbfgs with optimizer.switch_step > 0, or "
                                  "loss.weighting=fixed")
            log.warning("%s (as they did in the run resumed here)", why)  # a run from before this was refused
        if isinstance(sampler, AdaptiveSampler):
            if not self.resample_every:
                raise ConfigError(f"{type(sampler).__name__} adapts the points at every resampling step; "
                                  "set trainer.resample_every > 0")
            if type(pde).residuals is PDE.residuals:
                raise ConfigError(f"{type(sampler).__name__} scores points by the residual, and "
                                  f"{type(pde).__name__} defines only losses(); give it a residuals() method")
        if balance.needs_residuals and type(pde).residuals is PDE.residuals:
            raise ConfigError(f"{balance} needs pointwise residuals, and {type(pde).__name__} defines only losses(); "
                              "give it a residuals() method")
        if balance.weighting == "ntk" and type(pde).residuals is PDE.residuals:
            raise ConfigError(f"loss.weighting=ntk measures each term's kernel on pointwise residuals, and "
                              f"{type(pde).__name__} defines only losses(); give it a residuals() method, or use "
                              "loss.weighting=grad_norm")
        if getattr(engine, "unbiased", False) and type(pde).residuals is PDE.residuals:
            raise ConfigError(f"derivatives.unbiased=true multiplies pointwise residuals, and {type(pde).__name__} "
                              "defines only losses(); give it a residuals() method or set derivatives.unbiased=false")
        self._loss_fn = self.losses
        if self.compile:
            if engine.name == "autograd":
                raise ConfigError(
                    "trainer.compile=true needs derivatives=forward or derivatives=stochastic: torch.compile "
                    "cannot compile the nested backward passes of the autograd engine"
                )
            # Each run compiles afresh: a sweep's jobs share one process, and what earlier runs
            # compiled (for other problems and shapes) counts against torch's recompile limit,
            # past which it runs the loss uncompiled without a word.
            torch.compiler.reset()
            self._loss_fn = torch.compile(self.losses)
        if getattr(engine, "unbiased", False) and optimizer.phase_at(self.max_steps - 1) == "lbfgs":
            raise ConfigError(
                "derivatives.unbiased=true gives a loss (means of products of two independent estimates) that can be "
                "negative and, for the fixed directions of an L-BFGS step, is not bounded below: an L-BFGS line search "
                "cannot use it. Use optimizer=adam, or optimizer.switch_step >= trainer.max_steps"
            )
        if self.resample_every and optimizer.phase_at(0) == "lbfgs":
            raise ConfigError(
                "trainer.resample_every > 0 cannot work with L-BFGS from the first step: its line search and "
                "curvature pairs need fixed points. Set trainer.resample_every=0, or use optimizer=adam_lbfgs "
                "(resampling during the Adam phase)"
            )
        switch = getattr(optimizer, "switch_step", None)
        if comm.is_main and switch is not None and switch >= self.max_steps:
            log.warning("optimizer.switch_step=%d >= trainer.max_steps=%d: this run never reaches L-BFGS; raise "
                        "trainer.max_steps (it counts Adam steps and L-BFGS steps) or use optimizer=adam",
                        switch, self.max_steps)
        # Adam steps come first, then L-BFGS ones: the first L-BFGS step by bisection
        adam_steps = bisect.bisect_left(range(self.max_steps), True, key=lambda s: optimizer.phase_at(s) != "adam")
        reasons = blockers(device=device, processes=comm.world, sampler=sampler, balance=balance, engine=engine,
                           adam_steps=adam_steps)
        if self.cuda_graph is True and reasons:
            raise ConfigError(f"trainer.cuda_graph=true, but {'; and '.join(reasons)}. "
                              "Set trainer.cuda_graph=auto (eager where capture is impossible) or false")
        self._graphs = self.cuda_graph is not False and not reasons
        if self._graphs:
            log.info("cuda_graph: each Adam step is replayed as one CUDA graph, captured after %d eager steps",
                     WARMUP_STEPS)
        elif self.cuda_graph == "auto" and device.type == "cuda":
            log.info("cuda_graph: off, steps run eagerly: %s", "; and ".join(reasons))
        optimizer.check(list(model.parameters()) + list(pde.parameters()), dtype)
        ckpt_path = run_dir / "checkpoints" / CHECKPOINT_NAME
        if comm.is_main:  # what a launch (or evaluate.py) killed while writing left behind
            for written in (ckpt_path, run_dir / METRICS_NAME, *(run_dir / name for name in EVALUATION_NAMES)):
                remove_leftovers(written)
        model.to(device=device, dtype=dtype)
        pde.to(device=device, dtype=dtype)
        balance.to(device=device)
        state = _State(dtype=dtype)
        if resume is not None:
            self._restore(resume, model, pde, optimizer, generator, state, device, dtype)
            if state.step > self.max_steps:  # equal: a run stopped at its last step, only its metrics to write
                raise ConfigError(f"resume={resume} has trained {state.step} steps already, more than trainer.max_steps="
                                  f"{self.max_steps}; set trainer.max_steps to {state.step} or more")
            if comm.is_main:
                log.info("resuming %s at step %d of %d", resume, state.step, self.max_steps)
        else:
            state.points = self._sample(sampler, pde, generator, device, dtype)
        shared = engine.shared(model, one_pass_points(pde, state.points))
        if comm.is_main and isinstance(shared, OnePass):
            log.info("derivatives: the points of %s are evaluated together, in one pass per evaluation of the residuals "
                     "(derivatives.one_pass=%s, %s points)",
                     ", ".join(name for name, x in state.points.items() if any(x is s for s in shared.sets)),
                     str(engine.one_pass).lower(), f"{sum(len(x) for x in shared.sets):,}")
        test_x, test_exact = self.test_set(pde, device) if comm.is_main else (None, None)
        logger.start(state.step, state.lbfgs_evaluations)

        fresh = state.step == 0

        def under_way() -> None:  # after the first step: the settings have passed every check
            if config and (fresh or getattr(logger, "continues_records", None) is False):  # once per record
                logger.text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)
            if started is not None:
                started()

        self._started, self._stale = under_way, [run_dir / name for name in (METRICS_NAME, *EVALUATION_NAMES)]
        try:  # a run that diverges or fails still writes out everything logged up to then
            # A signal after the last step's checkpoint lets the run finish: its metrics take seconds.
            with _StopOnSignal() as stop:
                trained = state.step < self.max_steps
                self._loop(pde, model, engine, sampler, optimizer, generator, device, dtype, logger, config,
                           state, test_x, test_exact, ckpt_path, stop)
                if not trained:
                    under_way()
                if not trained and comm.any(comm.is_main and not ckpt_path.is_file()):
                    # resumed at its last step into another folder: the metrics there come with their checkpoint
                    self._checkpoint(ckpt_path, model, pde, generator, state, config)
                metrics = self._final_metrics(pde, model, engine, state, test_x, test_exact, device)
                # A finished run resumed in place again: its final metrics are in the logger's records already.
                logged = not trained and (run_dir / METRICS_NAME).is_file() and getattr(logger, "continues_records", False)
                if comm.is_main:
                    write_json_atomically(run_dir / METRICS_NAME, metrics)
                # with an inverse problem's recovered coefficients, which a sweep compares too
                hparam_metrics = {f"final/{k}": metrics[k] for k in ("rel_l2", "loss", "ms_per_step", *pde.metrics())
                                  if k in metrics}
                if not logged:
                    if "step" in inspect.signature(logger.hparams).parameters:
                        logger.hparams(flatten_config(config or {}), hparam_metrics, step=state.step)
                    else:  # a logger written before hparams() took the step
                        logger.hparams(flatten_config(config or {}), hparam_metrics)
        except KeyError as exc:  # a PDE of one's own reading a point set it did not ask the sampler for
            name = exc.args[0] if exc.args else None
            if name in ("interior", "boundary", "initial") and name not in pde.point_sets:
                raise PDEError(f"{type(pde).__name__} reads the point set {name!r}, but its point_sets = "
                               f"{pde.point_sets} do not ask for it; add {name!r} to point_sets") from exc
            raise
        finally:
            logger.close()
        return metrics

    def _loop(self, pde, model, engine, sampler, optimizer, generator, device, dtype, logger, config,
              state: _State, test_x, test_exact, ckpt_path: Path, stop: _StopOnSignal) -> None:
        comm = self._comm
        trainable = nn.ModuleDict({"model": model, "pde": pde})  # the network and the PDE's unknowns
        # Closed however the loop ends, so that an error's message starts on a line of its own.
        with tqdm(total=self.max_steps, initial=state.step, disable=not (self.progress and comm.is_main),
                  dynamic_ncols=True, desc=type(pde).__name__, mininterval=0.5) as bar:
            total = terms = None
            start_step = state.step
            while state.step < self.max_steps:
                phase = optimizer.phase_at(state.step)
                if phase != state.phase:
                    target = optimizer.dtype_of(phase) or dtype
                    if target != state.dtype:  # e.g. a float64 L-BFGS stage after float32 Adam
                        for module in (model, pde, self.balance):
                            module.to(dtype=target)
                        state.points = {k: v.to(dtype=target) for k, v in state.points.items()}
                        state.dtype = target
                    state.optimizer, state.phase = optimizer.build(phase, trainable.parameters()), phase
                    self._enter_phase(state, optimizer, device)
                elif state.step == start_step:  # resumed in this phase, with its restored optimizer
                    self._enter_phase(state, optimizer, device)
                if self.resample_every and phase == "adam" and state.step > 0 and state.step % self.resample_every == 0:
                    if isinstance(sampler, AdaptiveSampler):
                        fresh = self._adapt(sampler, pde, model, engine, generator, state)
                    else:
                        fresh = self._sample(sampler, pde, generator, device, state.dtype)
                    if state.captured is not None:
                        copy_points(state.points, fresh)  # the graph reads these tensors
                        self.point_cache.refresh()  # and the values computed from them
                    else:
                        state.points = fresh

                start = time.perf_counter()
                with _matmul_tf32(self.tf32):
                    total, terms, plain = self._step(pde, model, engine, state, trainable, optimizer, logger)
                _sync(device)
                clock = state.clocks.setdefault(phase, _PhaseClock())
                clock.steps, clock.seconds = clock.steps + 1, clock.seconds + time.perf_counter() - start
                state.step += 1
                bar.update(1)
                if state.step == start_step + 1:
                    if self.resample_every and isinstance(sampler, AdaptiveSampler):  # not only at its first resampling
                        pde.equation_terms(dict.fromkeys(terms), "adaptive sampling")
                    # before any training: at the first parameters, where an L-BFGS step began
                    first, first_terms = state.lbfgs_start if phase == "lbfgs" else (total, terms)
                    if start_step == 0 and comm.maximum(0 if bool(torch.isfinite(first)) else 1):
                        shown = ", ".join(f"{k}={v.item():.3e}" for k, v in {"total": first, **first_terms}.items())
                        raise TrainingDiverged(
                            f"the loss is not finite before any training ({shown}): a term gives NaN or Inf from the "
                            "network's first weights on (its source or data, a division by zero, a root or logarithm "
                            "outside its domain?), which training cannot mend")
                    self._started()

                step, last = state.step, state.step == self.max_steps
                if step % self.log_every == 0 or last:
                    values = self._check_finite(step, total, terms, trainable, ckpt_path)
                    logger.scalar("loss/total", values["total"], step)
                    for name, value in values.items():
                        if name != "total":
                            logger.scalar(f"loss/{name}", value, step)
                    logger.scalar("lr", float(state.optimizer.param_groups[0]["lr"]), step)
                    if self.balance.weighting in ("grad_norm", "ntk"):  # (self-adaptive: its points' mean, below)
                        for name, weight in self.balance.weights().items():
                            logger.scalar(f"weights/{name}", weight, step)
                    for name, value in self.balance.logs.items():
                        if name.startswith("mse/"):  # a weighted term's plain mean square, averaged over the ranks
                            value = plain[name.removeprefix("mse/")]
                        logger.scalar(name, float(value), step)
                    bar.set_postfix(phase=phase, loss=f"{values['total']:.2e}", rel_l2=_shown(state.rel_l2), refresh=False)
                if (step % self.eval_every == 0 or last) and comm.is_main:
                    metrics = self.evaluate(pde, model, test_x, test_exact)
                    if "rel_l2" in metrics:
                        state.rel_l2 = metrics.pop("rel_l2")
                        logger.scalar("error/rel_l2", state.rel_l2, step)
                        bar.set_postfix(phase=phase, loss=f"{total.item():.2e}", rel_l2=_shown(state.rel_l2), refresh=False)
                    if "max_abs_error" in metrics:
                        logger.scalar("error/max_abs", metrics.pop("max_abs_error"), step)
                    for name in [k for k in metrics if k.startswith("rel_l2_")]:  # each output's own
                        logger.scalar(f"error/{name}", metrics.pop(name), step)
                    for name, value in metrics.items():  # the PDE's own numbers: unknown coefficients and their errors
                        logger.scalar(f"unknowns/{name}", value, step)
                    logger.flush()
                if logger.takes_images and ((self.image_every and step % self.image_every == 0) or last) and comm.is_main:
                    logger.image("solution", self._solution_image(pde, model, device, state.dtype), step)
                    logger.flush()
                # read after the evaluation and figure, which a signal may have arrived during
                signum = comm.maximum(stop.signum or 0)  # every rank stops at the same step, for the same signal
                stopping = signum > 0
                if (self.checkpoint_every and step % self.checkpoint_every == 0) or last or stopping:
                    self._check_finite(step, total, terms, trainable, ckpt_path)
                    self._checkpoint(ckpt_path, model, pde, generator, state, config)
                    if not stopping and not last:  # one that arrived while this checkpoint was written
                        signum = comm.maximum(stop.signum or 0)
                        stopping = signum > 0
                if stopping and not last:  # at the last step the run finishes as it would have
                    logger.close()
                    raise TrainingInterrupted(signum, step, ckpt_path)

    def _enter_phase(self, state: _State, plan, device: torch.device) -> None:
        """Set the phase's optimizer up for captured or eager steps (``plan``: the run's optimizer
        plan, which says how many steps the phase has left)."""
        state.lr, state.captured = None, None
        if state.phase == "adam":
            prepare_adam(state.optimizer, device, captured=self._graphs)
            if self._graphs:
                optimizer = state.optimizer
                state.captured = CapturedStep(lambda none: optimizer.zero_grad(set_to_none=none),
                                              on_failure=self._capture_failed)
                self._captured_steps.append(state.captured)
                steps = range(state.step, self.max_steps)
                left = bisect.bisect_left(steps, True, key=lambda s: plan.phase_at(s) != "adam")
                if left <= state.captured.warmup:  # the capture would come after the phase's last step
                    (log.warning if self.cuda_graph is True else log.info)(
                        "cuda_graph: this Adam phase has %d step(s) left, and a capture comes after %d eager "
                        "steps: every step of it runs eagerly", left, state.captured.warmup)
        elif self._graphs:
            log.info("cuda_graph: L-BFGS steps run eagerly (its line search decides on the host)")

    def _capture_failed(self, reason: str) -> None:
        if self.cuda_graph is True:
            raise ConfigError(f"trainer.cuda_graph=true, but capturing the training step failed: {reason}. "
                              "Set trainer.cuda_graph=auto (eager where capture is impossible) or false")
        log.warning("cuda_graph: capturing the training step failed (%s); steps run eagerly", reason)

    def _check_finite(self, step: int, total: Tensor, terms: dict[str, Tensor], trainable: nn.Module,
                      checkpoint: Path) -> dict[str, float]:
        values = {"total": total.item(), **{k: v.item() for k, v in terms.items()}}
        bad_params = [name for name, p in trainable.named_parameters() if not torch.isfinite(p).all()]
        if not all(math.isfinite(v) for v in values.values()) or bad_params:
            shown = ", ".join(f"{k}={v:.3e}" for k, v in values.items())
            found = f"at step {step}" if self.log_every == 1 else \
                f"by step {step} (checked every trainer.log_every={self.log_every} steps and at checkpoints)"
            where = f"; non-finite parameters: {', '.join(bad_params[:4])}" if bad_params else ""
            raise TrainingDiverged(
                f"training diverged {found}: {shown}{where}. "
                + (f"The last good checkpoint, {checkpoint}, is kept. " if checkpoint.is_file() else
                   "No checkpoint had been written yet. ") +
                f"{REMEDY}."
            )
        return values

    def _final_metrics(self, pde, model, engine, state: _State, test_x, test_exact, device) -> dict[str, Any]:
        total, terms = self.losses(pde, model, engine, state.points)
        total, terms, plain = self.unpack(self._comm.average(self.reported(total, terms)), list(terms))
        steps = sum(c.steps for c in state.clocks.values())
        seconds = sum(c.seconds for c in state.clocks.values())
        metrics: dict[str, Any] = {
            **(self.evaluate(pde, model, test_x, test_exact) if self._comm.is_main else {}),
            "loss": total.item(),
            **{f"loss_{k}": v.item() for k, v in terms.items()},
            **{f"mse_{k}": v.item() for k, v in plain.items()},
            "steps": state.step,
            "train_seconds": seconds,
            "ms_per_step": 1000 * seconds / max(steps, 1),
            "phases": {k: {"steps": c.steps, "seconds": c.seconds, "ms_per_step": 1000 * c.seconds / max(c.steps, 1)}
                       for k, c in state.clocks.items()},
            "device": str(device),
            "dtype": str(state.dtype).removeprefix("torch."),  # of the last stage, which these numbers measure
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "n_unknowns": sum(p.numel() for p in pde.parameters()),
            "processes": self._comm.world,
        }
        return metrics
