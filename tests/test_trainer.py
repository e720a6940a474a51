"""Training runs, checkpoints, resumes exactly, and stops on divergence without losing state."""

import json
import os
import signal
import stat
import time

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tensorboard_steps
from pinn.checkpoint import (CheckpointError, load_checkpoint, save_checkpoint, write_json_atomically,
                             write_text_atomically)
from pinn.derivatives import AutogradEngine
from pinn.loggers import NullLogger
from pinn.models import MLP
from pinn.optim import LBFGS, Adam, AdamLBFGS
from pinn.pdes import Poisson
from pinn.pdes.base import PDE, REPORTED_NAMES, REPORTED_PREFIXES
from pinn.sampling import SobolSampler, UniformSampler
from pinn.trainer import Trainer, TrainingDiverged, TrainingInterrupted


def fit(run_dir, *, max_steps, plan=None, resume=None, resample_every=0, lr=1e-3, checkpoint_every=0):
    torch.manual_seed(0)
    pde = Poisson(dim=2)
    model = MLP(2, 1, width=8, depth=2)
    trainer = Trainer(max_steps=max_steps, eval_every=2, log_every=1, checkpoint_every=checkpoint_every,
                      resample_every=resample_every, n_test=100, image_resolution=8, progress=False)
    metrics = trainer.fit(
        pde=pde, model=model, engine=AutogradEngine(), sampler=UniformSampler(n_interior=64, n_boundary=16),
        optimizer=plan or Adam(lr=lr), generator=torch.Generator().manual_seed(0), run_dir=run_dir,
        dtype=torch.float64, resume=resume,
    )
    return model, metrics


def test_a_few_steps_lower_the_loss(tmp_path):
    _, short = fit(tmp_path / "a", max_steps=1)
    _, longer = fit(tmp_path / "b", max_steps=30, lr=1e-2)
    assert longer["loss"] < short["loss"]
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["steps"] == 30


@pytest.mark.parametrize("plan", [
    lambda: Adam(lr=1e-2),
    lambda: AdamLBFGS(lr=1e-2, switch_step=5, max_iter=3),
], ids=["adam", "adam_lbfgs"])
def test_resume_continues_bitwise(tmp_path, plan):
    whole, _ = fit(tmp_path / "whole", max_steps=8, plan=plan(), resample_every=3)
    fit(tmp_path / "first", max_steps=4, plan=plan(), resample_every=3)
    resumed, metrics = fit(tmp_path / "second", max_steps=8, plan=plan(), resample_every=3,
                           resume=tmp_path / "first")
    assert metrics["steps"] == 8
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("quasi_newton", ["lbfgs", "bfgs", "ssbfgs"])
def test_resume_inside_the_lbfgs_stage_continues_bitwise(tmp_path, quasi_newton):
    # L-BFGS keeps a history of steps and gradients between step() calls, BFGS its inverse-Hessian
    # approximation; the checkpoint carries them.
    plan = lambda: AdamLBFGS(lr=1e-2, switch_step=3, max_iter=3, quasi_newton=quasi_newton)  # noqa: E731
    whole, _ = fit(tmp_path / "whole", max_steps=8, plan=plan())
    fit(tmp_path / "first", max_steps=5, plan=plan())
    resumed, _ = fit(tmp_path / "second", max_steps=8, plan=plan(), resume=tmp_path / "first")
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_lbfgs_phase_switch_and_timing(tmp_path):
    _, metrics = fit(tmp_path, max_steps=6, plan=AdamLBFGS(switch_step=4, max_iter=2))
    assert metrics["phases"]["adam"]["steps"] == 4 and metrics["phases"]["lbfgs"]["steps"] == 2
    assert metrics["train_seconds"] > 0 and metrics["ms_per_step"] > 0


