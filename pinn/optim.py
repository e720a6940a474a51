r"""Optimizer plans: which optimizer runs at which training step.

A plan is configuration only; the trainer asks it for the phase at each step and builds that
phase's ``torch.optim`` optimizer when the phase begins. ``adam`` runs Adam throughout,
``lbfgs`` runs L-BFGS throughout, and ``adam_lbfgs`` runs Adam for ``switch_step`` steps and
then L-BFGS, the usual recipe for PINNs: Adam finds the basin, L-BFGS converges in it.

One trainer step of L-BFGS is one call of ``optimizer.step(closure)``, which makes up to
``max_iter`` iterations, each with a strong-Wolfe line search. Its points must stay fixed, so
the trainer does not resample during L-BFGS. ``lbfgs_dtype=float64`` runs that last stage in
double precision (the network, the PDE's unknowns and the points are converted at the switch),
where float32 round-off would otherwise end the line searches early.

Adam's learning rate follows a schedule, a pure function of the step (:meth:`OptimizerPlan.lr_at`),
so a resumed run continues it exactly with nothing extra to save:

* ``constant``: ``lr``;
* ``exponential``: :math:`\mathrm{lr}\cdot \mathrm{decay\_rate}^{\,s/\mathrm{decay\_steps}}`;
* ``cosine``: from ``lr`` down to ``min_lr`` over ``decay_steps`` steps, then ``min_lr``;

each after an optional linear warm-up over ``warmup_steps`` steps from ``lr / warmup_steps``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable

import torch

from pinn.errors import ConfigError, check_choice, check_positive

PHASES = ("adam", "lbfgs")
LINE_SEARCHES = ("strong_wolfe", "none")
SCHEDULES = ("constant", "exponential", "cosine")
LBFGS_DTYPES = (None, "float64")


def _check_lr(lr) -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ConfigError(f"optimizer.lr must be a finite number > 0; got {lr!r}")


class OptimizerPlan(ABC):
    """Maps a training step to a phase and builds that phase's optimizer."""

    @abstractmethod
    def phase_at(self, step: int) -> str:
        """``"adam"`` or ``"lbfgs"`` for the (0-based) step."""

    @abstractmethod
    def build(self, phase: str, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer: ...

    def lr_at(self, step: int) -> float | None:
        """Adam's learning rate at ``step`` (``None``: leave the optimizer's as it is)."""
        return None

    def dtype_of(self, phase: str) -> torch.dtype | None:
        """The dtype a phase runs in (``None``: the run's)."""
        return None


class _AdamSettings:
    def __init__(self, lr: float, betas: tuple[float, float], schedule: str = "constant", warmup_steps: int = 0,
                 decay_rate: float = 0.9, decay_steps: int = 1000, min_lr: float = 0.0):
        _check_lr(lr)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1); got {list(betas)!r}")
        check_choice("optimizer.schedule", schedule, SCHEDULES)
        check_positive("optimizer.warmup_steps", warmup_steps, allow_zero=True)
        check_positive("optimizer.decay_steps", decay_steps)
        if isinstance(decay_rate, bool) or not isinstance(decay_rate, (int, float)) or not 0 < decay_rate <= 1:
            raise ConfigError(f"optimizer.decay_rate must be a number in (0, 1]; got {decay_rate!r}")
        if isinstance(min_lr, bool) or not isinstance(min_lr, (int, float)) or not 0 <= min_lr <= lr:
            raise ConfigError(f"optimizer.min_lr must be a number in [0, lr]; got {min_lr!r}")
        self.lr, self.betas = float(lr), (float(betas[0]), float(betas[1]))
        self.schedule, self.warmup_steps = schedule, warmup_steps
        self.decay_rate, self.decay_steps, self.min_lr = float(decay_rate), decay_steps, float(min_lr)

    def adam(self, params) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.lr_at(0), betas=self.betas)

    def lr_at(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.schedule == "exponential":
            return warm * self.lr * self.decay_rate ** (step / self.decay_steps)
        if self.schedule == "cosine":
            progress = min(step / self.decay_steps, 1.0)
            return warm * (self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress)))
        return warm * self.lr


