"""Learning-rate schedules, the float64 L-BFGS stage, loss balancing, causal weighting and
adaptive sampling: each does what its formula says, and refuses what cannot work."""

import logging
import math
import time

import pytest
import torch

from conftest import tensorboard_steps
from pinn.balancing import LossBalance
from pinn.derivatives import AutogradEngine
from pinn.errors import ConfigError
from pinn.loggers import NullLogger
from pinn.models import MLP
from pinn import optim
from pinn.optim import BFGS, LBFGS, Adam, AdamLBFGS
from pinn.pdes import Burgers, Heat, Kovasznay, Poisson, PoissonInverse
from pinn.pdes.base import PDE
from pinn.sampling import RADSampler, RARSampler, SobolSampler, UniformSampler
from pinn.trainer import Trainer


class Recorder(NullLogger):
    def __init__(self):
        super().__init__()
        self.scalars = {}

    def scalar(self, tag, value, step):
        self.scalars.setdefault(tag, []).append((step, value))

    evaluation_scalar = scalar


def fit(run_dir, *, pde=None, plan=None, balance=None, sampler=None, max_steps=6, resample_every=0, logger=None,
        resume=None, dtype=torch.float32):
    torch.manual_seed(0)
    pde = pde or Poisson(dim=2)
    model = MLP(pde.dim, pde.n_outputs, width=8, depth=2)
    trainer = Trainer(max_steps=max_steps, eval_every=3, log_every=1, checkpoint_every=0, n_test=64,
                      image_resolution=8, progress=False, resample_every=resample_every)
    metrics = trainer.fit(pde=pde, model=model, engine=AutogradEngine(), optimizer=plan or Adam(lr=1e-2),
                          sampler=sampler or UniformSampler(n_interior=32, n_boundary=8, n_initial=8),
                          generator=torch.Generator().manual_seed(0), run_dir=run_dir, dtype=dtype,
                          logger=logger, balance=balance, resume=resume)
    return model, pde, trainer, metrics


# --------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("max_iter", [1, 2])
def test_lbfgs_with_a_small_max_iter_still_trains(max_iter, tmp_path):
    """torch's budget of 5/4 max_iter evaluations per step left the line search none at
    max_iter = 1 (and one at 2), so every step ended at t = 0: the loss never moved."""
    start = fit(tmp_path / "start", plan=LBFGS(max_iter=max_iter), max_steps=1)[3]["loss"]
    trained = fit(tmp_path / "trained", plan=LBFGS(max_iter=max_iter), max_steps=20)[3]["loss"]
    assert trained < 0.5 * start
    budgets = {n: LBFGS(max_iter=n).build("lbfgs", [torch.zeros(1, requires_grad=True)]).defaults["max_eval"]
               for n in (1, 20, 21, 40)}
    assert budgets == {1: 26, 20: 26, 21: 26, 40: 50}  # torch's 5/4 max_iter from 21 on


def test_learning_rate_schedules_follow_their_formulas():
    constant = Adam(lr=1e-3)
    assert [constant.lr_at(s) for s in (0, 10)] == [1e-3, 1e-3]
    exponential = Adam(lr=1e-3, schedule="exponential", decay_rate=0.9, decay_steps=100)
    assert exponential.lr_at(0) == 1e-3
    assert exponential.lr_at(250) == pytest.approx(1e-3 * 0.9**2.5, rel=1e-14)
    cosine = Adam(lr=1e-3, schedule="cosine", decay_steps=100, min_lr=1e-5)
    assert cosine.lr_at(50) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5), rel=1e-14)
    assert cosine.lr_at(100) == cosine.lr_at(500) == pytest.approx(1e-5)
    warm = Adam(lr=1e-3, warmup_steps=10)
    assert warm.lr_at(0) == pytest.approx(1e-4) and warm.lr_at(4) == pytest.approx(5e-4) and warm.lr_at(20) == 1e-3
    # After the warm-up the schedule starts at lr: it decays from there, not from step 0.
    warm_cosine = Adam(lr=1e-3, warmup_steps=1000, schedule="cosine", decay_steps=1000)
    assert warm_cosine.lr_at(999) == warm_cosine.lr_at(1000) == 1e-3
    assert warm_cosine.lr_at(1500) == pytest.approx(0.5e-3, rel=1e-14) and warm_cosine.lr_at(2000) == 0.0
    warm_exponential = Adam(lr=1e-3, warmup_steps=10, schedule="exponential", decay_rate=0.5, decay_steps=10)
    assert warm_exponential.lr_at(30) == pytest.approx(0.25e-3, rel=1e-14)
    plan = AdamLBFGS(lr=1e-3, switch_step=5, schedule="exponential", decay_steps=1)
    assert plan.lr_at(4) == pytest.approx(1e-3 * 0.9**4) and plan.lr_at(5) is None


@pytest.mark.parametrize("kwargs,match", [
    ({"schedule": "step"}, "optimizer.schedule"), ({"decay_rate": 1.5}, "decay_rate"),
    ({"min_lr": 1.0}, "min_lr"), ({"warmup_steps": -1}, "warmup_steps"), ({"decay_steps": 0}, "decay_steps"),
])
def test_bad_schedules_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Adam(lr=1e-3, **kwargs)


def test_the_trainer_applies_the_schedule(tmp_path):
    logger = Recorder()
    fit(tmp_path, plan=Adam(lr=1e-2, schedule="exponential", decay_rate=0.5, decay_steps=1), logger=logger)
    lrs = [value for _, value in logger.scalars["lr"]]
    assert lrs == pytest.approx([1e-2 * 0.5**s for s in range(6)], rel=1e-12)


def test_float64_lbfgs_stage_and_its_logging(tmp_path):
    logger = Recorder()
    plan = AdamLBFGS(lr=1e-2, switch_step=3, max_iter=4, lbfgs_dtype="float64")
    model, pde, _, metrics = fit(tmp_path, plan=plan, logger=logger)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert math.isfinite(metrics["rel_l2"])
    evaluations = logger.scalars["lbfgs/loss"]
    assert len(evaluations) >= 3  # every loss evaluation of the three L-BFGS steps, numbered 1, 2, ...
    assert [step for step, _ in evaluations] == list(range(1, len(evaluations) + 1))
    assert evaluations[-1][1] <= evaluations[0][1]