class PoissonThatBlowsUp(Poisson):
    """Its loss turns NaN from the third evaluation on, as a diverging run's would."""

    calls = 0

    def losses(self, model, points, engine):
        self.calls += 1
        terms = super().losses(model, points, engine)
        if self.calls >= 3:
            terms["pde"] = terms["pde"] * float("nan")
        return terms


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(max_steps=5, checkpoint_every=1, log_every=1, eval_every=5, n_test=50, progress=False)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 3: total=nan, pde=nan, boundary=.*Try a new run "
                                                r"with a smaller optimizer.lr or dtype=float64, or loss weights that "
                                                r"balance the terms \(trainer.loss_weights, which a resume may also change\)"):
        trainer.fit(pde=PoissonThatBlowsUp(dim=2), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
                    sampler=UniformSampler(n_interior=32, n_boundary=8), optimizer=Adam(),
                    generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64)
    kept = load_checkpoint(tmp_path)
    assert kept["step"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values())
    assert not (tmp_path / "metrics.json").exists()
    # without a checkpoint to fall back on, the message does not promise one
    trainer = Trainer(max_steps=5, checkpoint_every=0, log_every=1, eval_every=5, n_test=50, progress=False)
    with pytest.raises(TrainingDiverged, match="No checkpoint had been written yet"):
        trainer.fit(pde=PoissonThatBlowsUp(dim=2), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
                    sampler=UniformSampler(n_interior=32, n_boundary=8), optimizer=Adam(),
                    generator=torch.Generator().manual_seed(0), run_dir=tmp_path / "fresh", dtype=torch.float64)


@pytest.mark.parametrize("during", ["_solution_image", "evaluate", "_checkpoint"])
def test_a_signal_during_a_steps_evaluation_or_checkpoint_stops_at_that_step(tmp_path, during):
    # Not one step later, with a second checkpoint: a scheduler's grace period may not hold another
    # step (a whole L-BFGS step, say).
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    written = []

    class Signalled(Trainer):
        sent = False

        def _checkpoint(self, path, model, pde, generator, state, config):
            written.append(state.step)
            super()._checkpoint(path, model, pde, generator, state, config)
            if during == "_checkpoint":
                self.signal()

        def evaluate(self, *args):
            if during == "evaluate":
                self.signal()
            return super().evaluate(*args)

        def _solution_image(self, *args):
            if during == "_solution_image":
                self.signal()
            return super()._solution_image(*args)

        def signal(self):
            if not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)

    class Images(NullLogger):
        takes_images = True

    torch.manual_seed(0)
    trainer = Signalled(max_steps=6, checkpoint_every=2, log_every=1, eval_every=2, image_every=2, n_test=50,
                        image_resolution=8, progress=False)
    with pytest.raises(TrainingInterrupted, match="interrupted by SIGINT at step 2"):
        trainer.fit(pde=Poisson(dim=2), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
                    sampler=UniformSampler(n_interior=32, n_boundary=8), optimizer=Adam(), logger=Images(),
                    generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64)
    assert written == [2] and load_checkpoint(tmp_path)["step"] == 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # put back


def test_a_run_removes_the_temporary_files_a_killed_launch_left_while_writing(tmp_path):
    leftovers = [tmp_path / "checkpoints" / ".last.pt.i51pxi32.tmp", tmp_path / ".metrics.json.x1y2z3.tmp",
                 tmp_path / ".solution.png.q7r8s9.tmp", tmp_path / ".evaluation.json.a1b2c3.tmp"]  # evaluate.py's
    kept = [tmp_path / "checkpoints" / ".last.pt.notes", tmp_path / "checkpoints" / "other.pt.abc.tmp"]
    for path in leftovers + kept:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"1000 bytes of a checkpoint")
    Trainer(max_steps=1, progress=False).fit(
        pde=Poisson(dim=2), model=MLP(2, 1, width=4, depth=1), engine=AutogradEngine(),
        sampler=UniformSampler(n_interior=16, n_boundary=4), optimizer=Adam(),
        generator=torch.Generator().manual_seed(0), run_dir=tmp_path)
    assert not any(path.exists() for path in leftovers) and all(path.exists() for path in kept)


class SignalAtCall(torch.nn.Module):
    """An MLP that sends this process ``signals`` (a list of signal numbers) at its ``call``-th
    forward pass, as Ctrl-C or ``kill`` would during that training step."""

    def __init__(self, call, signals):
        super().__init__()
        self.net, self.call, self.signals, self.calls = MLP(2, 1, width=8, depth=2), call, signals, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.call:
            for signum in self.signals:
                os.kill(os.getpid(), signum)
        return self.net(x)


@pytest.mark.parametrize("step,signals", [(2, [signal.SIGINT]), (3, [signal.SIGINT]), (2, [signal.SIGTERM] * 2)],
                         ids=["mid-run", "last step", "repeated at once"])
