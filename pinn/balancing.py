r"""Weighting the loss terms against each other, and weighting the equation causally in time.

A PINN's loss :math:`L = \sum_k \lambda_k L_k` adds terms whose gradients can differ by orders of
magnitude (an equation with large derivatives against a boundary condition), and the largest
gradient wins. ``loss.weighting`` chooses the weights :math:`\lambda_k`:

* ``fixed``: :math:`\lambda_k = 1` (multiplied, like every scheme, by ``trainer.loss_weights``).
* ``grad_norm``: learning-rate annealing (Wang, Teng & Perdikaris 2021, in the form of Wang et
  al.'s 2023 guide): every ``update_every`` steps
  :math:`\hat\lambda_k = \sum_j \|\nabla_\theta L_j\| / \|\nabla_\theta L_k\|`,
  smoothed as :math:`\lambda_k \leftarrow \alpha \lambda_k + (1-\alpha)\hat\lambda_k` (``momentum`` α).
  (jaxpi's code divides the mean of the norms instead of their sum, which makes every weight
  smaller by the number of terms.)
* ``ntk``: the trace of each term's neural tangent kernel (Wang, Yu & Perdikaris 2022):
  :math:`\hat\lambda_k = \sum_j \bar K_j / \bar K_k` with
  :math:`\bar K_k = \frac{1}{n C_k}\sum_i \sum_c \|\nabla_\theta r_{k,c}(x_i)\|^2` estimated on
  ``ntk_points`` points of each term, drawn afresh at each update (the mean over the points and
  over a residual's ``C_k`` components, as the term's loss is their mean square), smoothed like
  ``grad_norm``. Where the loss
  weights the equation's points (causally, for growth in time), each point's
  :math:`\|\nabla_\theta r\|^2` carries the weight its squared residual carries in the loss, as
  in jaxpi's causal NTK weighting.

In both, the ratio is regularised like jaxpi's, :math:`\sum_j s_j / (s_k + 10^{-5} \sum_j s_j)`
for the sizes :math:`s`: a term that holds up to round-off (an exactly periodic network's
periodic condition, say), whose gradient is round-off too, gets a weight of at most
:math:`10^5`, not an unbounded one. A term whose size comes out zero (it does not depend on the
parameters at that moment) keeps its weight.
* ``self_adaptive``: one weight per collocation point and term (McClenny & Braga-Neto 2023),
  :math:`L_k = \frac1{N}\sum_i \lambda_{k,i}^2 r_k(x_i)^2`, the :math:`\lambda` trained by gradient
  *ascent* (Adam, ``sa_lr``) during the Adam phase, so that hard points weigh more. The points
  must stay fixed (no resampling).

``loss.causal=true`` (time-dependent problems; Wang, Sankaran & Perdikaris 2024) splits the time
interval into ``causal_chunks`` chunks and weights the equation's mean residual :math:`L^{(i)}` in
chunk :math:`i` by :math:`w_i = \exp(-\varepsilon \sum_{j<i} L^{(j)})` (no gradient through
:math:`w`), :math:`\varepsilon` = ``causal_tolerance``: later times count only once earlier ones
are resolved, as information flows in a time-dependent problem. :math:`L^{(j)}` is the plain
mean square (over the chunk's points and the residual's components), so neither the other
weights below nor the number of components change what ``causal_tolerance`` means. An equation
of several terms (a system) has one set of weights, from the sum of its terms' mean squares (the
paper's residual loss): a later time waits until every equation is resolved before it. With
``derivatives.unbiased`` a chunk's mean of products of two independent estimates can come out
negative; it counts as zero, so that no weight exceeds one. At Adam
steps the weights are those of the step's own residuals; an L-BFGS or BFGS step keeps the
weights of its first evaluation through its line search (:meth:`LossBalance.holding_causal_weights`),
so that it minimises one function, whose gradient is the one it is given.

``loss.growth_rate`` λ (time-dependent problems; default 0, off) weights the equation's squared
residual at time :math:`t` by :math:`e^{2\lambda(t_1 - t)}`. Where errors grow in time at a rate
up to λ (near an unstable state; for Allen–Cahn's reaction :math:`5u - 5u^3` the rate at
:math:`u = 0` is 5), a residual at time :math:`s` reaches the end amplified by up to
:math:`e^{\lambda(t_1 - s)}` (Grönwall: :math:`\|e(t_1)\| \le \int e^{\lambda(t_1 - s)} \|r(s)\|\,ds`),
so the loss charges early residuals what they cost at the end. The causal weights are computed
from the unweighted residuals, so ``causal_tolerance`` keeps its meaning.

The weights are logged under ``weights/`` (and ``causal/min_weight``) in TensorBoard. Where a
scheme weights points or times (self-adaptive, causal, growth), ``loss/<term>`` is the weighted
term the optimizer sees, and ``mse/<term>`` the plain mean squared residual, comparable between
runs (``mse_<term>`` in ``metrics.json``, where it is always given).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from pinn.errors import ConfigError, check_choice, check_flag, check_positive
from pinn.geometry import SpaceTime
from pinn.pdes.base import check_residuals

WEIGHTINGS = ("fixed", "grad_norm", "ntk", "self_adaptive")
#: Largest exponent 2λ(t1 − t0) of the growth weights. Float32 overflows near e^88.7, and the
#: weighted squares must fit too, and their sum over the points before it is divided by their
#: number: at the largest exponent, 4,000 points spread over time and a residual of the same size
#: at every point, float32 sums residuals of 2e5 and overflows at 3e5 (the run then ends as
#: diverged); the room shrinks as the number of points grows.
MAX_GROWTH_EXPONENT = 60
#: ``grad_norm`` and ``ntk`` weigh a term by Σ_j s_j / (s_k + SIZE_FLOOR Σ_j s_j), like jaxpi (whose
#: mean of the sizes stands for the sum): at most 1 / SIZE_FLOOR where a term's size s_k is round-off.
SIZE_FLOOR = 1e-5


class LossBalance(nn.Module):
    """The loss terms' weights and how they are updated (see the module docstring).

    An ``nn.Module`` so that its state (smoothed weights, self-adaptive point weights) is saved
    in checkpoints and resumes exactly.
    """

    def __init__(self, *, weighting: str = "fixed", update_every: int = 100, momentum: float = 0.9,
                 ntk_points: int = 16, sa_lr: float = 5e-3, causal: bool = False, causal_chunks: int = 16,
                 causal_tolerance: float = 1.0, growth_rate: float = 0.0):
        super().__init__()
        check_choice("loss.weighting", weighting, WEIGHTINGS)
        check_positive("loss.update_every", update_every)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ConfigError(f"loss.momentum must be a number in [0, 1); got {momentum!r}")
        check_positive("loss.ntk_points", ntk_points)
        check_positive("loss.sa_lr", sa_lr, integer=False)
        check_positive("loss.causal_chunks", causal_chunks)
        check_positive("loss.causal_tolerance", causal_tolerance, integer=False)
        check_positive("loss.growth_rate", growth_rate, integer=False, allow_zero=True)
        self.weighting, self.update_every, self.momentum = weighting, update_every, float(momentum)
        self.ntk_points, self.sa_lr = ntk_points, float(sa_lr)
        self.causal = check_flag("loss.causal", causal)
        self.causal_chunks, self.causal_tolerance = causal_chunks, float(causal_tolerance)
        self.growth_rate = float(growth_rate)
        self.register_buffer("term_weights", torch.zeros(0, dtype=torch.float64))  # in the order of term_names
        self.term_names: list[str] = []
        self.point_weights = nn.ParameterDict()  # self_adaptive: one weight per point, per term
        # the equation's terms and (causal) their chunks' weights and point counts, as of the last loss
        self.equation_names: list[str] = []
        self.chunk_weights: dict[str, tuple[Tensor, Tensor]] = {}
        self._held: dict[str, Tensor] | None = None  # causal weights kept through a quasi-Newton step
        self._ascent: torch.optim.Optimizer | None = None
        self._ascent_state: dict | None = None  # a checkpoint's ascent state, until ascend() needs it
        self.logs: dict[str, float | Tensor] = {}  # read on the host only when logged

    def extra_repr(self) -> str:
        growth = f", growth_rate={self.growth_rate}" if self.growth_rate else ""
        return f"weighting={self.weighting!r}, causal={self.causal}{growth}"

    def __repr__(self) -> str:
        return f"LossBalance({self.extra_repr()})"

    # ------------------------------------------------------------------ checks

    @property
    def needs_residuals(self) -> bool:
        """Whether the loss needs pointwise residuals (not only each term's mean square)."""
        return self.causal or self.weighting == "self_adaptive" or self.growth_rate > 0

    def check(self, pde, resample_every: int) -> None:
        """Refuse, before training, what cannot work with this problem and these settings."""
        if self.causal and not isinstance(pde.domain, SpaceTime):
            raise ConfigError(f"loss.causal=true needs a time-dependent problem; {type(pde).__name__} has no time axis")
        if self.growth_rate and not isinstance(pde.domain, SpaceTime):
            raise ConfigError(f"loss.growth_rate weights residuals by time, and {type(pde).__name__} has no time axis; "
                              "set loss.growth_rate=0")
        if self.growth_rate and 2 * self.growth_rate * (pde.domain.t1 - pde.domain.t0) > MAX_GROWTH_EXPONENT:
            span = pde.domain.t1 - pde.domain.t0
            raise ConfigError(
                f"loss.growth_rate={self.growth_rate} over {type(pde).__name__}'s time span {span:g} weights the first "
                f"residuals by e^{2 * self.growth_rate * span:.0f}, beyond e^{MAX_GROWTH_EXPONENT} (float32 overflows "
                f"near e^88, and the weighted squares must fit too); use loss.growth_rate <= "
                f"{math.floor(MAX_GROWTH_EXPONENT / (2 * span) * 1000) / 1000:g}")  # rounded down: accepted
        if self.weighting == "self_adaptive" and resample_every:
            raise ConfigError(
                "loss.weighting=self_adaptive keeps one weight per collocation point, so the points must stay fixed; "
                "set trainer.resample_every=0"
            )

    # ------------------------------------------------------------------ the loss

    def weights(self) -> dict[str, float]:
        return dict(zip(self.term_names, self.term_weights.tolist()))

    def term_losses(self, residuals: dict[str, Tensor], points: dict[str, Tensor], pde,
                    independent: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Each term's loss from its pointwise residuals: causal and weighted for growth in time
        for the equation's terms where chosen, self-adaptive point weights where chosen,
        otherwise the mean square. With ``independent`` (the same residuals from an independent
        stochastic estimate) each square is the product of the two instead: unbiased."""
        reads_equation = self.causal or self.growth_rate > 0  # the equation's terms, row by row
        check_residuals(pde, residuals, points if reads_equation else None)
        equation = pde.equation_terms(residuals, "loss.causal" if self.causal else "loss.growth_rate") \
            if reads_equation else []
        self.equation_names = list(equation)
        terms, causal = {}, {}
        for name, r in residuals.items():
            # (N,): the residual's components add up
            square = r.square().sum(dim=1) if independent is None else (r * independent[name]).sum(dim=1)
            # the plain mean square, for comparing runs: the terms below carry this scheme's weights
            self.logs[f"mse/{name}"] = square.detach().mean() / r.shape[1]
            adaptive = None  # self-adaptive: each point's weight
            if self.weighting == "self_adaptive" and r.shape[0] > 1:
                if name not in self.point_weights:
                    self.point_weights[name] = nn.Parameter(torch.ones(r.shape[0], dtype=r.dtype, device=r.device))
                    self._ascent = None  # rebuilt below with the new weights
                adaptive = self.point_weights[name].square()
            if name in equation:
                t = points["interior"][:, -1]
                growth = self._growth(t, pde.domain) if self.growth_rate > 0 else None
                if self.causal:  # its weights from the plain squares, each point's other weights apart
                    weight = adaptive
                    if growth is not None:
                        weight = growth if weight is None else weight * growth
                    causal[name] = (square / r.shape[1], weight)  # weighted below, with the equation's other terms
                else:
                    terms[name] = (growth * (square if adaptive is None else adaptive * square)).mean() / r.shape[1]
            else:
                terms[name] = (square if adaptive is None else adaptive * square).mean() / r.shape[1]
        if causal:
            terms.update(self._causal(causal, points["interior"][:, -1], pde.domain))
        return {name: terms[name] for name in residuals}  # in the residuals' order, which orders the weights

    def _growth(self, t: Tensor, domain: SpaceTime) -> Tensor:
        r""":math:`e^{2\lambda(t_1 - t)}`, the weight of a squared residual at time ``t``."""
        return torch.exp(2 * self.growth_rate * (domain.t1 - t))

    @contextmanager
    def holding_causal_weights(self) -> Iterator[None]:
        """Within, the causal weights are those of the first loss evaluation: a quasi-Newton
        step's line search then evaluates one function of the parameters, and its gradients are
        that function's (weights recomputed at each trial point would change the function
        between the trials, and leave out of the gradient how the weights move)."""
        self._held = {}
        try:
            yield
        finally:
            self._held = None

    def _chunk(self, t: Tensor, domain: SpaceTime) -> Tensor:
        """The causal chunk of each time ``t``."""
        m = self.causal_chunks
        return ((t - domain.t0) / (domain.t1 - domain.t0) * m).long().clamp(0, m - 1)

    def _causal(self, squares: dict[str, tuple[Tensor, Tensor | None]], t: Tensor,
                domain: SpaceTime) -> dict[str, Tensor]:
        """The causally weighted mean of each equation term's plain ``square`` at times ``t``
        (``squares``: by term, the square and each point's other weight or ``None``; with a
        weight, the mean of ``weight * square``). One set of causal weights for all the terms,
        from the sum of their plain chunk means."""
        m = self.causal_chunks
        chunk = self._chunk(t, domain)
        first = next(iter(squares.values()))[0]
        counts = torch.zeros(m, dtype=first.dtype, device=first.device).index_add(0, chunk, torch.ones_like(first))

        def chunk_means(values: Tensor) -> Tensor:
            return torch.zeros_like(counts).index_add(0, chunk, values) / counts.clamp(min=1)

        means = {name: chunk_means(square) for name, (square, _) in squares.items()}
        if self._held:
            w = self._held["causal"]
        else:
            # L_j, every term's; at least 0 (a mean of products of independent estimates may not be)
            losses = sum(means.values()).detach().clamp(min=0)
            earlier = torch.cumsum(losses, 0) - losses  # Σ_{j<i} L_j
            w = torch.exp(-self.causal_tolerance * earlier)
            if self._held is not None:
                self._held["causal"] = w
        occupied = counts > 0
        # Masks by arithmetic, not indexing, so that no shape depends on the data (CUDA graphs).
        self.logs["causal/min_weight"] = torch.where(occupied, w, torch.inf).min().detach()
        losses = {}
        for name, (square, weight) in squares.items():
            self.chunk_weights[name] = (w.detach(), counts.detach())
            weighted = means[name] if weight is None else chunk_means(weight * square)
            losses[name] = (w * weighted * occupied).sum() / occupied.sum()
        return losses

    def weight_in_loss(self, name: str, t: Tensor, domain) -> Tensor | None:
        """What a squared residual of term ``name`` at times ``t`` weighs in the loss, relative to
        the plain mean square, as of the last loss evaluation: its growth weight and its chunk's
        causal weight for the equation's terms (``None``: the term's points weigh alike)."""
        if name not in self.equation_names:
            return None
        weight = self._growth(t, domain) if self.growth_rate > 0 else None
        if self.causal:
            w, counts = self.chunk_weights[name]
            occupied = (counts > 0).sum()
            # the causal mean gives each occupied chunk's mean a weight w / occupied, where the
            # plain mean gives each point 1 / N
            per_chunk = w * counts.sum() / (counts.clamp(min=1) * occupied)
            causal = per_chunk.to(t.dtype)[self._chunk(t, domain)]
            weight = causal if weight is None else weight * causal
        return weight

    def combine(self, terms: dict[str, Tensor], fixed: dict[str, float]) -> Tensor:
        """:math:`\\sum_k w_k \\lambda_k L_k` with the user's fixed weights ``w`` and this scheme's ``λ``."""
        if self.term_names != list(terms):
            self.term_names = list(terms)
            self.term_weights = torch.ones(len(terms), dtype=torch.float64, device=self.term_weights.device)
        if self.weighting == "fixed":
            # A weight of 1 multiplies nothing: two kernels fewer per term in a step, which a
            # replayed CUDA graph of a small problem pays for per kernel (the sum is the same).
            weighted = [v if fixed.get(k, 1.0) == 1 else fixed.get(k, 1.0) * v for k, v in terms.items()]
            return sum(weighted[1:], start=weighted[0])
        # The weights as a tensor (read on the device, never on the host), so that a captured
        # CUDA graph sees the values that update() writes into it.
        scheme = self.term_weights.to(next(iter(terms.values())).dtype)
        return sum(fixed.get(k, 1.0) * scheme[i] * v for i, (k, v) in enumerate(terms.items()))

    def get_extra_state(self) -> dict:
        state = {"term_names": list(self.term_names)}
        if self._ascent is not None:  # the point weights' Adam moments, so that a resume continues exactly
            state["ascent"] = self._ascent.state_dict()
        elif self._ascent_state is not None:  # restored but not used since (an L-BFGS phase): kept as it was
            state["ascent"] = self._ascent_state
        return state

    def set_extra_state(self, state: dict) -> None:
        self.term_names = list(state.get("term_names", []))
        self._ascent_state = state.get("ascent")  # loaded when ascend() rebuilds the optimizer

    def load(self, state: dict, device) -> None:
        """Restore from :meth:`state_dict`, creating the self-adaptive point weights it holds."""
        for key, value in state.items():
            if key.startswith("point_weights."):
                name = key.removeprefix("point_weights.")
                self.point_weights[name] = nn.Parameter(torch.empty_like(value, device=device))
        if "term_weights" in state:
            self.term_weights = torch.empty_like(state["term_weights"], device=device)
        self._ascent = None
        self.load_state_dict(state, strict=bool(state))

    # ------------------------------------------------------------------ updates

    def due(self, step: int) -> bool:
        return self.weighting in ("grad_norm", "ntk") and step % self.update_every == 0

    def update(self, terms: dict[str, Tensor], params: list[nn.Parameter], residuals_fn,
               average=lambda values: values, generator: torch.Generator | None = None) -> bool:
        """New smoothed weights from the current terms (``grad_norm``) or from pointwise residuals
        on a few points per term (``ntk``; ``residuals_fn()`` gives them with their graph, and
        each point's :meth:`weight_in_loss` by term, where it has one; a term with more than
        ``ntk_points`` residuals, such as data of its own, is measured on that many drawn with
        ``generator``).

        In a data-parallel run ``average`` is the mean over the processes: of each term's
        gradient before its norm is taken (the norm of the whole run's gradient, not a mean of
        each process's norms), and of each term's kernel trace (the mean over every process's
        points). Where a size is not finite (the loss or the parameters have diverged) the
        weights are left as they are, rather than turned into NaN for good; returns whether
        they were updated."""
        if self.weighting == "grad_norm":
            sizes = [self._grad_norm(v, params, average) for v in terms.values()]
        else:
            residuals, in_loss = residuals_fn()
            sizes = []
            for name in terms:
                r = residuals[name]  # (N, components)
                picked = torch.randperm(len(r), generator=generator)[:self.ntk_points].tolist() \
                    if len(r) > self.ntk_points else range(len(r))
                weight = [1.0] * len(r) if in_loss.get(name) is None else in_loss[name].double().tolist()
                trace = sum(weight[i] * self._grad_norm(r[i, c], params) ** 2 for i in picked for c in range(r.shape[1]))
                sizes.append(trace / (len(picked) * r.shape[1]))  # the mean, as the loss is the mean square
            sizes = average(torch.tensor(sizes, dtype=torch.float64, device=self.term_weights.device)).tolist()
        if not all(math.isfinite(s) for s in sizes):
            return False
        total = sum(sizes)
        current = self.term_weights.tolist()
        target = torch.tensor([total / (s + SIZE_FLOOR * total) if s > 0 else w for s, w in zip(sizes, current)],
                              dtype=torch.float64, device=self.term_weights.device)
        self.term_weights.mul_(self.momentum).add_((1 - self.momentum) * target)  # in place: a CUDA graph reads it
        return True

    @staticmethod
    def _grad_norm(value: Tensor, params: list[nn.Parameter], average=lambda values: values) -> float:
        """The norm of ``value``'s gradient (``average``: of its mean over the processes), in float64."""
        if not value.requires_grad:  # depends on no parameter
            return 0.0
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        parts = [g.reshape(-1).double() for g in grads if g is not None]
        return float(average(torch.cat(parts)).norm()) if parts else 0.0

    def ascend(self) -> None:
        """One gradient-ascent step of the self-adaptive point weights (their gradients are those
        of the last backward pass)."""
        if self.weighting != "self_adaptive" or not len(self.point_weights):
            return
        if self._ascent is None:
            self._ascent = torch.optim.Adam(self.point_weights.parameters(), lr=self.sa_lr, maximize=True)
            if self._ascent_state is not None:
                self._ascent.load_state_dict(self._ascent_state)
                self._ascent_state = None
        self._ascent.step()
        self._ascent.zero_grad(set_to_none=True)
        means = [p.detach().square().mean().item() for p in self.point_weights.values()]
        for name, mean in zip(self.point_weights, means):
            self.logs[f"weights/{name}_points_mean"] = mean
