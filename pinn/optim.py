r"""Optimizer plans: which optimizer runs at which training step.

A plan is configuration only; the trainer asks it for the phase at each step and builds that
phase's ``torch.optim`` optimizer when the phase begins. ``adam`` runs Adam throughout,
``lbfgs`` runs L-BFGS throughout, and ``adam_lbfgs`` runs Adam for ``switch_step`` steps and
then L-BFGS, the usual recipe for PINNs: Adam finds the basin, L-BFGS converges in it.

One trainer step of L-BFGS is one call of ``optimizer.step(closure)``, which makes up to
``max_iter`` iterations, each with a strong-Wolfe line search. Its points must stay fixed, so
the trainer does not resample during L-BFGS. ``lbfgs_dtype=float64`` runs that last stage in
double precision (the network, the PDE's unknowns and the points are converted at the switch),
where float32 round-off would otherwise end the line searches early. ``quasi_newton`` picks
the method of that stage: ``lbfgs`` (``torch.optim.LBFGS``, the last ``history_size`` curvature
pairs), or dense ``bfgs`` / ``ssbfgs`` (:class:`BFGS`, every pair, plain or self-scaling), which
costs ``n²`` memory for ``n`` parameters and can converge where L-BFGS stalls.

Adam's learning rate follows a schedule, a pure function of the step (:meth:`OptimizerPlan.lr_at`),
so a resumed run continues it exactly with nothing extra to save:

* ``constant``: ``lr``;
* ``exponential``: :math:`\mathrm{lr}\cdot \mathrm{decay\_rate}^{\,s/\mathrm{decay\_steps}}`;
* ``cosine``: from ``lr`` down to ``min_lr`` over ``decay_steps`` steps, then ``min_lr``;

each after an optional linear warm-up over ``warmup_steps`` steps from ``lr / warmup_steps`` up
to ``lr``: the schedule's step ``s`` counts from the end of the warm-up.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.optim.lbfgs import _strong_wolfe  # the line search torch.optim.LBFGS uses

from pinn.errors import ConfigError, check_choice, check_positive

PHASES = ("adam", "lbfgs")
QUASI_NEWTON = ("lbfgs", "bfgs", "ssbfgs")
#: Dense BFGS keeps an n × n matrix; above this size it is refused in favour of L-BFGS.
BFGS_MAX_BYTES = 16 * 2**30
LINE_SEARCHES = ("strong_wolfe", "none")
SCHEDULES = ("constant", "exponential", "cosine")
LBFGS_DTYPES = (None, "float64")


def _check_lr(lr, name: str = "optimizer.lr") -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ConfigError(f"{name} must be a finite number > 0; got {lr!r}")


def check_bfgs_size(n: int, dtype: torch.dtype) -> None:
    """Refuse a dense BFGS matrix for ``n`` parameters that would exceed ``BFGS_MAX_BYTES``."""
    size = n * n * dtype.itemsize
    if size > BFGS_MAX_BYTES:
        raise ConfigError(
            f"optimizer.quasi_newton=bfgs/ssbfgs keeps an n × n matrix, {size / 2**30:.1f} GiB in {dtype} for this "
            f"network's n = {n} parameters (at most {BFGS_MAX_BYTES / 2**30:.0f} GiB); use "
            "optimizer.quasi_newton=lbfgs, or a smaller network")


class BFGS(torch.optim.LBFGS):
    r"""BFGS with a dense inverse-Hessian approximation :math:`H` and the strong-Wolfe line
    search of :class:`torch.optim.LBFGS`, whose interface it shares: ``step(closure)`` makes up
    to ``max_iter`` iterations.

    After a step :math:`s = x_{k+1} - x_k` with gradient change :math:`y = g_{k+1} - g_k`
    (skipped unless :math:`y^\top s > 10^{-10}\, \lVert y\rVert \lVert s\rVert`, which keeps
    :math:`H` positive definite; relative, because near a PINN's minimum, with losses of 1e-8 to
    1e-10, :math:`y^\top s` falls far below the absolute :math:`10^{-10}` of
    :class:`torch.optim.LBFGS`, which skipped every pair there and froze :math:`H`; skipped too
    where :math:`\rho^2` below would overflow, :math:`y^\top s` under 1.5e-154 in float64),

    .. math::
        H \leftarrow \tau \bigl(H - \rho (s\, y^\top H + H y\, s^\top)
        + \rho^2 (y^\top H y)\, s s^\top\bigr) + \rho\, s s^\top, \qquad \rho = 1 / y^\top s,

    which with :math:`\tau = 1` is the BFGS update :math:`(I - \rho s y^\top) H (I - \rho y s^\top)
    + \rho s s^\top`. ``self_scaling=True`` takes :math:`\tau = \max(1, s^\top B s / y^\top s)`
    with :math:`B = H^{-1}` (Al-Baali's restricted self-scaling; :math:`s^\top B s = -t\, s^\top g_k`
    for the step :math:`s = -t H g_k`): where the model's curvature along the step exceeds the
    measured one, the old approximation is enlarged before the new pair enters, which helps where
    the Hessian's eigenvalues spread over many decades, as a PINN loss's do near a minimum
    (Urbán, Stefanou & Pons 2025; Kiyani et al. 2025). :math:`H` starts as
    :math:`(y^\top s / y^\top y)\, I` at the first update.

    Unlike L-BFGS, which keeps ``history_size`` pairs, every pair ever seen shapes :math:`H`; the
    price is :math:`n^2` numbers of memory and :math:`O(n^2)` work per iteration for ``n``
    parameters (13,313 parameters: 1.4 GB in float64, and about 0.5 s per iteration on one CPU
    core for the update and the two products with :math:`H`), so it suits the small networks
    of a final float64 stage. ``H`` is saved with the optimizer's state, so a resumed run
    continues exactly.
    """

    def __init__(self, params, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-9, tolerance_change: float = 0.0,
                 line_search_fn: str | None = "strong_wolfe", self_scaling: bool = False):
        super().__init__(params, lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                         tolerance_change=tolerance_change, line_search_fn=line_search_fn)
        self.self_scaling = self_scaling
        check_bfgs_size(self._numel(), self._params[0].dtype)

    @torch.no_grad()
    def step(self, closure):  # type: ignore[override]
        closure = torch.enable_grad()(closure)
        group = self.param_groups[0]
        lr, max_iter = float(group["lr"]), group["max_iter"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        state = self.state[self._params[0]]  # global state on the first parameter, as in LBFGS
        state.setdefault("n_iter", 0)
        state.setdefault("func_evals", 0)

        orig_loss = closure()
        loss = float(orig_loss)
        state["func_evals"] += 1
        evals = 1
        flat_grad = self._gather_flat_grad()
        if flat_grad.abs().max() <= tolerance_grad:
            return orig_loss
        H, d, t = state.get("H"), state.get("d"), state.get("t")
        prev_grad = state.get("prev_flat_grad")

        for n_iter in range(1, max_iter + 1):
            state["n_iter"] += 1
            if state["n_iter"] > 1:
                y, s = flat_grad - prev_grad, d * t
                ys = float(y.dot(s))
                # relative: see the class docstring; and ρ² = 1/(yᵀs)² must fit the dtype
                if ys > 1e-10 * float(y.norm() * s.norm()) and ys > torch.finfo(y.dtype).tiny ** 0.5:
                    tau = 1.0
                    if H is None:
                        H = torch.diag(torch.full_like(y, ys / float(y.dot(y))))
                    elif self.self_scaling:  # s = -t H g_prev, so sᵀBs = -t sᵀg_prev with B = H⁻¹
                        tau = max(1.0, -t * float(s.dot(prev_grad)) / ys)
                    Hy = H @ y * tau  # with the scaling: (τH) y
                    yHy = float(y.dot(Hy))
                    rho = 1.0 / ys
                    # τH - ρ(s (τHy)ᵀ + τHy sᵀ) + (ρ² yᵀτHy + ρ) s sᵀ as one rank-2 product,
                    # a single pass over H (memory traffic is the cost of the update).
                    left = torch.stack([s, Hy], dim=1)
                    right = torch.stack([(rho * rho * yHy + rho) * s - rho * Hy, -rho * s], dim=1)
                    H.addmm_(left, right.T, beta=tau)
            d = -flat_grad if H is None else -(H @ flat_grad)
            prev_grad = flat_grad.clone()
            prev_loss = loss
            t = min(1.0, 1.0 / flat_grad.abs().sum().item()) * lr if state["n_iter"] == 1 else lr
            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:
                break
            if group["line_search_fn"] is None:
                self._add_grad(t, d)
                loss = float(closure())
                flat_grad, ls_evals = self._gather_flat_grad(), 1
            else:
                x_init = self._clone_param()

                def directional(x, step, direction):
                    return self._directional_evaluate(closure, x, step, direction)

                # The evaluations left in this step's budget; the first search of a step gets at
                # least torch's L-BFGS allowance of 25, so a small max_iter (max_iter=1 leaves none)
                # cannot end every step at t = 0 and stall for good.
                budget = group["max_eval"] - evals
                loss, flat_grad, t, ls_evals = _strong_wolfe(directional, x_init, t, d, loss, flat_grad, gtd,
                                                             max_ls=max(budget, 25) if n_iter == 1 else budget)
                self._add_grad(t, d)
            evals += ls_evals
            state["func_evals"] += ls_evals
            if (n_iter == max_iter or evals >= group["max_eval"] or flat_grad.abs().max() <= tolerance_grad
                    or d.mul(t).abs().max() <= tolerance_change or abs(loss - prev_loss) < tolerance_change):
                break

        state.update(H=H, d=d, t=t, prev_flat_grad=prev_grad)
        return orig_loss


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

    def check(self, params: Iterable[torch.nn.Parameter], dtype: torch.dtype) -> None:
        """Refuse at start-up what a later phase could not build for these parameters."""


class _AdamSettings:
    def __init__(self, lr: float, betas: tuple[float, float], schedule: str = "constant", warmup_steps: int = 0,
                 decay_rate: float = 0.9, decay_steps: int = 1000, min_lr: float = 0.0):
        _check_lr(lr)
        if (isinstance(betas, str) or not isinstance(betas, Sequence | np.ndarray) or len(betas) != 2
                or not all(isinstance(b, numbers.Real) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), as [0.9, 0.999]; "
                              f"got {list(betas) if isinstance(betas, Sequence) and not isinstance(betas, str) else betas!r}")
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
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        step -= self.warmup_steps  # the schedule starts at lr when the warm-up ends
        if self.schedule == "exponential":
            return self.lr * self.decay_rate ** (step / self.decay_steps)
        if self.schedule == "cosine":
            progress = min(step / self.decay_steps, 1.0)
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        return self.lr


class _LBFGSSettings:
    def __init__(self, lr: float, max_iter: int, history_size: int, line_search: str,
                 tolerance_grad: float, tolerance_change: float, quasi_newton: str = "lbfgs",
                 lr_name: str = "optimizer.lr"):
        _check_lr(lr, lr_name)
        check_positive("optimizer.max_iter", max_iter)
        check_positive("optimizer.history_size", history_size)
        check_choice("optimizer.line_search", line_search, LINE_SEARCHES)
        check_positive("optimizer.tolerance_grad", tolerance_grad, integer=False, allow_zero=True)
        check_positive("optimizer.tolerance_change", tolerance_change, integer=False, allow_zero=True)
        check_choice("optimizer.quasi_newton", quasi_newton, QUASI_NEWTON)
        self.quasi_newton = quasi_newton
        self.kwargs = dict(
            lr=float(lr), max_iter=max_iter, line_search_fn=None if line_search == "none" else line_search,
            tolerance_grad=float(tolerance_grad), tolerance_change=float(tolerance_change),
        )
        self.history_size = history_size

    def check(self, params, dtype: torch.dtype) -> None:
        if self.quasi_newton != "lbfgs":
            check_bfgs_size(sum(p.numel() for p in params), dtype)

    def lbfgs(self, params) -> torch.optim.Optimizer:
        """The quasi-Newton optimizer of this stage: L-BFGS, or dense (self-scaling) BFGS."""
        # torch's budget of loss evaluations per step, 5/4 max_iter, but at least 26: the first
        # line search of a step gets 25 or more (BFGS's rule). With torch's budget alone a small
        # max_iter (max_iter=1 leaves none) ended every step at t = 0: no training at all, and
        # with BFGS max_iter=2 made one iteration, as max_iter=1 does.
        max_eval = max(self.kwargs["max_iter"] * 5 // 4, 26)
        if self.quasi_newton == "lbfgs":
            return torch.optim.LBFGS(params, history_size=self.history_size, max_eval=max_eval, **self.kwargs)
        return BFGS(params, self_scaling=self.quasi_newton == "ssbfgs", max_eval=max_eval, **self.kwargs)


class Adam(OptimizerPlan):
    """Adam for the whole run, its learning rate following ``schedule`` (see the module docstring)."""

    def __init__(self, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), schedule: str = "constant",
                 warmup_steps: int = 0, decay_rate: float = 0.9, decay_steps: int = 1000, min_lr: float = 0.0):
        self.settings = _AdamSettings(lr, betas, schedule, warmup_steps, decay_rate, decay_steps, min_lr)

    def phase_at(self, step: int) -> str:
        return "adam"

    def lr_at(self, step: int) -> float:
        return self.settings.lr_at(step)

    def build(self, phase, params):
        return self.settings.adam(params)


class LBFGS(OptimizerPlan):
    """L-BFGS for the whole run; ``lr`` scales its step (1 with a line search)."""

    def __init__(self, *, lr: float = 1.0, max_iter: int = 20, history_size: int = 50,
                 line_search: str = "strong_wolfe", tolerance_grad: float = 1e-9, tolerance_change: float = 0.0,
                 quasi_newton: str = "lbfgs"):
        self.settings = _LBFGSSettings(lr, max_iter, history_size, line_search, tolerance_grad, tolerance_change,
                                       quasi_newton)

    def phase_at(self, step: int) -> str:
        return "lbfgs"

    def check(self, params, dtype):
        self.settings.check(params, dtype)

    def build(self, phase, params):
        return self.settings.lbfgs(params)


class AdamLBFGS(OptimizerPlan):
    """Adam (learning rate ``lr`` on its ``schedule``) for ``switch_step`` steps, then L-BFGS
    (step ``lbfgs_lr``), optionally in float64 (``lbfgs_dtype``)."""

    def __init__(self, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), switch_step: int = 1000,
                 schedule: str = "constant", warmup_steps: int = 0, decay_rate: float = 0.9, decay_steps: int = 1000,
                 min_lr: float = 0.0, lbfgs_lr: float = 1.0, max_iter: int = 20, history_size: int = 50,
                 line_search: str = "strong_wolfe", tolerance_grad: float = 1e-9, tolerance_change: float = 0.0,
                 lbfgs_dtype: str | None = None, quasi_newton: str = "lbfgs"):
        check_positive("optimizer.switch_step", switch_step, allow_zero=True)
        check_choice("optimizer.lbfgs_dtype", lbfgs_dtype, LBFGS_DTYPES)
        self.switch_step = switch_step
        self.lbfgs_dtype = None if lbfgs_dtype is None else getattr(torch, lbfgs_dtype)
        self.adam_settings = _AdamSettings(lr, betas, schedule, warmup_steps, decay_rate, decay_steps, min_lr)
        self.lbfgs_settings = _LBFGSSettings(lbfgs_lr, max_iter, history_size, line_search,
                                             tolerance_grad, tolerance_change, quasi_newton, lr_name="optimizer.lbfgs_lr")

    def phase_at(self, step: int) -> str:
        return "adam" if step < self.switch_step else "lbfgs"

    def lr_at(self, step: int) -> float | None:
        return self.adam_settings.lr_at(step) if step < self.switch_step else None

    def dtype_of(self, phase: str) -> torch.dtype | None:
        return self.lbfgs_dtype if phase == "lbfgs" else None

    def check(self, params, dtype):
        self.lbfgs_settings.check(params, self.lbfgs_dtype or dtype)

    def build(self, phase, params):
        check_choice("optimizer phase", phase, PHASES)
        return self.adam_settings.adam(params) if phase == "adam" else self.lbfgs_settings.lbfgs(params)