def test_resumed_lbfgs_curve_continues_without_losses_or_repeats(tmp_path):
    # Checkpoint at step 4, train on to step 6, then "crash" back to the step-4 checkpoint and
    # resume: TensorBoard must show every L-BFGS evaluation once, those before the checkpoint
    # included (they are numbered by evaluation, not by step).
    from pinn.loggers import TensorBoardLogger

    def run(steps, resume=None):
        # TensorBoard reads a folder's event files in the order of their names: the second in which
        # each was opened, then a per-process counter without leading zeros (so ...9 sorts after ...10).
        # Runs a second apart, as real ones are, keep that order the order they ran in.
        time.sleep(1.0 if resume else 0.0)
        fit(tmp_path, plan=AdamLBFGS(lr=1e-2, switch_step=2, max_iter=3), max_steps=steps, resume=resume,
            logger=TensorBoardLogger(tmp_path))

    run(4)
    checkpoint = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    run(6, resume=tmp_path)
    (tmp_path / "checkpoints" / "last.pt").write_bytes(checkpoint)
    run(6, resume=tmp_path)
    steps = tensorboard_steps(tmp_path / "tensorboard" / "evaluations", "lbfgs/loss")
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > 6
    assert tensorboard_steps(tmp_path / "tensorboard", "loss/total") == [1, 2, 3, 4, 5, 6]


def test_float64_stage_resumes_in_float64(tmp_path):
    plan = lambda: AdamLBFGS(lr=1e-2, switch_step=2, max_iter=3, lbfgs_dtype="float64")  # noqa: E731
    whole, *_ = fit(tmp_path / "whole", plan=plan(), max_steps=6)
    fit(tmp_path / "first", plan=plan(), max_steps=4)
    resumed, *_ = fit(tmp_path / "second", plan=plan(), max_steps=6, resume=tmp_path / "first")
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert b.dtype == torch.float64 and torch.equal(a, b)


