"""Whole-step CUDA graphs (``trainer.cuda_graph``): a replayed step computes what an eager step
computes, through resampling, loss-weight updates, hard constraints, a phase switch to L-BFGS and
a resume; and what cannot be captured is refused (``true``) or trained eagerly (``auto``).

The tests that capture need a CUDA GPU and are skipped without one; the others run anywhere.
"""

import importlib
import logging

import pytest
import torch

import train
from conftest import TINY
from pinn.balancing import LossBalance
from pinn.cuda_graph import WARMUP_STEPS, blockers, check_mode, copy_points, prepare_adam
from pinn.derivatives import AutogradEngine, ForwardEngine, StochasticEngine
from pinn.errors import ConfigError
from pinn.models import MLP
from pinn.optim import Adam, AdamLBFGS
from pinn.pdes import Heat, Poisson
from pinn.sampling import RADSampler, RARSampler, SobolSampler, UniformSampler
from pinn.trainer import Trainer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def fit(run_dir, *, cuda_graph, pde=None, engine=None, plan=None, balance=None, sampler=None, max_steps=12,
        resample_every=0, resume=None, device="cuda", dtype=torch.float64, checkpoint_every=0, width=16):
    torch.manual_seed(0)
    pde = pde or Poisson(dim=2)
    model = MLP(pde.dim, pde.n_outputs, width=width, depth=2)
    model = pde.constrain(model)
    engine = engine or ForwardEngine()
    trainer = Trainer(max_steps=max_steps, eval_every=4, log_every=1, checkpoint_every=checkpoint_every, n_test=64,
                      image_resolution=8, progress=False, resample_every=resample_every, cuda_graph=cuda_graph)
    metrics = trainer.fit(pde=pde, model=model, engine=engine, optimizer=plan or Adam(lr=1e-2),
                          sampler=sampler or UniformSampler(n_interior=64, n_boundary=16, n_initial=16),
                          generator=torch.Generator().manual_seed(0), run_dir=run_dir, device=device, dtype=dtype,
                          balance=balance, resume=resume)
    return model, trainer, metrics


def captured(trainer) -> bool:
    return any(step.captured for step in trainer._captured_steps)


def assert_same_training(a, b, rtol=1e-10):
    (model_a, _, metrics_a), (model_b, _, metrics_b) = a, b
    for (name, p), q in zip(model_a.named_parameters(), model_b.parameters()):
        torch.testing.assert_close(p, q, rtol=rtol, atol=rtol, msg=lambda m: f"{name}: {m}")
    assert metrics_a["loss"] == pytest.approx(metrics_b["loss"], rel=rtol)


# --------------------------------------------------------------------------- anywhere


@pytest.mark.parametrize("given,expected", [("auto", "auto"), (True, True), (False, False), ("true", True), ("False", False)])
def test_modes_are_parsed(given, expected):
    assert check_mode(given) == expected


@pytest.mark.parametrize("bad", ["sometimes", 1, 0, None, 1.0, 0.0, "AUTO"])
def test_unknown_modes_are_refused(bad):
    with pytest.raises(ConfigError, match="trainer.cuda_graph must be auto, true or false"):
        Trainer(cuda_graph=bad)


def test_blockers_name_each_reason():
    reasons = blockers(device=torch.device("cpu"), processes=2, sampler=RARSampler(n_interior=8, n_boundary=4),
                       balance=LossBalance(weighting="self_adaptive"), engine=AutogradEngine())
    text = " ".join(reasons)
    assert len(reasons) == 5
    for words in ("CUDA GPU", "derivatives.engine=autograd", "multi-process", "sampler=rar", "self_adaptive"):
        assert words in text
    for engine in (ForwardEngine(), StochasticEngine()):
        fine = blockers(device=torch.device("cuda"), processes=1, sampler=RADSampler(n_interior=8, n_boundary=4),
                        balance=LossBalance(weighting="grad_norm", causal=True), engine=engine,
                        adam_steps=WARMUP_STEPS + 1)
        assert fine == []
    # a plan without Adam steps (L-BFGS only)
    (reason,) = blockers(device=torch.device("cuda"), processes=1, sampler=RADSampler(n_interior=8, n_boundary=4),
                         balance=LossBalance(), engine=ForwardEngine(), adam_steps=0)
    assert "this run's optimizer takes no Adam step" in reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_true_without_a_gpu_is_refused_and_auto_trains_eagerly(tmp_path):
    with pytest.raises(ConfigError, match="trainer.cuda_graph=true, but the device is cpu"):
        fit(tmp_path / "a", cuda_graph=True, device="cpu")
    auto = fit(tmp_path / "b", cuda_graph="auto", device="cpu", max_steps=4)
    off = fit(tmp_path / "c", cuda_graph=False, device="cpu", max_steps=4)
    assert_same_training(auto, off, rtol=0)