class _LBFGSSettings:
    def __init__(self, lr: float, max_iter: int, history_size: int, line_search: str,
                 tolerance_grad: float, tolerance_change: float):
        _check_lr(lr)
        check_positive("optimizer.max_iter", max_iter)
        check_positive("optimizer.history_size", history_size)
        check_choice("optimizer.line_search", line_search, LINE_SEARCHES)
        check_positive("optimizer.tolerance_grad", tolerance_grad, integer=False, allow_zero=True)
        check_positive("optimizer.tolerance_change", tolerance_change, integer=False, allow_zero=True)
        self.lbfgs_kwargs = dict(
            lr=float(lr), max_iter=max_iter, history_size=history_size,
            line_search_fn=None if line_search == "none" else line_search,
            tolerance_grad=float(tolerance_grad), tolerance_change=float(tolerance_change),
        )

    def lbfgs(self, params) -> torch.optim.Optimizer:
        return torch.optim.LBFGS(params, **self.lbfgs_kwargs)


class Adam(OptimizerPlan):
    """Adam for the whole run, its learning rate following ``schedule`` (see the module docstring)."""

    def __init__(self, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), schedule: str = "constant",
                 warmup_steps: int = 0, decay_rate: float = 0.9, decay_steps: int = 1000, min_lr: float = 0.0):
        self.settings = _AdamSettings(lr, tuple(betas), schedule, warmup_steps, decay_rate, decay_steps, min_lr)

    def phase_at(self, step: int) -> str:
        return "adam"

    def lr_at(self, step: int) -> float:
        return self.settings.lr_at(step)

    def build(self, phase, params):
        return self.settings.adam(params)


class LBFGS(OptimizerPlan):
    """L-BFGS for the whole run; ``lr`` scales its step (1 with a line search)."""

    def __init__(self, *, lr: float = 1.0, max_iter: int = 20, history_size: int = 50,
                 line_search: str = "strong_wolfe", tolerance_grad: float = 1e-9, tolerance_change: float = 1e-12):
        self.settings = _LBFGSSettings(lr, max_iter, history_size, line_search, tolerance_grad, tolerance_change)

    def phase_at(self, step: int) -> str:
        return "lbfgs"

    def build(self, phase, params):
        return self.settings.lbfgs(params)


class AdamLBFGS(OptimizerPlan):
    """Adam (learning rate ``lr`` on its ``schedule``) for ``switch_step`` steps, then L-BFGS
    (step ``lbfgs_lr``), optionally in float64 (``lbfgs_dtype``)."""

    def __init__(self, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), switch_step: int = 1000,
                 schedule: str = "constant", warmup_steps: int = 0, decay_rate: float = 0.9, decay_steps: int = 1000,
                 min_lr: float = 0.0, lbfgs_lr: float = 1.0, max_iter: int = 20, history_size: int = 50,
                 line_search: str = "strong_wolfe", tolerance_grad: float = 1e-9, tolerance_change: float = 1e-12,
                 lbfgs_dtype: str | None = None):
        check_positive("optimizer.switch_step", switch_step, allow_zero=True)
        check_choice("optimizer.lbfgs_dtype", lbfgs_dtype, LBFGS_DTYPES)
        self.switch_step = switch_step
        self.lbfgs_dtype = None if lbfgs_dtype is None else getattr(torch, lbfgs_dtype)
        self.adam_settings = _AdamSettings(lr, tuple(betas), schedule, warmup_steps, decay_rate, decay_steps, min_lr)
        self.lbfgs_settings = _LBFGSSettings(lbfgs_lr, max_iter, history_size, line_search,
                                             tolerance_grad, tolerance_change)

    def phase_at(self, step: int) -> str:
        return "adam" if step < self.switch_step else "lbfgs"

    def lr_at(self, step: int) -> float | None:
        return self.adam_settings.lr_at(step) if step < self.switch_step else None

    def dtype_of(self, phase: str) -> torch.dtype | None:
        return self.lbfgs_dtype if phase == "lbfgs" else None

    def build(self, phase, params):
        check_choice("optimizer phase", phase, PHASES)
        return self.adam_settings.adam(params) if phase == "adam" else self.lbfgs_settings.lbfgs(params)