def test_a_signal_stops_at_the_next_step_boundary_unless_the_run_is_done(tmp_path, step, signals):
    # Calls 1 to 4 are the check of the network; then each Adam step evaluates the network
    # twice (interior, boundary): call 2k + 3 is step k.
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    torch.manual_seed(0)
    trainer = Trainer(max_steps=3, checkpoint_every=0, log_every=1, eval_every=3, n_test=50, progress=False)
    run = lambda: trainer.fit(  # noqa: E731
        pde=Poisson(dim=2), model=SignalAtCall(2 * step + 3, signals), engine=AutogradEngine(),
        sampler=UniformSampler(n_interior=32, n_boundary=8), optimizer=Adam(),
        generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64)
    if step < 3:  # a checkpoint, then stop; the signal given twice at once is one request
        with pytest.raises(TrainingInterrupted, match=f"interrupted by {signal.Signals(signals[0]).name} at step {step}"):
            run()
        assert load_checkpoint(tmp_path)["step"] == step and not (tmp_path / "metrics.json").exists()
    else:  # the last step's checkpoint is written: the run finishes, metrics and all
        assert run()["steps"] == 3
        assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 3
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # put back


def test_a_diverged_run_closes_its_logger(tmp_path):
    # The scalars logged up to the divergence are what one looks at to see why it diverged.
    closed = []

    class Recording(NullLogger):
        def close(self):
            closed.append(True)

    torch.manual_seed(0)
    trainer = Trainer(max_steps=5, checkpoint_every=1, log_every=1, eval_every=5, n_test=50, progress=False)
    with pytest.raises(TrainingDiverged):
        trainer.fit(pde=PoissonThatBlowsUp(dim=2), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
                    sampler=UniformSampler(n_interior=32, n_boundary=8), optimizer=Adam(),
                    generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64,
                    logger=Recording())
    assert closed


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(truncated, {"step": 1, "model": {}, "optimizer": {}, "phase": None, "generator": torch.zeros(1)})
    truncated.write_bytes(truncated.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="is damaged or incomplete, not a readable pinn checkpoint .*; check that it "
                                              "is the checkpoint you meant .* train in another folder, or move the file away"):
        load_checkpoint(truncated)
    for content in (b"", b"\x00 random bytes \xff" * 10):  # torch's advice (to save with the zip format) is not said
        damaged = tmp_path / "damaged.pt"
        damaged.write_bytes(content)
        for mmap in (False, True):
            with pytest.raises(CheckpointError, match="is damaged or incomplete") as error:
                load_checkpoint(damaged, mmap=mmap)
            assert "_use_new_zipfile_serialization" not in str(error.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a pinn checkpoint"):
        load_checkpoint(foreign)


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_keeps_the_last(tmp_path, monkeypatch):
    """A full disk midway through torch.save (which reports it as its own RuntimeError, the
    OSError as its context) or a folder that cannot be written: a CheckpointError that says
    so, and the previous checkpoint as it was."""
    import errno
    from pinn import checkpoint

    path = tmp_path / "last.pt"
    payload = {"step": 1, "model": {"w": torch.ones(1000)}, "optimizer": {}, "phase": None, "generator": torch.zeros(1)}
    save_checkpoint(path, payload)
    kept = path.read_bytes()

    class Full:  # a file on a disk that fills up after 1,000 bytes
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    fdopen = os.fdopen
    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: Full(fdopen(fd, mode)))
    with pytest.raises(CheckpointError, match=rf"cannot write {path} \(No space left on device\); the file there "
                                              "before, if any, is kept as it was"):
        save_checkpoint(path, {**payload, "step": 2})
    assert path.read_bytes() == kept and [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="cannot write .*metrics.json"):
        write_text_atomically(path / "metrics.json", "{}")  # a file where its folder should be

    def interrupted(f):  # Ctrl-C while an OSError is being handled: still an interrupt
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise KeyboardInterrupt from None

    with pytest.raises(KeyboardInterrupt):
        checkpoint.write_atomically(path, interrupted)
    assert path.read_bytes() == kept


