r"""Optimizer plans: which optimizer runs at which training step.

A plan is configuration only; the trainer asks it for the phase at each step and builds that
phase's ``torch.optim`` optimizer when the phase begins. ``adam`` runs Adam throughout,
``lbfgs`` runs L-BFGS throughout, and ``adam_lbfgs`` runs Adam for ``switch_step`` steps and
then L-BFGS, the usual recipe for PINNs: Adam finds the basin, L-BFGS converges in it.

One trainer step of L-BFGS is one call of ``optimizer.step(closure)``, which makes up to
``max_iter`` iterations, each with a strong-Wolfe line search. Its points must stay fixed, so
the trainer does not resample during L-BFGS.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable

import torch

from pinn.errors import ConfigError, check_choice, check_positive

PHASES = ("adam", "lbfgs")
LINE_SEARCHES = ("strong_wolfe", "none")


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


class _AdamSettings:
    def __init__(self, lr: float, betas: tuple[float, float]):
        _check_lr(lr)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1); got {list(betas)!r}")
        self.lr, self.betas = float(lr), (float(betas[0]), float(betas[1]))

    def adam(self, params) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas)


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
    """Adam for the whole run."""

    def __init__(self, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999)):
        self.settings = _AdamSettings(lr, tuple(betas))

    def phase_at(self, step: int) -> str:
        return "adam"

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
    """Adam (learning rate ``lr``) for ``switch_step`` steps, then L-BFGS (step ``lbfgs_lr``)."""

    def __init__(self, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), switch_step: int = 1000,
                 lbfgs_lr: float = 1.0, max_iter: int = 20, history_size: int = 50, line_search: str = "strong_wolfe",
                 tolerance_grad: float = 1e-9, tolerance_change: float = 1e-12):
        check_positive("optimizer.switch_step", switch_step, allow_zero=True)
        self.switch_step = switch_step
        self.adam_settings = _AdamSettings(lr, tuple(betas))
        self.lbfgs_settings = _LBFGSSettings(lbfgs_lr, max_iter, history_size, line_search,
                                             tolerance_grad, tolerance_change)

    def phase_at(self, step: int) -> str:
        return "adam" if step < self.switch_step else "lbfgs"

    def build(self, phase, params):
        check_choice("optimizer phase", phase, PHASES)
        return self.adam_settings.adam(params) if phase == "adam" else self.lbfgs_settings.lbfgs(params)