class EagerStandIn:
    """A CapturedStep that never captures: what a CPU can run in its place."""

    def __init__(self, zero_grad, on_failure=None):
        self.zero_grad, self.warmup, self.captured = zero_grad, WARMUP_STEPS, False

    def __call__(self, step):
        self.zero_grad(True)
        return step()


@pytest.mark.parametrize("mode,level", [(True, logging.WARNING), ("auto", logging.INFO)])
def test_a_phase_too_short_for_a_capture_says_so(mode, level, tmp_path, caplog, monkeypatch):
    """A capture comes after WARMUP_STEPS eager steps, so an Adam phase with no more steps than
    that runs eagerly throughout, and the log says so (louder where true was asked for)."""
    monkeypatch.setattr("pinn.trainer.blockers", lambda **kwargs: [])  # as on a GPU
    monkeypatch.setattr("pinn.trainer.CapturedStep", EagerStandIn)
    plan = AdamLBFGS(lr=1e-2, switch_step=WARMUP_STEPS, max_iter=2)
    with caplog.at_level(logging.INFO, logger="pinn"):
        fit(tmp_path / "short", cuda_graph=mode, plan=plan, max_steps=WARMUP_STEPS + 1, device="cpu")
    (record,) = [r for r in caplog.records if "a capture comes after" in r.getMessage()]
    assert record.levelno == level
    assert f"this Adam phase has {WARMUP_STEPS} step(s) left" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pinn"):  # one step more, and the capture would come
        fit(tmp_path / "long", cuda_graph=mode, plan=plan.__class__(lr=1e-2, switch_step=WARMUP_STEPS + 1, max_iter=2),
            max_steps=WARMUP_STEPS + 2, device="cpu")
    assert not [r for r in caplog.records if "a capture comes after" in r.getMessage()]


def test_resampled_points_are_copied_into_the_captured_tensors():
    static = {"interior": torch.zeros(4, 2), "boundary": torch.zeros(2, 2)}
    storage = static["interior"].data_ptr()
    copy_points(static, {"interior": torch.ones(4, 2), "boundary": torch.full((2, 2), 2.0)})
    assert static["interior"].data_ptr() == storage and static["interior"].eq(1).all() and static["boundary"].eq(2).all()
    with pytest.raises(RuntimeError, match="differ from the captured ones"):
        copy_points(static, {"interior": torch.ones(5, 2), "boundary": torch.ones(2, 2)})


def test_eager_adam_state_resumes_from_a_captured_one():
    """A checkpoint written by a captured run (step counts on the GPU, the learning rate a
    tensor) is turned back into an eager Adam's state."""
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([p], lr=torch.tensor(1e-2), capturable=False)
    p.grad = torch.ones(3)
    optimizer.step()
    optimizer.param_groups[0]["capturable"] = True
    prepare_adam(optimizer, torch.device("cpu"), captured=False)
    group = optimizer.param_groups[0]
    assert group["capturable"] is False and isinstance(group["lr"], float) and group["lr"] == pytest.approx(1e-2)
    assert optimizer.state[p]["step"].device.type == "cpu"
    optimizer.step()  # and it still steps