def _quadratic(n=6, seed=0):
    """½ xᵀAx − bᵀx with eigenvalues from 1 to 1e4, its minimiser A⁻¹b, and a parameter at 0."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(0, 4, n, dtype=torch.float64)) @ q.T
    b = torch.randn(n, generator=g, dtype=torch.float64)
    return a, b, torch.linalg.solve(a, b), torch.nn.Parameter(torch.zeros(n, dtype=torch.float64))


@pytest.mark.parametrize("self_scaling", [False, True])
def test_bfgs_keeps_a_symmetric_positive_definite_secant_matrix(self_scaling):
    a, b, x_star, x = _quadratic()
    opt = BFGS([x], max_iter=1, max_eval=25, tolerance_grad=1e-12, tolerance_change=0,
               self_scaling=self_scaling)  # one iteration per step()

    def closure():
        opt.zero_grad()
        loss = 0.5 * x @ a @ x - b @ x
        loss.backward()
        return loss

    visited = [x.detach().clone()]
    for _ in range(100):
        opt.step(closure)  # updates H with the step between the last two points, then steps on
        visited.append(x.detach().clone())
        H = opt.state[x]["H"]
        if H is None:
            continue
        assert (H - H.T).abs().max() <= 1e-12 * H.abs().max()
        assert torch.linalg.eigvalsh(H).min() > 0
        # The secant condition of the newest pair: H y = s, with y = A s on a quadratic (checked
        # while the steps are long enough for the gradient differences to carry 8 digits).
        s = visited[-2] - visited[-3]
        if s @ a @ s > 1e-6:
            assert (H @ (a @ s) - s).norm() <= 1e-8 * s.norm()
        if torch.equal(visited[-1], visited[-2]):
            break
    # 1e-6: the loss resolves changes of about 1e-13 (terms of 1e3), so along A's smallest
    # eigenvalue (1) no step shorter than about 3e-7 can be seen to lower it.
    assert (x.detach() - x_star).norm() <= 1e-6 * x_star.norm()


def _iterations_to_solve(self_scaling, scale=1.0, tolerance_grad=1e-12):
    """BFGS iterations (one per step(), at most 199) until ``scale`` times :func:`_quadratic` is
    solved to 1e-6, and whether it was."""
    a, b, x_star, x = _quadratic()
    opt = BFGS([x], max_iter=1, max_eval=25, tolerance_grad=tolerance_grad, tolerance_change=0,
               self_scaling=self_scaling)

    def closure():
        opt.zero_grad()
        loss = scale * (0.5 * x @ a @ x - b @ x)
        loss.backward()
        return loss

    for iteration in range(1, 200):
        opt.step(closure)
        if (x.detach() - x_star).norm() <= 1e-6 * x_star.norm():
            return iteration, True
    return iteration, False


def test_self_scaling_pays_off_on_an_ill_conditioned_quadratic():
    # Condition number 1e4, H₀ scaled from the first pair: plain BFGS needs many iterations to
    # correct the scale of H, the self-scaling update far fewer (39 and 15 when written).
    iterations = {self_scaling: _iterations_to_solve(self_scaling)[0] for self_scaling in (False, True)}
    assert iterations[True] < 0.6 * iterations[False]


@pytest.mark.parametrize("self_scaling", [False, True])
def test_bfgs_converges_alike_on_a_loss_scaled_down(self_scaling):
    # A PINN's loss ends near 1e-8 to 1e-10, where yᵀs falls far below any fixed threshold: with
    # the test yᵀs > 1e-10 (torch's L-BFGS has it) every pair was skipped and H froze. The
    # curvature test is relative, so a loss scaled by 2⁻⁴⁰ (exactly, ~1e-12) converges too, about
    # as fast (with the scaling 15 and 24 iterations when written: the first step, t = 1/|g|₁
    # capped at 1, is not scale-invariant).
    iterations = {}
    for scale in (1.0, 2.0**-40):
        iterations[scale], solved = _iterations_to_solve(self_scaling, scale, tolerance_grad=0)
        assert solved, f"scale {scale}: no convergence"
    assert iterations[2.0**-40] <= 2 * iterations[1.0]


@pytest.mark.parametrize("quasi_newton", ["bfgs", "ssbfgs"])
def test_bfgs_minimises_rosenbrock(quasi_newton):
    x = torch.nn.Parameter(torch.full((8,), -1.0, dtype=torch.float64))
    opt = AdamLBFGS(switch_step=0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                    quasi_newton=quasi_newton).build("lbfgs", [x])
    assert isinstance(opt, BFGS) and opt.self_scaling == (quasi_newton == "ssbfgs")

    def closure():
        opt.zero_grad()
        loss = ((1 - x[:-1]) ** 2).sum() + 100 * ((x[1:] - x[:-1] ** 2) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert (x.detach() - 1).abs().max() < 1e-6


@pytest.mark.parametrize("self_scaling", [False, True])
def test_bfgs_with_one_iteration_per_step_keeps_making_progress(self_scaling):
    # max_iter=1 leaves no evaluations in the step's budget for the line search; it still gets
    # some, so steps do not end at t = 0 from some step on (they did, at an error of 1e-2).
    torch.manual_seed(0)
    q = torch.randn(6, 6, dtype=torch.float64)
    matrix, b = q @ q.T + 0.5 * torch.eye(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    x = torch.nn.Parameter(torch.zeros(6, dtype=torch.float64))
    opt = BFGS([x], max_iter=1, self_scaling=self_scaling, tolerance_grad=1e-14, tolerance_change=0)

    def closure():
        opt.zero_grad()
        loss = 0.5 * x @ matrix @ x - b @ x
        loss.backward()
        return loss

    for _ in range(40):
        opt.step(closure)
    assert (x.detach() - torch.linalg.solve(matrix, b)).norm() < 1e-6  # round-off of the loss ends it near 1e-8


def test_bfgs_settings_are_checked(monkeypatch):
    with pytest.raises(ConfigError, match="optimizer.quasi_newton"):
        AdamLBFGS(quasi_newton="newton")
    monkeypatch.setattr(optim, "BFGS_MAX_BYTES", 1000)  # 12 parameters: 1,152 bytes in float64
    with pytest.raises(ConfigError, match="quasi_newton=lbfgs"):
        BFGS([torch.zeros(12, dtype=torch.float64, requires_grad=True)])
    BFGS([torch.zeros(11, dtype=torch.float64, requires_grad=True)])  # 968 bytes


def test_a_bfgs_matrix_too_large_is_refused_before_training(tmp_path, monkeypatch):
    # The 8 × 2 MLP below has 105 parameters: 88,200 bytes in float64, 44,100 in float32.
    monkeypatch.setattr(optim, "BFGS_MAX_BYTES", 50_000)
    fit(tmp_path / "float32", plan=AdamLBFGS(switch_step=3, quasi_newton="ssbfgs"))
    with pytest.raises(ConfigError, match="n = 105 parameters"):
        fit(tmp_path / "float64", plan=AdamLBFGS(switch_step=3, quasi_newton="ssbfgs", lbfgs_dtype="float64"))
    assert not (tmp_path / "float64" / "checkpoints").exists()  # refused before the first step


# --------------------------------------------------------------------------- loss balancing


def _terms_and_params(pde=None):
    torch.manual_seed(1)
    pde = pde or Poisson(dim=2)
    model = MLP(pde.dim, pde.n_outputs, width=8, depth=2).double()
    points = SobolSampler(n_interior=64, n_boundary=32).sample(pde.domain, torch.Generator().manual_seed(0))
    return pde, model, points, list(model.parameters())


def test_fixed_weights_multiply_only_where_they_are_not_one(float64):
    """The fixed scheme's total is Σ w_k L_k; a weight of 1 adds its term as it is (no
    multiplication: fewer kernels in a captured step), and the gradient is the same."""
    pde, model, points, params = _terms_and_params()
    terms = pde.losses(model, points, AutogradEngine())
    pde_loss, boundary = terms["pde"], terms["boundary"]
    total = LossBalance().combine(terms, {})
    assert total.item() == (pde_loss + boundary).item()
    # one addition of the terms themselves: no product by 1, and no sum started from 0
    assert [node for node, _ in total.grad_fn.next_functions] == [pde_loss.grad_fn, boundary.grad_fn]
    weighted = LossBalance().combine(terms, {"boundary": 10.0})
    assert weighted.item() == (pde_loss + 10.0 * boundary).item()
    grads = torch.autograd.grad(weighted, params, retain_graph=True, allow_unused=True)
    expected = torch.autograd.grad(pde_loss + 10.0 * boundary, params, allow_unused=True)
    for g, e in zip(grads, expected):
        assert (g is None and e is None) or torch.equal(g, e)
    assert LossBalance().combine({"pde": pde_loss}, {}) is pde_loss  # one term: the term itself


def test_grad_norm_weights_follow_the_formula(float64):
    pde, model, points, params = _terms_and_params()
    balance = LossBalance(weighting="grad_norm", momentum=0.0)
    terms = pde.losses(model, points, AutogradEngine())
    balance.combine(terms, {})
    balance.update(terms, params, None)
    def norm(value):  # the Laplacian does not depend on the output bias: allow unused parameters
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        return torch.cat([g.flatten() for g in grads if g is not None]).norm().item()

    norms = {k: norm(v) for k, v in terms.items()}
    total = sum(norms.values())
    assert balance.weights() == pytest.approx({k: total / (n + 1e-5 * total) for k, n in norms.items()}, rel=1e-12)
    smoothed = LossBalance(weighting="grad_norm", momentum=0.9)
    smoothed.combine(terms, {})
    smoothed.update(terms, params, None)
    assert smoothed.weights() == pytest.approx({k: 0.9 + 0.1 * total / (n + 1e-5 * total) for k, n in norms.items()},
                                               rel=1e-12)


@pytest.mark.parametrize("pde", [Poisson(dim=2), Kovasznay()], ids=["scalar residuals", "vector residuals"])
def test_ntk_weights_follow_the_formula(float64, pde):
    # The NTK trace of a term is the mean over the points and over the residual's components, as
    # its loss is their mean square: for Kovasznay's two-component momentum residual,
    # Σ_c ‖∇θ r_c‖² / 2, not ‖∇θ Σ_c r_c‖².
    pde, model, points, params = _terms_and_params(pde)
    balance = LossBalance(weighting="ntk", momentum=0.0, ntk_points=4)
    engine = AutogradEngine()
    terms = pde.losses(model, points, engine)
    balance.combine(terms, {})
    balance.update(terms, params, lambda: (pde.residuals(model, points, engine), {}),
                   generator=torch.Generator().manual_seed(7))
    residuals = pde.residuals(model, points, engine)
    traces, draw = {}, torch.Generator().manual_seed(7)
    for name in terms:
        r = residuals[name]
        picked = torch.randperm(len(r), generator=draw)[:4].tolist()
        traces[name] = sum(sum(g.square().sum().item()
                               for g in torch.autograd.grad(r[i, c], params, retain_graph=True, allow_unused=True)
                               if g is not None) for i in picked for c in range(r.shape[1])) / (4 * r.shape[1])
    total = sum(traces.values())
    assert balance.weights() == pytest.approx({k: total / (t + 1e-5 * total) for k, t in traces.items()}, rel=1e-10)


def test_ntk_weights_do_not_change_with_how_a_loss_is_split_into_components(float64):
    # The same loss from a residual written as one column or as two equal ones: the same weights.
    pde, model, points, params = _terms_and_params()
    engine, found = AutogradEngine(), []
    for columns in (1, 2):
        residuals = {k: v.repeat(1, columns) if k == "pde" else v for k, v in pde.residuals(model, points, engine).items()}
        balance = LossBalance(weighting="ntk", momentum=0.0, ntk_points=4)
        terms = balance.term_losses(residuals, points, pde)
        balance.combine(terms, {})
        balance.update(terms, params, lambda: (residuals, {}), generator=torch.Generator().manual_seed(7))
        found.append((terms["pde"].item(), balance.weights()))
    assert found[0][0] == pytest.approx(found[1][0], rel=1e-14)
    assert found[0][1] == pytest.approx(found[1][1], rel=1e-12)


def test_a_term_that_holds_up_to_round_off_gets_a_bounded_weight(float64):
    # Its gradient is round-off too: the plain ratio would weigh that noise like the other terms.
    pde, model, points, params = _terms_and_params()
    balance = LossBalance(weighting="grad_norm", momentum=0.0)
    terms = pde.losses(model, points, AutogradEngine())
    terms["round_off"] = 1e-30 * sum(p.sum() for p in params) ** 2
    balance.combine(terms, {})
    balance.update(terms, params, None)
    weights = balance.weights()
    assert 0.99e5 < weights["round_off"] <= 1e5 and weights["pde"] < 1e5

def test_a_term_of_size_zero_keeps_its_weight(float64):
    pde, model, points, params = _terms_and_params()
    balance = LossBalance(weighting="grad_norm", momentum=0.0)
    terms = pde.losses(model, points, AutogradEngine())
    terms["constant"] = torch.tensor(3.0, dtype=torch.float64)  # no gradient: size zero
    balance.combine(terms, {})
    balance.update(terms, params, None)
    weights = balance.weights()
    assert weights["constant"] == 1.0 and all(math.isfinite(w) for w in weights.values())


def test_a_non_finite_gradient_norm_leaves_the_weights_as_they_were(float64):
    pde, model, points, params = _terms_and_params()
    balance = LossBalance(weighting="grad_norm", momentum=0.5)
    terms = pde.losses(model, points, AutogradEngine())
    balance.combine(terms, {})
    assert balance.update(terms, params, None)
    before = balance.weights()
    terms["pde"] = terms["pde"] * torch.tensor(float("nan"), dtype=torch.float64)  # a diverged term
    assert not balance.update(terms, params, None)
    assert balance.weights() == before  # not NaN for good


def test_weights_are_logged_and_checkpointed(tmp_path):
    logger = Recorder()
    balance = LossBalance(weighting="grad_norm", update_every=2)
    fit(tmp_path / "a", balance=balance, logger=logger)
    assert {"weights/pde", "weights/boundary"} <= logger.scalars.keys()
    assert balance.weights()["pde"] != 1.0
    restored = LossBalance(weighting="grad_norm", update_every=2)
    restored.load(torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["balance"], "cpu")
    assert restored.weights() == balance.weights()


def test_self_adaptive_weights_rise_by_ascent_and_refuse_resampling(tmp_path):
    balance, logger = LossBalance(weighting="self_adaptive", sa_lr=1e-2), Recorder()
    _, pde, trainer, _ = fit(tmp_path, balance=balance, max_steps=3, logger=logger)
    # logged: each term's mean point weight (the scheme leaves the terms' own weights at one)
    assert "weights/pde_points_mean" in logger.scalars and "weights/pde" not in logger.scalars
    weights = balance.point_weights["pde"].detach()
    # Ascent on λ² r² raises every weight; Adam's normalised steps move each by about sa_lr per
    # step whatever the size of its residual, so three steps raise each by about 3e-2.
    assert weights.shape == (32,) and (weights > 1).all() and (weights < 1 + 3e-2 + 1e-3).all()
    with pytest.raises(ConfigError, match="resample_every=0"):
        fit(tmp_path / "b", balance=LossBalance(weighting="self_adaptive"), resample_every=2)


@pytest.mark.parametrize("options", [{}, {"weighting": "self_adaptive", "sa_lr": 0.5}, {"causal": True},
                                     {"growth_rate": 2.0}], ids=["fixed", "self_adaptive", "causal", "growth"])
def test_the_plain_mean_squares_are_reported_beside_the_weighted_terms(tmp_path, options):
    from pinn.pdes import Heat

    logger, pde = Recorder(), Heat()
    model, _, trainer, metrics = fit(tmp_path, pde=pde, balance=LossBalance(**options), logger=logger, max_steps=4)
    points = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["points"]
    residuals = pde.residuals(model, points, AutogradEngine())
    for name, r in residuals.items():
        plain = r.detach().square().mean().item()
        assert metrics[f"mse_{name}"] == pytest.approx(plain, rel=1e-5)
        if options and name == "pde":  # weighted: the term the optimizer sees is not the plain one
            assert metrics[f"loss_{name}"] != pytest.approx(plain, rel=1e-2)
            assert f"mse/{name}" in logger.scalars
        elif not options:
            assert metrics[f"loss_{name}"] == metrics[f"mse_{name}"]


@pytest.mark.parametrize("weighting", ["grad_norm", "ntk", "self_adaptive"])
def test_weights_updated_at_adam_steps_are_refused_without_any(tmp_path, weighting):
    for plan in (LBFGS(), AdamLBFGS(switch_step=0)):
        with pytest.raises(ConfigError, match=f"loss.weighting={weighting} updates its weights at Adam steps"):
            fit(tmp_path, balance=LossBalance(weighting=weighting), plan=plan)


def test_a_resume_with_weights_under_an_lbfgs_only_plan_warns(tmp_path, caplog):
    # runs trained so before the refusal existed resume; their weights stay 1, as they did
    fit(tmp_path, plan=LBFGS(max_iter=2), max_steps=1)
    with caplog.at_level(logging.WARNING, logger="pinn"):
        fit(tmp_path, plan=LBFGS(max_iter=2), balance=LossBalance(weighting="grad_norm"), resume=tmp_path, max_steps=2)
    assert "updates its weights at Adam steps" in caplog.text


def test_self_adaptive_run_resumes_bitwise(tmp_path, float64):
    # The point weights and their ascent optimizer's moments come back from the checkpoint.
    whole, *_ = fit(tmp_path / "whole", balance=LossBalance(weighting="self_adaptive"), max_steps=8, dtype=torch.float64)
    fit(tmp_path / "first", balance=LossBalance(weighting="self_adaptive"), max_steps=4, dtype=torch.float64)
    balance = LossBalance(weighting="self_adaptive")
    resumed, *_ = fit(tmp_path / "second", balance=balance, max_steps=8, dtype=torch.float64, resume=tmp_path / "first")
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert int(balance._ascent.state_dict()["state"][0]["step"]) == 8


def test_causal_weights_follow_the_formula():
    domain = Heat().domain
    balance = LossBalance(causal=True, causal_chunks=4, causal_tolerance=2.0)
    t = torch.tensor([0.1, 0.2, 0.3, 0.6, 0.9, 0.95], dtype=torch.float64)
    square = torch.tensor([1.0, 3.0, 0.5, 0.25, 4.0, 2.0], dtype=torch.float64)
    means = torch.tensor([2.0, 0.5, 0.25, 3.0], dtype=torch.float64)  # chunks [0, .25), [.25, .5), [.5, .75), [.75, 1]
    w = torch.exp(-2.0 * torch.tensor([0.0, 2.0, 2.5, 2.75], dtype=torch.float64))
    assert balance._causal({"pde": (square, None)}, t, domain)["pde"].item() == pytest.approx(
        (w * means).mean().item(), rel=1e-14)
    assert float(balance.logs["causal/min_weight"]) == pytest.approx(w.min().item())


def test_a_systems_equations_share_one_set_of_causal_weights():
    # The paper's residual loss is the whole equation's: a later time waits for every term to be
    # resolved before it, and the weights are those of the terms' summed chunk means.
    domain = Heat().domain
    balance = LossBalance(causal=True, causal_chunks=4, causal_tolerance=2.0)
    t = torch.tensor([0.1, 0.2, 0.3, 0.6, 0.9, 0.95], dtype=torch.float64)
    resolved = torch.zeros(6, dtype=torch.float64)  # "momentum": zero everywhere
    wrong = torch.tensor([1.0, 3.0, 0.5, 0.25, 4.0, 2.0], dtype=torch.float64)  # "continuity"
    losses = balance._causal({"momentum": (resolved, None), "continuity": (wrong, None)}, t, domain)
    w = torch.exp(-2.0 * torch.tensor([0.0, 2.0, 2.5, 2.75], dtype=torch.float64))
    assert torch.equal(balance.chunk_weights["momentum"][0], balance.chunk_weights["continuity"][0])
    assert torch.allclose(balance.chunk_weights["momentum"][0], w, rtol=1e-14, atol=0)
    assert losses["momentum"].item() == 0.0
    assert float(balance.logs["causal/min_weight"]) == pytest.approx(w.min().item())


def test_causal_weights_stay_at_most_one_where_unbiased_chunk_means_are_negative():
    # With derivatives.unbiased each square is a product of two independent estimates, whose
    # chunk mean may be negative; it counts as zero.
    domain = Heat().domain
    balance = LossBalance(causal=True, causal_chunks=4, causal_tolerance=100.0)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=torch.float64)
    products = torch.tensor([-0.5, 0.01, -0.2, 0.3], dtype=torch.float64)
    balance._causal({"pde": (products, None)}, t, domain)
    w = balance.chunk_weights["pde"][0]
    assert torch.allclose(w, torch.exp(-100.0 * torch.tensor([0.0, 0.0, 0.01, 0.01], dtype=torch.float64)))
    assert w.max().item() == 1.0


def test_growth_weights_follow_the_formula_with_and_without_causality():
    domain = Heat().domain  # t in [0, 1]
    t = torch.tensor([0.1, 0.2, 0.3, 0.6, 0.9, 0.95], dtype=torch.float64)
    square = torch.tensor([1.0, 3.0, 0.5, 0.25, 4.0, 2.0], dtype=torch.float64)
    growth = torch.exp(2 * 1.5 * (1 - t))
    causal = LossBalance(causal=True, causal_chunks=4, causal_tolerance=2.0, growth_rate=1.5)
    # The causal weights come from the unweighted chunk means (as in the test above) ...
    w = torch.exp(-2.0 * torch.tensor([0.0, 2.0, 2.5, 2.75], dtype=torch.float64))
    # ... and multiply the chunk means of growth * square.
    weighted = growth * square
    means = torch.stack([weighted[:2].mean(), weighted[2], weighted[3], weighted[4:].mean()])
    assert causal._causal({"pde": (square, causal._growth(t, domain))}, t, domain)["pde"].item() == pytest.approx(
        (w * means).mean().item(), rel=1e-14)
    plain = LossBalance(growth_rate=1.5)
    assert plain.needs_residuals
    r = square.sqrt()[:, None]
    terms = plain.term_losses({"pde": r}, {"interior": torch.stack([t, t], 1)}, Heat())
    assert terms["pde"].item() == pytest.approx(weighted.mean().item(), rel=1e-14)


def test_growth_weighting_trains_and_is_refused_without_time(tmp_path):
    plain, *_ = fit(tmp_path / "plain", pde=Heat(), balance=LossBalance(causal=True), max_steps=4)
    grown, *_, metrics = fit(tmp_path / "heat", pde=Heat(), balance=LossBalance(causal=True, growth_rate=2.0),
                             max_steps=4)
    assert math.isfinite(metrics["loss"])
    # The weighting reaches the loss, and so the training.
    assert not all(torch.equal(a, b) for a, b in zip(plain.parameters(), grown.parameters()))
    with pytest.raises(ConfigError, match="loss.growth_rate"):
        fit(tmp_path / "poisson", balance=LossBalance(growth_rate=1.0))
    with pytest.raises(ConfigError, match=r"loss.growth_rate <= 30"):  # e^(2 λ T) r² would overflow float32
        fit(tmp_path / "overflow", pde=Heat(), balance=LossBalance(growth_rate=31.0))
    fit(tmp_path / "largest", pde=Heat(), balance=LossBalance(growth_rate=30.0), max_steps=1)
    with pytest.raises(ConfigError, match=r"use loss.growth_rate <= 4.285$"):  # 60 / 14, rounded down
        fit(tmp_path / "long", pde=Heat(t_end=7.0), balance=LossBalance(growth_rate=5.0))
    fit(tmp_path / "suggested", pde=Heat(t_end=7.0), balance=LossBalance(growth_rate=4.285), max_steps=1)


def test_a_quasi_newton_step_keeps_the_causal_weights_of_its_first_evaluation(tmp_path, float64):
    # Each line search evaluates one function: weights recomputed at each trial point would
    # change it between the trials, and its gradient would not be the function's.
    steps = []  # per step, the causal weights of each of its line search's evaluations

    class Marks(NullLogger):
        def evaluation_scalar(self, tag, value, step):  # after each evaluation of the line search
            steps[-1].append(trainer.balance.chunk_weights["pde"][0].clone())

        def scalar(self, tag, value, step):
            if tag == "loss/total":
                steps.append([])

    torch.manual_seed(0)
    trainer = Trainer(max_steps=3, eval_every=100, log_every=1, checkpoint_every=0, n_test=64, progress=False)
    steps.append([])
    trainer.fit(pde=Heat(), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(), optimizer=LBFGS(max_iter=6),
                sampler=UniformSampler(n_interior=64, n_boundary=8, n_initial=8), generator=torch.Generator().manual_seed(0),
                run_dir=tmp_path, dtype=torch.float64, logger=Marks(),
                balance=LossBalance(causal=True, causal_chunks=4, causal_tolerance=10.0))
    steps = [s for s in steps if s]
    assert len(steps) == 3 and all(len(s) > 1 for s in steps)
    for evaluations in steps:
        assert all(torch.equal(w, evaluations[0]) for w in evaluations)
    assert not torch.equal(steps[0][0], steps[1][0]) and steps[0][0].min() < 1  # recomputed at each step


def test_causal_training_runs_and_is_refused_without_time(tmp_path):
    logger = Recorder()
    fit(tmp_path / "heat", pde=Heat(), balance=LossBalance(causal=True), logger=logger)
    assert 0 < logger.scalars["causal/min_weight"][-1][1] <= 1
    with pytest.raises(ConfigError, match="time-dependent"):
        fit(tmp_path / "poisson", balance=LossBalance(causal=True))


@pytest.mark.parametrize("kwargs,match", [
    ({"weighting": "softmax"}, "loss.weighting"), ({"momentum": 1.0}, "loss.momentum"),
    ({"causal_chunks": 0}, "loss.causal_chunks"), ({"update_every": 0}, "loss.update_every"),
    ({"growth_rate": -1.0}, "loss.growth_rate"),
])
def test_bad_balance_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LossBalance(**kwargs)


def test_hparams_hold_an_inverse_problems_recovered_coefficient(tmp_path):
    recorded = {}

    class Recording(NullLogger):
        def hparams(self, hparams, metrics, step=0):
            recorded.update(metrics)

    _, _, _, metrics = fit(tmp_path, pde=PoissonInverse(kappa=2.0, kappa_init=1.0), logger=Recording())
    assert metrics["kappa"] != 1.0  # trained
    assert recorded == {f"final/{k}": metrics[k] for k in ("rel_l2", "loss", "ms_per_step", "kappa", "kappa_rel_error")}


# --------------------------------------------------------------------------- adaptive sampling


def test_rar_adds_the_candidates_with_the_largest_residual():
    sampler = RARSampler(n_interior=8, n_boundary=4, n_candidates=50, n_add=3)
    candidates = torch.rand(50, 2, dtype=torch.float64)
    scores = torch.rand(50, dtype=torch.float64)
    current = {"interior": torch.zeros(8, 2, dtype=torch.float64), "boundary": torch.ones(4, 2, dtype=torch.float64)}
    points = sampler.adapt(Poisson().domain, torch.Generator(), ("interior", "boundary"), current, candidates, scores)
    assert torch.equal(points["interior"][:8], current["interior"]) and torch.equal(points["boundary"], current["boundary"])
    assert torch.equal(points["interior"][8:], candidates[scores.argsort(descending=True)[:3]])


def test_rad_concentrates_points_where_the_residual_is_large():
    sampler = RADSampler(n_interior=200, n_boundary=4, n_candidates=2000, k=2.0, c=0.0)
    candidates = torch.rand(2000, 2, dtype=torch.float64) * 2 - 1
    scores = torch.exp(-50 * candidates.square().sum(dim=1))  # a residual bump at the origin
    points = sampler.adapt(Poisson().domain, torch.Generator().manual_seed(0), ("interior", "boundary"),
                           {}, candidates, scores)
    assert points["interior"].shape == (200, 2) and points["boundary"].shape == (4, 2)
    assert points["interior"].norm(dim=1).median() < 0.5 * candidates.norm(dim=1).median()
    with pytest.raises(ConfigError, match="n_candidates"):
        RADSampler(n_interior=100, n_candidates=50)


def test_rad_draws_by_the_residuals_ratios_where_their_kth_power_leaves_float64s_range():
    # p depends on ε only through ratios: residuals scaled by 2^10 (whose 120th power overflows)
    # or by 2^-10 (underflows) must give the same draw as unscaled ones.
    sampler = RADSampler(n_interior=50, n_boundary=4, n_candidates=500, k=120.0, c=0.1)
    candidates = torch.rand(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    scores = torch.rand(500, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    scores[0] = 1.0  # the largest, so that unscaled, (ε / max ε)^k is ε^k bit for bit
    draws = [sampler.adapt(Poisson().domain, torch.Generator().manual_seed(2), ("interior", "boundary"), {},
                           candidates, scores * 2.0 ** (2 * scale))["interior"] for scale in (0, 10, -10)]
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])
    assert (draws[0] == candidates[0]).all(dim=1).any()  # k = 120 and c = 0.1: the largest is drawn


def test_rad_without_a_floor_fills_up_at_random_where_few_candidates_have_a_residual():
    # c = 0 and 5 candidates of nonzero residual for 10 points: the other 5 are drawn at random
    # among the rest, not the same block of candidates every time.
    sampler = RADSampler(n_interior=10, n_boundary=4, n_candidates=100, k=1.0, c=0.0)
    candidates = torch.arange(200, dtype=torch.float64).reshape(100, 2) / 200
    scores = torch.zeros(100)
    scores[:5] = 1.0
    fillers = []
    for seed in range(3):
        points = sampler.adapt(Poisson().domain, torch.Generator().manual_seed(seed), ("interior", "boundary"),
                               {}, candidates, scores)
        chosen = sorted(round(float(i)) for i in points["interior"][:, 0] * 100)
        assert chosen[:5] == [0, 1, 2, 3, 4]
        fillers.append(chosen[5:])
    assert len({tuple(f) for f in fillers}) == 3


def test_rar_keeps_float32_points_on_a_boundary_float32_cannot_represent(tmp_path):
    # x = 0.3 rounds to a float32 just outside [0, 0.3]: the kept boundary points must not be
    # re-checked after rounding (only the new float64 candidates are).
    sampler = RARSampler(n_interior=16, n_boundary=32, n_candidates=64, n_add=4)
    _, _, trainer, metrics = fit(tmp_path, pde=Poisson(lo=0.0, hi=0.3), sampler=sampler, resample_every=2, max_steps=5)
    assert math.isfinite(metrics["loss"])


@pytest.mark.parametrize("sampler", [RARSampler(n_interior=16, n_boundary=8, n_initial=8, n_candidates=64, n_add=4),
                                     RADSampler(n_interior=16, n_boundary=8, n_initial=8, n_candidates=64)])
def test_adaptive_samplers_train_and_need_resampling(sampler, tmp_path):
    _, _, _, metrics = fit(tmp_path / "a", pde=Burgers(), sampler=sampler, resample_every=2, max_steps=5)
    assert math.isfinite(metrics["loss"])
    with pytest.raises(ConfigError, match="resample_every > 0"):
        fit(tmp_path / "b", pde=Burgers(), sampler=sampler)


def test_ntk_weighs_each_point_as_the_loss_does(float64):
    # With growth and causal weights, the loss's kernel is Σ_i w_i ‖∇θ r_i‖² / N for the weight
    # w_i a point's square carries in it; the plain trace would balance a loss it does not train.
    pde = Heat()
    torch.manual_seed(1)
    model = MLP(pde.dim, 1, width=8, depth=2).double()
    points = SobolSampler(n_interior=64, n_boundary=32, n_initial=32).sample(pde.domain, torch.Generator().manual_seed(0),
                                                                              ("interior", "boundary", "initial"))
    params, engine = list(model.parameters()), AutogradEngine()
    balanced = []  # the weights under each setting
    for settings in ({}, {"growth_rate": 1.0}, {"growth_rate": 1.0, "causal": True, "causal_chunks": 4,
                                                 "causal_tolerance": 10.0}):
        balance = LossBalance(weighting="ntk", momentum=0.0, ntk_points=64, **settings)
        residuals = pde.residuals(model, points, engine)
        terms = balance.term_losses(residuals, points, pde)
        balance.combine(terms, {})
        t = points["interior"][:, -1]
        in_loss = {name: balance.weight_in_loss(name, t, pde.domain) for name in residuals}
        balance.update(terms, params, lambda: (residuals, in_loss))
        r = residuals["pde"]
        weight = torch.ones(len(r), dtype=torch.float64)
        if settings:
            weight = torch.exp(2 * (pde.domain.t1 - t))
        if settings.get("causal"):  # the causal mean's weight of each point, relative to the plain mean's 1 / N
            chunk = (t * 4).long().clamp(0, 3)
            square = r[:, 0].detach().square()
            means = torch.stack([square[chunk == c].mean() for c in range(4)])
            w = torch.exp(-10.0 * (torch.cumsum(means, 0) - means))
            counts = torch.bincount(chunk, minlength=4).double()
            weight = weight * (w * len(r) / (counts * 4))[chunk]
            assert terms["pde"].item() == pytest.approx((weight * square).mean().item(), rel=1e-12)  # the loss itself
        trace = sum(weight[i].item() * sum(g.square().sum().item() for g in
                                           torch.autograd.grad(r[i, 0], params, retain_graph=True, allow_unused=True)
                                           if g is not None) for i in range(len(r))) / len(r)
        balanced.append(balance.weights())
        others = [name for name in terms if name != "pde"]
        # weights are T / (K_k + 1e-5 T) for T = Σ_j K_j: 1 / w_k - 1e-5 = K_k / T, whose ratio
        # between two terms is that of their traces
        weights = balance.weights()
        ratio = (1 / weights["pde"] - 1e-5) / (1 / weights[others[0]] - 1e-5)
        other = residuals[others[0]]
        other_trace = sum(sum(g.square().sum().item() for g in
                              torch.autograd.grad(other[i, 0], params, retain_graph=True, allow_unused=True)
                              if g is not None) for i in range(len(other))) / len(other)
        assert ratio == pytest.approx(trace / other_trace, rel=1e-10)
    assert balanced[0] != balanced[1] != balanced[2]  # growth and causal weights change the balance


def test_the_ntk_points_are_drawn_over_the_whole_set_and_afresh(tmp_path):
    # A strided subsequence of Sobol points bunches up (15 of 16 boundary times within 0.38-0.41
    # at 512 points); a draw covers the set, and each update draws again.
    seen = []

    class Watched(Heat):
        def residuals(self, model, points, engine):
            if len(points["boundary"]) == 16:  # the update's few points
                seen.append(points["boundary"][:, -1].clone())
            return super().residuals(model, points, engine)

    trainer = Trainer(max_steps=3, eval_every=3, checkpoint_every=0, n_test=50, progress=False)
    trainer.fit(pde=Watched(), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
                sampler=SobolSampler(n_interior=128, n_boundary=512, n_initial=64), optimizer=Adam(),
                balance=LossBalance(weighting="ntk", update_every=1, ntk_points=16),
                generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64)
    assert len(seen) == 3
    assert all(t.max() - t.min() > 0.5 for t in seen)
    assert not torch.equal(seen[0], seen[1])


def test_ntk_with_a_pde_of_losses_only_is_refused(tmp_path):
    class LossesOnly(Poisson):
        residuals = PDE.residuals

        def losses(self, model, points, engine):
            return {"pde": model(points["interior"]).square().mean()}

    with pytest.raises(ConfigError, match="loss.weighting=ntk measures each term's kernel on pointwise residuals, "
                                          "and LossesOnly defines only losses()"):
        Trainer(max_steps=2, n_test=50, progress=False).fit(
            pde=LossesOnly(dim=2), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
            sampler=UniformSampler(n_interior=32, n_boundary=8), optimizer=Adam(),
            balance=LossBalance(weighting="ntk"), generator=torch.Generator().manual_seed(0), run_dir=tmp_path,
            dtype=torch.float64)


def test_causal_weights_read_the_plain_mean_square(float64):
    # Neither self-adaptive point weights nor the number of a residual's components change
    # what causal_tolerance means: the chunk losses are plain mean squares.
    pde = Heat()
    points = SobolSampler(n_interior=64, n_boundary=16, n_initial=16).sample(pde.domain, torch.Generator().manual_seed(0),
                                                                              ("interior", "boundary", "initial"))
    r = torch.linspace(0.5, 2.0, 64, dtype=torch.float64).reshape(-1, 1)
    plain = LossBalance(causal=True, causal_chunks=4, causal_tolerance=1.0)
    expected = plain.term_losses({"pde": r}, points, pde)["pde"]
    expected_min = plain.logs["causal/min_weight"].item()

    two = LossBalance(causal=True, causal_chunks=4, causal_tolerance=1.0)  # the same mean square in two columns
    assert two.term_losses({"pde": torch.cat([r, r], dim=1)}, points, pde)["pde"].item() == pytest.approx(expected.item())
    assert two.logs["causal/min_weight"].item() == pytest.approx(expected_min)

    adaptive = LossBalance(weighting="self_adaptive", causal=True, causal_chunks=4, causal_tolerance=1.0)
    adaptive.term_losses({"pde": r}, points, pde)
    with torch.no_grad():
        adaptive.point_weights["pde"].fill_(3.0)
    weighted = adaptive.term_losses({"pde": r}, points, pde)["pde"]
    assert adaptive.logs["causal/min_weight"].item() == pytest.approx(expected_min)
    assert weighted.item() == pytest.approx(9 * expected.item())


@pytest.mark.parametrize("quasi_newton", ["lbfgs", "bfgs", "ssbfgs"])
@pytest.mark.parametrize("max_iter", [2, 3])
def test_a_quasi_newton_step_makes_its_max_iter_iterations(quasi_newton, max_iter):
    # Each gets the same budget of loss evaluations (5/4 max_iter, at least 26); BFGS had
    # torch's 5/4 max_iter alone, which its first line search used up: max_iter=2 made one.
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)  # Rosenbrock's far start
    optimizer = LBFGS(max_iter=max_iter, quasi_newton=quasi_newton).build("lbfgs", [x])

    def closure():
        optimizer.zero_grad()
        loss = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        loss.backward()
        return loss

    optimizer.step(closure)
    assert optimizer.state[x]["n_iter"] == max_iter


def test_an_lbfgs_step_reports_the_loss_where_its_line_search_left_the_parameters(tmp_path):
    # With a huge first step the line search tries points whose loss is infinite and ends at
    # another: the step's loss is the loss there, not its last trial's (which ended the run as
    # diverged, with finite parameters).
    class Recording(NullLogger):
        def __init__(self):
            super().__init__()
            self.totals = {}

        def scalar(self, tag, value, step):
            if tag == "loss/total":
                self.totals[step] = value

    torch.manual_seed(0)
    logger = Recording()
    metrics = Trainer(max_steps=3, log_every=1, eval_every=3, checkpoint_every=0, n_test=50, progress=False).fit(
        pde=Poisson(dim=2), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
        sampler=UniformSampler(n_interior=64, n_boundary=16), optimizer=AdamLBFGS(lr=1e-2, switch_step=2,
                                                                                  lbfgs_lr=1e30, max_iter=3),
        generator=torch.Generator().manual_seed(0), run_dir=tmp_path, logger=logger)
    assert math.isfinite(logger.totals[3]) and logger.totals[3] == pytest.approx(metrics["loss"], rel=1e-6)


def test_a_line_search_past_the_dtypes_range_is_a_divergence(tmp_path):
    from pinn.trainer import TrainingDiverged

    torch.manual_seed(0)
    with pytest.raises(TrainingDiverged, match="the line search's step length overflowed"):
        Trainer(max_steps=4, n_test=50, progress=False).fit(
            pde=Poisson(dim=2), model=MLP(2, 1, width=50, depth=3), engine=AutogradEngine(),
            sampler=UniformSampler(n_interior=256, n_boundary=64), optimizer=LBFGS(lr=1e25),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path)


def test_bfgs_takes_curvature_pairs_too_small_to_square():
    # On 5 |x|², converging to 0, yᵀs falls below 1e-154, where ρ² = 1/(yᵀs)² overflows a double
    # (and then to a subnormal number, where ρ itself does): such pairs are skipped, not NaN.
    x = torch.nn.Parameter(torch.tensor([1.0, 0.5], dtype=torch.float64))
    optimizer = BFGS([x], max_iter=20, tolerance_grad=0, tolerance_change=0)

    def closure():
        optimizer.zero_grad()
        loss = 5 * x.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    assert torch.isfinite(x).all() and x.abs().max() < 1e-100


def test_an_adaptive_sampler_with_non_finite_residuals_ends_the_run_as_diverged(tmp_path):
    # RAD would draw by NaN weights (torch.multinomial's traceback), RAR add the NaN points
    from pinn.trainer import TrainingDiverged

    class Blowing(Poisson):
        def residuals(self, model, points, engine):
            residuals = super().residuals(model, points, engine)
            if len(points["interior"]) == 256:  # the candidates
                residuals["pde"] = residuals["pde"] * float("nan")
            return residuals

    for sampler in (RADSampler(n_interior=32, n_boundary=8, n_candidates=256),
                    RARSampler(n_interior=32, n_boundary=8, n_candidates=256, n_add=4)):
        with pytest.raises(TrainingDiverged, match=r"by step 2: the equation's residual is not finite at 256 of the "
                                                   r"256 candidate points"):
            Trainer(max_steps=4, resample_every=2, log_every=10, n_test=50, progress=False).fit(
                pde=Blowing(dim=2), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(), sampler=sampler,
                optimizer=Adam(), generator=torch.Generator().manual_seed(0), run_dir=tmp_path / type(sampler).__name__,
                dtype=torch.float64)


def test_the_sets_rad_draws_afresh_are_checked_like_the_first(tmp_path):
    from pinn.geometry import Box
    from pinn.pdes.base import PDEError

    class Drifting(Box):  # its boundary points leave the box after the first draw
        calls = 0

        def boundary(self, unit):
            Drifting.calls += 1
            return super().boundary(unit) + (0.5 if Drifting.calls > 1 else 0.0)

    pde = Poisson(dim=2)
    pde.domain = Drifting([-1.0, -1.0], [1.0, 1.0])
    with pytest.raises(PDEError, match="Poisson's point set 'boundary': .* points lie outside"):
        Trainer(max_steps=4, resample_every=2, n_test=50, progress=False).fit(
            pde=pde, model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
            sampler=RADSampler(n_interior=32, n_boundary=8, n_candidates=256), optimizer=Adam(),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64)
