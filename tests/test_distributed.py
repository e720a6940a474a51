"""Data parallelism on the CPU: two gloo processes under torchrun."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY
from ddp_worker import gradients, grad_norm_weights, union_points

from pinn.distributed import POINTS_STREAM, TORCH_STREAM, Communicator, rank_seed

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


#: two CPU processes, also on a machine with one GPU (which two processes cannot share over NCCL)
ENV = {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def torchrun(*args):
    env = {**os.environ, **ENV}
    return subprocess.run([*TORCHRUN, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def test_averaged_gradient_equals_the_gradient_over_the_union(tmp_path):
    result = torchrun(str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path / "grads"))
    assert result.returncode == 0, result.stderr
    ranks = [torch.load(tmp_path / f"grads.rank{r}", weights_only=True) for r in range(2)]
    _, points = union_points()
    single = [p.grad for p in gradients(points).parameters()]
    for g0, g1, g in zip(*ranks, single):
        assert torch.equal(g0, g1)  # every rank steps identically
        assert (g0 - g).abs().max().item() <= 1e-14 * (1 + g.abs().max().item())
    # grad_norm's weights: from the norms of the averaged terms' gradients, as in one process
    weights = [torch.load(tmp_path / f"grads.weights.rank{r}", weights_only=True) for r in range(2)]
    assert weights[0] == weights[1] and weights[0] == pytest.approx(grad_norm_weights(points), rel=1e-12)


def test_two_processes_train_and_rank_0_writes(tmp_path):
    run = tmp_path / "run"
    overrides = [*TINY, "sampler.n_interior=32", "sampler.n_boundary=8", "optimizer.switch_step=2",
                 "optimizer.max_iter=2", f"hydra.run.dir={run}", "logger=tensorboard"]
    result = torchrun("train.py", *overrides)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 4 and metrics["rel_l2"] > 0
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    shares = [r["points"]["interior"] for r in ckpt["ranks"]]
    assert [s.shape for s in shares] == [(16, 2), (16, 2)]
    assert not torch.equal(shares[0], shares[1])  # distinct streams from one seed
    states = [r["torch"] for r in ckpt["ranks"]]  # torch's generator: reseeded per rank after the weights
    assert not torch.equal(states[0], states[1])
    assert len(list((run / "tensorboard").glob("events.*"))) >= 1

    resumed = torchrun("train.py", *overrides, "trainer.max_steps=6", f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6

    alone = subprocess.run([sys.executable, "train.py", *overrides, "trainer.max_steps=8", f"resume={run}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert alone.returncode == 2 and "written by 2 process(es)" in alone.stderr


def test_each_rank_has_its_own_streams_and_one_process_keeps_the_seed():
    seeds = [rank_seed(7, Communicator(rank=r, world=3), stream) for stream in (POINTS_STREAM, TORCH_STREAM)
             for r in range(3)]
    assert len(set(seeds)) == 6 and all(0 <= s < 2**63 for s in seeds)
    # the points' streams are those of runs before the torch streams existed (resumes keep them)
    before = [int(child.generate_state(1, dtype=np.uint64)[0] >> 1) for child in np.random.SeedSequence(7).spawn(3)]
    assert seeds[:3] == before
    alone = Communicator()
    assert rank_seed(7, alone) == rank_seed(7, alone, TORCH_STREAM) == 7


def test_uneven_split_is_refused(tmp_path):
    result = torchrun("train.py", *TINY, "sampler.n_interior=33", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "sampler.n_interior=33 does not split evenly over 2 processes" in result.stderr
    # the run's one log says it once, not once per process
    assert (tmp_path / "train.log").read_text().count("does not split evenly over 2 processes") == 1


def test_self_adaptive_weights_resume_exactly_and_evaluate_repeats_the_reported_loss(tmp_path):
    # each process's point weights belong to its own points: every process keeps its own
    common = [*TINY, "optimizer=adam", "loss.weighting=self_adaptive", "dtype=float64", "logger=none"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert torchrun("train.py", *common, "trainer.max_steps=6", f"hydra.run.dir={full}").returncode == 0
    assert torchrun("train.py", *common, "trainer.max_steps=3", f"hydra.run.dir={part}").returncode == 0
    resumed = torchrun("train.py", *common, "trainer.max_steps=6", f"resume={part}", f"hydra.run.dir={part}")
    assert resumed.returncode == 0, resumed.stderr
    a, b = (torch.load(run / "checkpoints" / "last.pt", weights_only=True) for run in (full, part))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    weights = [r["balance"]["point_weights.pde"] for r in a["ranks"]]
    assert not torch.equal(*weights)  # two processes' own weights
    # evaluate.py repeats the loss training reported: each process's, on its own points, averaged
    evaluated = subprocess.run([sys.executable, "evaluate.py", f"run={full}", "device=cpu"], cwd=ROOT, capture_output=True, text=True,
                               timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    reported, again = (json.loads((full / name).read_text()) for name in ("metrics.json", "evaluation.json"))
    for key in ("loss", "loss_pde", "loss_boundary"):
        assert abs(again[key] - reported[key]) <= 1e-12 * abs(reported[key]), key


def test_each_rank_gets_an_equal_share_of_the_sets_the_problem_uses():
    from omegaconf import OmegaConf

    import train

    three = Communicator(rank=1, world=3)
    cfg = OmegaConf.create({"n_interior": 63, "n_boundary": 15, "n_initial": 400})
    assert train.rank_share(cfg, three, ("interior", "boundary")) == {"n_interior": 21, "n_boundary": 5}
    with pytest.raises(train.ConfigError, match="sampler.n_initial=400 does not split evenly over 3 processes"):
        train.rank_share(cfg, three, ("interior", "boundary", "initial"))
    # an adaptive sampler's candidates and added points are the run's totals too
    rar = OmegaConf.create({"n_interior": 64, "n_boundary": 16, "n_candidates": 2000, "n_add": 10})
    assert train.rank_share(rar, Communicator(rank=0, world=2), ("interior", "boundary")) == {
        "n_interior": 32, "n_boundary": 8, "n_candidates": 1000, "n_add": 5}
    assert train.rank_share(rar, Communicator(), ("interior",)) == {}


def test_ranks_that_chose_different_run_folders_are_refused(tmp_path):
    result = torchrun("train.py", *TINY, f"hydra.run.dir={tmp_path / 'h'}", f"output_dir={tmp_path}/r${{oc.env:RANK}}")
    assert result.returncode != 0
    assert "the processes of this run chose different run folders" in result.stderr
    assert not list(tmp_path.glob("r*/checkpoints"))


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The process of ``rank`` among torchrun's children (Linux's /proc), or None while there is none."""
    children = open(f"/proc/{launcher}/task/{launcher}/children").read().split()
    for pid in children:
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks' processes through /proc")
def test_a_signal_to_one_rank_stops_every_rank_and_is_named(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, **ENV}
    proc = subprocess.Popen([*TORCHRUN, "train.py", *TINY, "trainer.max_steps=1000000", "trainer.checkpoint_every=0",
                             "trainer.eval_every=1000", f"hydra.run.dir={run}", "logger=tensorboard"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((run / "tensorboard").glob("events.*")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # some steps
        os.kill(_rank_pid(proc.pid, 1), signal.SIGINT)  # the second process alone
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert "interrupted by SIGINT at step" in stderr  # rank 0's message names rank 1's signal
    assert "Resume with: torchrun --standalone --nproc_per_node=2 train.py" in stderr
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] > 0 and len(ckpt["ranks"]) == 2


def test_the_plain_mean_squares_are_averaged_over_the_ranks_like_the_terms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # growth weighting weights the equation only: the boundary's plain mean square is its term
    result = torchrun("train.py", *TINY, "pde=heat", "sampler.n_initial=8", "loss.growth_rate=1.0", "optimizer=adam",
                      f"hydra.run.dir={tmp_path}", "logger=tensorboard")
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    term, plain = ([e.value for e in events.Scalars(tag)] for tag in ("loss/boundary", "mse/boundary"))
    assert len(term) == 4 and term == plain
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mse_boundary"] == metrics["loss_boundary"] and metrics["mse_pde"] != metrics["loss_pde"]