def test_captured_adam_takes_the_fused_update_and_steps_as_plain_adam(monkeypatch):
    """Captured steps take torch's fused Adam (two kernels a step); its updates are plain Adam's
    to round-off (the learning rate is a float32 tensor), here on the CPU, where the fused
    update runs too. Back to eager steps, it is torch's default update again."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    q = torch.nn.Parameter(p.detach().clone())
    prepared, plain = torch.optim.Adam([p], lr=1e-2), torch.optim.Adam([q], lr=1e-2)
    fused_calls = []
    adam_module = importlib.import_module("torch.optim.adam")  # the module, not the class it exports
    fused_update = adam_module._fused_adam
    monkeypatch.setattr(adam_module, "_fused_adam", lambda *a, **k: fused_calls.append(1) or fused_update(*a, **k))
    prepare_adam(prepared, torch.device("cpu"), captured=True)
    group = prepared.param_groups[0]
    assert group["fused"] is True and group["capturable"] is True and isinstance(group["lr"], torch.Tensor)
    for _ in range(5):
        g = torch.randn(4, 3, dtype=torch.float64)
        p.grad, q.grad = g.clone(), g.clone()
        prepared.step()
        plain.step()
    assert len(fused_calls) == 5  # the prepared optimizer's steps, and only those
    torch.testing.assert_close(p, q, rtol=1e-7, atol=1e-9)
    prepare_adam(prepared, torch.device("cpu"), captured=False)
    assert group["fused"] is None and group["capturable"] is False
    prepare_adam(plain, torch.device("cpu"), captured=True, fused=False)
    assert plain.param_groups[0]["fused"] is None and plain.param_groups[0]["capturable"] is True


def test_config_key_reaches_the_trainer(compose_config, tmp_path):
    cfg = compose_config([f"output_dir={tmp_path}", *TINY, "trainer.cuda_graph=false"])
    assert train._build(cfg.trainer, "trainer").cuda_graph is False
    assert train._build(compose_config([f"output_dir={tmp_path}"]).trainer, "trainer").cuda_graph == "auto"


# --------------------------------------------------------------------------- on a GPU


@pytest.fixture
def never_captured(monkeypatch):
    """Runs whose steps all stay warm-up steps: the same capturable Adam and step code, eager.
    (Capturable Adam computes its bias corrections in float32 on the device, plain Adam in
    float64 on the host, so a replay is compared with this, not with plain Adam.)"""
    def run(*args, **kwargs):
        with monkeypatch.context() as m:
            m.setattr("pinn.cuda_graph.WARMUP_STEPS", 10**9)
            return fit(*args, **kwargs)
    return run


@cuda
@pytest.mark.parametrize("engine", [ForwardEngine(), ForwardEngine(second="hessian"), ForwardEngine(one_pass=False)],
                         ids=["laplacian", "hessian", "separate-passes"])  # on a GPU, one_pass=auto: one pass
def test_replayed_steps_equal_eager_steps(engine, tmp_path, never_captured):
    graphed = fit(tmp_path / "graph", cuda_graph=True, engine=engine)
    eager = never_captured(tmp_path / "eager", cuda_graph=True, engine=engine)
    assert_same_training(graphed, eager)
    assert captured(graphed[1]) and not captured(eager[1])
    plain = fit(tmp_path / "plain", cuda_graph=False, engine=engine)  # plain Adam: its own rounding
    assert not plain[1]._graphs
    assert_same_training(graphed, plain, rtol=1e-4)


@cuda
@pytest.mark.parametrize("hard", [True, False], ids=["hard-constraint", "boundary-term"])
def test_replay_follows_resampled_points_and_hard_constraints(hard, tmp_path, never_captured):
    """Fresh points are copied into the captured tensors, and the values computed once per
    point set (the source, the boundary data, the point sets stacked for one pass, the hard
    constraint's base and scale with their derivatives: pinn.point_cache) are brought up to date
    outside the graph, in the tensors it reads."""
    kwargs = dict(pde=Poisson(dim=2, hard_constraint=hard), engine=ForwardEngine(), resample_every=2,
                  sampler=SobolSampler(n_interior=64, n_boundary=16), max_steps=14)
    graphed = fit(tmp_path / "graph", cuda_graph=True, **kwargs)
    assert captured(graphed[1])
    assert_same_training(graphed, never_captured(tmp_path / "eager", cuda_graph=True, **kwargs))


@cuda
def test_replay_with_adaptive_points_weights_and_causality(tmp_path, never_captured):
    kwargs = dict(pde=Heat(), engine=ForwardEngine(), resample_every=3, max_steps=14,
                  sampler=RADSampler(n_interior=64, n_boundary=16, n_initial=16, n_candidates=256),
                  balance=LossBalance(weighting="grad_norm", update_every=4, causal=True, causal_chunks=4))
    graphed, eager = fit(tmp_path / "graph", cuda_graph=True, **kwargs), never_captured(tmp_path / "eager", cuda_graph=True, **kwargs)
    assert captured(graphed[1])
    assert_same_training(graphed, eager)
    torch.testing.assert_close(graphed[1].balance.term_weights, eager[1].balance.term_weights, rtol=1e-10, atol=0)


@cuda
def test_stochastic_engine_draws_fresh_directions_in_the_graph(tmp_path, never_captured):
    kwargs = dict(pde=Poisson(dim=6), engine=StochasticEngine(samples=4), max_steps=WARMUP_STEPS + 8)
    graphed, eager = fit(tmp_path / "graph", cuda_graph=True, **kwargs), never_captured(tmp_path / "eager", cuda_graph=True, **kwargs)
    assert captured(graphed[1])
    assert_same_training(graphed, eager)  # the same random stream, replay or not


@cuda
def test_lbfgs_after_captured_adam_and_resume(tmp_path, never_captured):
    plan = AdamLBFGS(lr=1e-2, switch_step=8, max_iter=5)
    whole = fit(tmp_path / "whole", cuda_graph=True, plan=plan, max_steps=12)
    assert captured(whole[1])
    eager = never_captured(tmp_path / "eager", cuda_graph=True, plan=plan, max_steps=12)
    assert_same_training(whole, eager, rtol=1e-9)  # L-BFGS amplifies round-off a little
    fit(tmp_path / "part", cuda_graph=True, plan=plan, max_steps=6, checkpoint_every=3)
    resumed = fit(tmp_path / "part", cuda_graph=True, plan=plan, max_steps=12, resume=tmp_path / "part")
    assert_same_training(resumed, whole, rtol=1e-9)
    # and a captured run's checkpoint resumes eagerly too
    fit(tmp_path / "part2", cuda_graph=True, plan=plan, max_steps=6, checkpoint_every=3)
    resumed_eagerly = fit(tmp_path / "part2", cuda_graph=False, plan=plan, max_steps=12, resume=tmp_path / "part2")
    assert_same_training(resumed_eagerly, whole, rtol=1e-4)  # plain Adam for steps 6 and 7


class HostCopyPoisson(Poisson):
    """Copies a number from host memory at every step, which a capture forbids."""

    def residuals(self, model, points, engine):
        one = torch.ones(1, dtype=torch.float64).to(points["interior"])
        return {name: r * one for name, r in super().residuals(model, points, engine).items()}


@cuda
def test_a_failed_capture_falls_back_to_eager_steps(tmp_path, caplog, never_captured):
    with pytest.raises(ConfigError, match="capturing the training step failed"):
        fit(tmp_path / "a", cuda_graph=True, pde=HostCopyPoisson(dim=2), engine=ForwardEngine())
    with caplog.at_level(logging.INFO, logger="pinn"):
        fallen = fit(tmp_path / "b", cuda_graph="auto", pde=HostCopyPoisson(dim=2), engine=ForwardEngine())
    assert "capturing the training step failed" in caplog.text and not captured(fallen[1])
    eager = never_captured(tmp_path / "c", cuda_graph=True, pde=HostCopyPoisson(dim=2), engine=ForwardEngine())
    assert_same_training(fallen, eager)


@cuda
@pytest.mark.parametrize("setting,words", [
    (dict(balance=LossBalance(weighting="self_adaptive")), "self_adaptive"),
    (dict(engine=AutogradEngine()), "derivatives.engine=autograd"),
], ids=["self_adaptive", "autograd"])
def test_refused_runs_train_eagerly_under_auto(setting, words, tmp_path, caplog):
    with pytest.raises(ConfigError, match=words):
        fit(tmp_path / "a", cuda_graph=True, **setting)
    with caplog.at_level(logging.INFO, logger="pinn"):
        _, trainer, metrics = fit(tmp_path / "b", cuda_graph="auto", **setting)
    assert not trainer._graphs and "cuda_graph: off" in caplog.text and words in caplog.text


@cuda
def test_train_py_captures_with_the_forward_engine_on_a_gpu(compose_config, tmp_path, caplog):
    cfg = compose_config([f"output_dir={tmp_path}", *TINY, "trainer.max_steps=12", "optimizer=adam", "derivatives=forward"])
    with caplog.at_level(logging.INFO, logger="pinn"):
        metrics = train.run(cfg)
    assert metrics["device"].startswith("cuda") and "replayed as one CUDA graph" in caplog.text
    assert "capturing the training step failed" not in caplog.text
    assert metrics["rel_l2"] == metrics["rel_l2"]  # finite, not NaN


def test_tf32_is_a_boolean_and_is_restored_after_training(tmp_path):
    with pytest.raises(ConfigError, match="trainer.tf32 must be true or false"):
        Trainer(tf32="yes")
    before = torch.backends.cuda.matmul.allow_tf32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = MLP(2, 1, width=8, depth=2)
    Trainer(max_steps=2, n_test=16, image_resolution=4, progress=False, tf32=not before).fit(
        pde=Poisson(dim=2), model=model, engine=AutogradEngine(), optimizer=Adam(lr=1e-3),
        sampler=UniformSampler(n_interior=16, n_boundary=8), generator=torch.Generator().manual_seed(0),
        run_dir=tmp_path, device=device)
    assert torch.backends.cuda.matmul.allow_tf32 == before