def test_an_atomic_write_syncs_the_file_then_its_folder(tmp_path, monkeypatch):
    # The rename is recorded in the folder: until the folder is synced, a power loss can undo it.
    from pinn import checkpoint

    synced, fsync = [], os.fsync

    def recording(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", recording)
    write_text_atomically(tmp_path / "metrics.json", "{}")
    assert synced == ["file", "folder"] and (tmp_path / "metrics.json").read_text() == "{}"


def test_a_plan_that_never_reaches_lbfgs_says_so(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="pinn"):
        fit(tmp_path, max_steps=3, plan=AdamLBFGS(lr=1e-2, switch_step=3))
    assert "optimizer.switch_step=3 >= trainer.max_steps=3: this run never reaches L-BFGS" in caplog.text


def test_loggers_get_the_final_step_and_images_only_where_they_keep_them(tmp_path):
    calls = []

    class Recording(NullLogger):
        takes_images = True

        def image(self, tag, image, step):
            calls.append(("image", step))

        def hparams(self, hparams, metrics, step=0):
            calls.append(("hparams", step))

    class Older(NullLogger):  # written before hparams() took the step
        def hparams(self, hparams, metrics):
            calls.append(("older hparams", None))

    drawn = []
    for logger in (Recording(), Older()):
        trainer = Trainer(max_steps=5, eval_every=2, image_every=3, log_every=2, checkpoint_every=0, n_test=50,
                          image_resolution=8, progress=False)
        trainer._solution_image = lambda *args: drawn.append(True) or np.zeros((2, 2, 3), dtype=np.uint8)
        trainer.fit(pde=Poisson(dim=2), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
                    sampler=UniformSampler(n_interior=32, n_boundary=8), optimizer=Adam(),
                    generator=torch.Generator().manual_seed(0), run_dir=tmp_path / type(logger).__name__,
                    dtype=torch.float64, logger=logger)
    # figures every image_every steps and at the end, whatever eval_every is
    assert calls == [("image", 3), ("image", 5), ("hparams", 5), ("older hparams", None)]
    assert len(drawn) == 2  # drawn for the logger that keeps images only


def test_image_every_zero_draws_the_last_step_only(tmp_path):
    steps = []

    class Recording(NullLogger):
        takes_images = True

        def image(self, tag, image, step):
            steps.append(step)

    trainer = Trainer(max_steps=3, eval_every=1, image_every=0, checkpoint_every=0, n_test=50, image_resolution=8,
                      progress=False)
    trainer._solution_image = lambda *args: np.zeros((2, 2, 3), dtype=np.uint8)
    trainer.fit(pde=Poisson(dim=2), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
                sampler=UniformSampler(n_interior=32, n_boundary=8), optimizer=Adam(),
                generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64, logger=Recording())
    assert steps == [3]


def test_a_mapped_checkpoint_reads_the_same(tmp_path):
    # train.py looks at a checkpoint's config this way before a resume, without reading its tensors
    payload = {"step": 3, "model": {"w": torch.randn(4, 4)}, "optimizer": {"H": torch.randn(50, 50)}, "phase": "adam",
               "generator": torch.zeros(1), "config": {"seed": 1}}
    save_checkpoint(tmp_path / "c.pt", payload)
    mapped, read = load_checkpoint(tmp_path / "c.pt", mmap=True), load_checkpoint(tmp_path / "c.pt")
    assert mapped["config"] == read["config"] == {"seed": 1} and mapped["step"] == 3
    assert torch.equal(mapped["optimizer"]["H"], read["optimizer"]["H"])


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_modes_the_umask_gives(tmp_path, umask, mode):
    # as open() would create them: readable by the group where the user's umask allows it
    previous = os.umask(umask)
    try:
        write_text_atomically(tmp_path / "metrics.json", "{}\n")
    finally:
        os.umask(previous)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == mode


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "model": {}, "optimizer": {}, "phase": None, "generator": torch.zeros(1)})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(CheckpointError, match=r"cannot write .*last.pt \(disk full\)"):
        save_checkpoint(path, {"step": 2, "model": {}, "optimizer": {}, "phase": None, "generator": torch.zeros(1)})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_sobol_and_resampling_train(tmp_path):
    torch.manual_seed(0)
    pde = Poisson(dim=2)
    model = MLP(2, 1, width=8, depth=2)
    metrics = Trainer(max_steps=6, resample_every=2, eval_every=3, n_test=50, progress=False).fit(
        pde=pde, model=model, engine=AutogradEngine(), sampler=SobolSampler(n_interior=32, n_boundary=8),
        optimizer=Adam(), generator=torch.Generator().manual_seed(1), run_dir=tmp_path,
    )
    assert metrics["steps"] == 6 and metrics["rel_l2"] > 0


def test_resume_continues_tensorboard_without_duplicate_steps(tmp_path):
    from pinn.loggers import TensorBoardLogger

    def run(folder, max_steps, resume=None):
        torch.manual_seed(0)
        Trainer(max_steps=max_steps, log_every=1, eval_every=100, checkpoint_every=3, n_test=20, progress=False).fit(
            pde=Poisson(dim=2), model=MLP(2, 1, width=4, depth=1), engine=AutogradEngine(),
            sampler=UniformSampler(n_interior=16, n_boundary=4), optimizer=Adam(),
            generator=torch.Generator().manual_seed(0), run_dir=folder, logger=TensorBoardLogger(folder),
            resume=resume)

    run(tmp_path, 3)
    at_step_3 = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    run(tmp_path, 5, resume=tmp_path)  # logs steps 4 and 5, checkpoints step 5 ...
    (tmp_path / "checkpoints" / "last.pt").write_bytes(at_step_3)  # ... then "crashes" back to step 3
    time.sleep(1.1)  # event files are named by the second they were opened
    run(tmp_path, 6, resume=tmp_path)
    time.sleep(1.1)
    run(tmp_path, 6, resume=tmp_path)  # finished already: its final metrics are not logged a second time
    assert tensorboard_steps(tmp_path / "tensorboard", "loss/total") == [1, 2, 3, 4, 5, 6]
    assert tensorboard_steps(tmp_path / "tensorboard", "final/rel_l2") == [3, 6]  # the first run's, and this one's
    # the first launch itself crashing after its checkpoint at step 3, having logged steps 4 and 5
    crashed = tmp_path / "crashed"
    run(crashed, 5)
    (crashed / "checkpoints" / "last.pt").write_bytes(at_step_3)
    time.sleep(1.1)
    run(crashed, 6, resume=crashed)
    assert tensorboard_steps(crashed / "tensorboard", "loss/total") == [1, 2, 3, 4, 5, 6]
    # and a new run in a folder that holds only an earlier launch's records (killed before its
    # first checkpoint, say): its curves replace them
    (crashed / "checkpoints" / "last.pt").unlink()
    time.sleep(1.1)
    run(crashed, 2)
    assert tensorboard_steps(crashed / "tensorboard", "loss/total") == [1, 2]


def test_the_config_is_logged_once_in_each_folder_a_run_is_logged_in(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pinn.loggers import TensorBoardLogger

    def run(folder, max_steps, resume=None):
        torch.manual_seed(0)
        Trainer(max_steps=max_steps, eval_every=100, checkpoint_every=1, n_test=20, progress=False).fit(
            pde=Poisson(dim=2), model=MLP(2, 1, width=4, depth=1), engine=AutogradEngine(),
            sampler=UniformSampler(n_interior=16, n_boundary=4), optimizer=Adam(),
            generator=torch.Generator().manual_seed(0), run_dir=folder, logger=TensorBoardLogger(folder),
            resume=resume, config={"model": {"width": 4}})

    run(tmp_path / "a", 2)
    time.sleep(1.1)  # event files are named by the second they were opened
    run(tmp_path / "a", 3, resume=tmp_path / "a")  # in place: the record has it already
    run(tmp_path / "b", 4, resume=tmp_path / "a")  # into a new folder: a record of its own
    for folder in ("a", "b"):
        events = EventAccumulator(str(tmp_path / folder / "tensorboard"), size_guidance={"tensors": 0})
        events.Reload()
        assert len(events.Tensors("config/text_summary")) == 1, folder
    # a logger of one's own that does not say whether it continues its records: a new run's only
    texts = []

    class Own(NullLogger):
        def text(self, tag, text, step=0):
            texts.append(tag)

    for max_steps, resume in ((2, None), (3, tmp_path / "c")):
        torch.manual_seed(0)
        Trainer(max_steps=max_steps, eval_every=100, checkpoint_every=1, n_test=20, progress=False).fit(
            pde=Poisson(dim=2), model=MLP(2, 1, width=4, depth=1), engine=AutogradEngine(),
            sampler=UniformSampler(n_interior=16, n_boundary=4), optimizer=Adam(),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path / "c", logger=Own(), resume=resume,
            config={"model": {"width": 4}})
    assert texts == ["config"]


def test_a_point_set_a_pde_reads_without_asking_for_it_is_named(tmp_path):
    from pinn.errors import PDEError
    from pinn.pdes import Heat

    class Forgetful(Heat):
        point_sets = ("interior", "boundary")  # reads 'initial' all the same

    with pytest.raises(PDEError, match=r"Forgetful reads the point set 'initial', but its point_sets = "
                                       r"\('interior', 'boundary'\) do not ask for it; add 'initial' to point_sets"):
        Trainer(max_steps=2, progress=False).fit(
            pde=Forgetful(), model=MLP(2, 1, width=4, depth=1), engine=AutogradEngine(),
            sampler=UniformSampler(n_interior=16, n_boundary=4, n_initial=4), optimizer=Adam(),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path)


def test_a_finished_run_resumed_with_a_logger_it_had_not_gets_its_final_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pinn.loggers import TensorBoardLogger

    for logger, resume in ((NullLogger(), None), (TensorBoardLogger(tmp_path), tmp_path)):
        torch.manual_seed(0)
        Trainer(max_steps=2, eval_every=100, checkpoint_every=0, n_test=20, progress=False).fit(
            pde=Poisson(dim=2), model=MLP(2, 1, width=4, depth=1), engine=AutogradEngine(),
            sampler=UniformSampler(n_interior=16, n_boundary=4), optimizer=Adam(),
            generator=torch.Generator().manual_seed(0), run_dir=tmp_path, logger=logger, resume=resume)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("final/rel_l2")] == [2]


def test_inverse_problem_learns_its_coefficient_and_resumes_it_bitwise(tmp_path):
    from pinn.pdes import HeatInverse

    def run(run_dir, max_steps, resume=None):
        torch.manual_seed(0)
        pde = HeatInverse(alpha=0.1, alpha_init=0.5, n_data=20)
        model = MLP(2, 1, width=8, depth=2)
        trainer = Trainer(max_steps=max_steps, eval_every=2, log_every=1, checkpoint_every=0, n_test=64,
                          image_resolution=8, progress=False)
        metrics = trainer.fit(
            pde=pde, model=model, engine=AutogradEngine(), optimizer=Adam(lr=1e-2), run_dir=run_dir,
            sampler=UniformSampler(n_interior=32, n_boundary=8, n_initial=8),
            generator=torch.Generator().manual_seed(0), dtype=torch.float64, resume=resume,
        )
        return pde, metrics

    whole, metrics = run(tmp_path / "whole", 8)
    assert whole.log_alpha.grad is not None  # trained with the network
    assert metrics["alpha"] != 0.5 and metrics["alpha"] == pytest.approx(whole.log_alpha.exp().item())
    assert metrics["n_unknowns"] == 1
    run(tmp_path / "first", 4)
    resumed, _ = run(tmp_path / "second", 8, resume=tmp_path / "first")
    assert torch.equal(whole.log_alpha, resumed.log_alpha)


def test_hparams_take_every_setting_lists_as_text():
    from pinn.trainer import flatten_config

    config = {"model": {"width": 8, "periods": None}, "optimizer": {"betas": [0.9, 0.999], "lr": 1e-3},
              "pde": {"name": "poisson", "hard_constraint": False}}
    assert flatten_config(config) == {"model.width": 8, "optimizer.betas": "[0.9, 0.999]", "optimizer.lr": 1e-3,
                                      "pde.name": "poisson", "pde.hard_constraint": False}


def test_each_outputs_error_is_reported_beside_the_pooled_one():
    from pinn.pdes import Cavity, Kovasznay

    torch.manual_seed(0)
    pde, trainer = Kovasznay(), Trainer(n_test=200)
    model = MLP(2, 3, width=8, depth=1).double()
    x, reference = trainer.test_set(pde, "cpu")
    metrics = trainer.evaluate(pde, model, x, reference)
    with torch.no_grad():
        error = model(x) - reference
    for j, name in enumerate(pde.outputs):
        assert metrics[f"rel_l2_{name}"] == pytest.approx((error[:, j].norm() / reference[:, j].norm()).item(), rel=1e-12)
    assert metrics["rel_l2"] == pytest.approx((error.norm() / reference.norm()).item(), rel=1e-12)
    # the cavity's reference knows u on one centreline and v on the other, and no pressure
    cavity = Cavity()
    x, reference = trainer.test_set(cavity, "cpu")
    metrics = trainer.evaluate(cavity, MLP(2, 3, width=8, depth=1).double(), x, reference)
    assert {"rel_l2_u", "rel_l2_v"} <= metrics.keys() and "rel_l2_p" not in metrics
    assert Trainer(n_test=50).evaluate(Poisson(dim=2), MLP(2, 1, width=4, depth=1).double(),
                                       *Trainer(n_test=50).test_set(Poisson(dim=2), "cpu")).keys() == {"rel_l2",
                                                                                                      "max_abs_error"}


def test_the_progress_bar_shows_no_error_before_the_first_evaluation():
    from pinn.trainer import _shown

    assert _shown(float("nan")) == "-" and _shown(1.5e-3) == "1.50e-03"


def test_json_files_hold_numbers_that_are_not_finite_as_null(tmp_path, caplog):
    # Python would write NaN and Infinity, which JSON does not have: strict readers refuse the file.
    data = {"a": float("nan"), "b": 1.5, "phases": {"adam": {"ms": float("inf")}}, "list": [1.0, float("-inf")]}
    with caplog.at_level("WARNING", logger="pinn"):
        write_json_atomically(tmp_path / "m.json", data)
    written = json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} written"))
    assert written == {"a": None, "b": 1.5, "phases": {"adam": {"ms": None}}, "list": [1.0, None]}
    assert "m.json: a=nan, phases.adam.ms=inf, list[1]=-inf not finite, written as null" in caplog.text


def test_a_reference_of_zeros_gives_the_largest_error_but_no_relative_one(tmp_path, caplog):
    class Homogeneous(Poisson):
        def exact(self, x):
            return torch.zeros_like(x[:, :1])

        def metrics(self):
            return {"kappa": float("nan")}

    scalars = []

    class Recording(NullLogger):
        def scalar(self, tag, value, step):
            scalars.append(tag)

    trainer = Trainer(max_steps=2, eval_every=1, log_every=1, n_test=50, progress=False)
    with caplog.at_level("WARNING", logger="pinn"):
        metrics = trainer.fit(pde=Homogeneous(dim=2), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
                              sampler=UniformSampler(n_interior=32, n_boundary=8), optimizer=Adam(),
                              generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64,
                              logger=Recording())
    assert "rel_l2" not in metrics and metrics["max_abs_error"] > 0
    assert "error/max_abs" in scalars and "error/rel_l2" not in scalars and "unknowns/max_abs_error" not in scalars
    assert "Homogeneous's reference values are all zero: no relative error (rel_l2) is defined" in caplog.text
    written = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} written"))
    assert written["kappa"] is None and written["max_abs_error"] == metrics["max_abs_error"]


def test_the_names_a_pdes_metrics_may_not_take_are_all_that_the_trainer_writes(tmp_path):
    # pinn.pdes.base cannot import the trainer, so it lists the trainer's names itself: a number
    # the trainer writes and the list lacks would silently replace a PDE's own of that name.
    _, metrics = fit(tmp_path, max_steps=1)
    assert [k for k in metrics if not (k in REPORTED_NAMES or k.startswith(REPORTED_PREFIXES))] == []


def test_a_first_lbfgs_step_that_ends_in_nan_is_a_divergence_not_a_bad_start(tmp_path):
    # An L-BFGS step reports its last loss evaluation, from inside its line search; the loss
    # before any training is its first, here finite.
    class Cliff(Poisson):
        residuals = PDE.residuals  # losses() only

        def __init__(self):
            super().__init__(dim=2)
            self.a = nn.Parameter(torch.zeros(()))

        def losses(self, model, points, engine):  # NaN once the line search takes a past 1
            u = model(points["interior"])
            return {"pde": u.square().mean() + (self.a - 10).square() + torch.sqrt(1 - self.a)}

    trainer = Trainer(max_steps=2, log_every=1, eval_every=2, n_test=50, progress=False)
    with pytest.raises(TrainingDiverged, match=r"^training diverged at step 1: total=nan") as error:
        trainer.fit(pde=Cliff(), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(),
                    sampler=UniformSampler(n_interior=32, n_boundary=8), optimizer=LBFGS(max_iter=5),
                    generator=torch.Generator().manual_seed(0), run_dir=tmp_path, dtype=torch.float64)
    assert "before any training" not in str(error.value)
