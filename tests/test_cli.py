"""train.py as a user runs it: a real process, real run folders, one-line errors."""

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, TINY


def train(*overrides, cwd=None, modules=None, script="train.py"):
    """Run ``script`` with ``overrides``; ``modules``: a folder of one's own modules, put on PYTHONPATH."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    if modules is not None:
        env["PYTHONPATH"] = f"{modules}{os.pathsep}{ROOT}"
    return subprocess.run([sys.executable, str(ROOT / script), *overrides], cwd=cwd or ROOT,
                          capture_output=True, text=True, env=env, timeout=300)


def test_train_writes_checkpoint_metrics_and_tensorboard(tmp_path):
    result = train(f"hydra.run.dir={tmp_path}", *TINY, "logger=tensorboard")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("rel_l2", "loss", "steps", "train_seconds", "ms_per_step"):
        assert key in metrics
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / ".hydra" / "config.yaml").is_file()
    assert "pre-flight" in result.stderr + result.stdout


def test_tensorboard_records_scalars_images_text_and_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    assert train(f"hydra.run.dir={tmp_path}", *TINY, "logger=tensorboard").returncode == 0
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/total", "loss/pde", "loss/boundary", "error/rel_l2", "lr"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss/total")] == [1, 2, 3, 4]
    assert "solution" in tags["images"]
    assert any(t.startswith("config") for t in tags["tensors"])
    assert {"final/rel_l2", "final/loss", "final/ms_per_step"} <= set(tags["scalars"])
    plugins = {
        value.tag: value.metadata.plugin_data.plugin_name
        for path in (tmp_path / "tensorboard").glob("events.out.tfevents.*")
        for event in EventFileLoader(str(path)).Load()
        for value in event.summary.value
    }
    assert plugins.get("_hparams_/session_start_info") == "hparams"
    start = HParamsPluginData.FromString(next(
        value.metadata.plugin_data.content for path in (tmp_path / "tensorboard").glob("events.out.tfevents.*")
        for event in EventFileLoader(str(path)).Load() for value in event.summary.value
        if value.tag == "_hparams_/session_start_info")).session_start_info.hparams
    assert start["model.width"].number_value == 8 and start["pde._target_"].string_value == "pinn.pdes.Poisson"
    assert start["pde.hard_constraint"].string_value == "false"  # as an override says it, not 0


def test_multirun_gives_one_folder_per_job(tmp_path):
    result = train("-m", *TINY, "model.width=4,8", "seed=0,1", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    metrics = sorted(tmp_path.glob("*/metrics.json"))
    assert len(metrics) == 4
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    combos = {tuple(sorted(o for o in r["overrides"].split() if o.startswith(("model.width=", "seed=")))) for r in rows}
    assert combos == {("model.width=4", "seed=0"), ("model.width=4", "seed=1"),
                      ("model.width=8", "seed=0"), ("model.width=8", "seed=1")}
    assert all(float(r["rel_l2"]) > 0 and r["status"] == "done" for r in rows)
    assert "summary saved to" in result.stdout


def test_a_failed_job_does_not_stop_the_sweep(tmp_path):
    result = train("-m", *TINY, "model.width=-1,8", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 2, result.stderr  # the sweep reports its failure after the table
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["failed: model.width must be an integer > 0; got -1", "done"]
    assert (tmp_path / "1" / "metrics.json").is_file() and "1 of 2 jobs failed" in result.stderr


def test_a_sweep_into_a_folder_of_failed_jobs_lists_its_own(tmp_path):
    assert train("-m", *TINY, "model.width=-1,-2", f"hydra.sweep.dir={tmp_path}").returncode == 2
    result = train("-m", *TINY, "model.width=4", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "done")] and "model.width=4" in rows[0]["overrides"]


@pytest.mark.parametrize("override,match", [
    ("model.activation=relu", "unknown model.activation 'relu'; valid choices: tanh"),
    ("sampler.n_interior=-5", "sampler.n_interior must be an integer > 0"),
    ("dtype=float16", "unknown dtype 'float16'; valid choices: float32, float64"),
    ("device=tpu", "unknown device 'tpu'; valid choices: auto, cpu, cuda"),
    ("trainer.max_steps=0", "trainer.max_steps must be an integer > 0"),
    ("pde.hard_constraint=no", "pde.hard_constraint must be true or false; got 'no'"),
    ("preflight=off", "preflight must be true or false; got 'off'"),
    ("device=cpu:abc", "device=cpu:abc is not a device"),
    ("seed=99999999999999999999", "seed must be an integer from 0 to 2**63 - 1"),
    ("output_dir=/dev/null/run", "cannot create the run folder /dev/null/run"),
    ("output_dir=''", "output_dir must name a folder; got ''"),
    ("output_dir=3", "output_dir must name a folder; got 3"),
    ("+trainer.loss_weights={pde: nan}", "trainer.loss_weights.pde must be a finite number >= 0; got nan"),
    ("+trainer.loss_weights={pde: 0, boundary: 0.0}", "trainer.loss_weights sets the weight of every loss term "
                                                      "(pde, boundary) to 0, so nothing would be trained"),
    ("optimizer.lbfgs_lr=0", "optimizer.lbfgs_lr must be a finite number > 0; got 0"),
    ("trainer.image_resolution=100000", "trainer.image_resolution must be from 2 to 2001"),
    ("trainer.loss_weights=abc", "trainer.loss_weights must map loss terms to weights"),
    ("optimizer.betas=null", "optimizer.betas must be two numbers in [0, 1), as [0.9, 0.999]; got None"),
    ("pde.lo=abc", "Box: lo and hi must be numbers"),
    ("optimizer.lbfgs_dtype=float16", "valid choices: null, float64"),
    ("pde._target_=no_such_module.Thing", "pde: cannot import no_such_module.Thing (No module named 'no_such_module')"),
    ("pde._target_=pinn.pdes.NoSuchPDE", "pde: pinn.pdes has no 'NoSuchPDE'; check the class name in pde._target_="),
    ("pde._target_=pinn.pdes.Heat", "pde: Heat.__init__() got an unexpected keyword argument 'k'"),
    ("~loss", "no loss chosen (removed with '~loss'?); choose one with loss=<name> (configs/loss/; "
              "loss=default by default)"),
    ("~seed", "seed is not set (removed with '~seed'?); give it a value (seed=0 by default)"),
])
def test_bad_values_end_in_one_line(override, match, tmp_path):
    result = train(f"hydra.run.dir={tmp_path}", *TINY, override)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and match in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_group_choice_lists_the_options(tmp_path):
    result = train(f"hydra.run.dir={tmp_path}", "pde=nosuch")
    assert result.returncode == 2  # bad input, as train.py's own refusals
    assert "Could not find 'pde/nosuch'" in result.stderr and "poisson" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_says_how_to_run_and_lists_the_groups():
    result = train("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pinn: train a physics-informed neural network")
    assert "python train.py -m model.width=32,64 seed=0,1" in result.stdout
    assert "pde: allen_cahn, burgers" in result.stdout  # Hydra's list of each group's choices follows


def test_unknown_key_is_refused(tmp_path):
    result = train(f"hydra.run.dir={tmp_path}", "model.widht=8")
    assert result.returncode == 2
    assert "widht" in result.stderr and "Traceback" not in result.stderr
    # a key a dict setting lacks: also how to replace the dict (test_a_dict_setting_that_refuses_...)
    result = train(f"hydra.run.dir={tmp_path}", "model=periodic", "model.periods={1: 2.0}")
    assert result.returncode == 2 and result.stderr.endswith("model.periods=null 'model.periods={1: 2.0}' replaces it\n")


def test_a_dict_setting_that_refuses_a_key_says_how_to_replace_it(compose_config):
    # KEY={...} merges into the configured dict; Hydra's own message says how to add a key, not
    # how to replace the dict
    import train as train_module
    from hydra.errors import HydraException

    overrides = ["model=periodic", "model.periods={1: 3.0}"]
    with pytest.raises(HydraException) as refused:
        compose_config(overrides)
    assert train_module._replace_hint(refused.value, overrides) == (
        "model.periods={1: 3.0} is merged into the configured model.periods, which has no key 1: "
        "'+model.periods={1: 3.0}' adds the key to it, model.periods=null 'model.periods={1: 3.0}' replaces it")
    assert compose_config(["model=periodic", "+model.periods={1: 3.0}"]).model.periods == {0: 2.0, 1: 3.0}
    assert compose_config(["model=periodic", "model.periods=null", "model.periods={1: 3.0}"]).model.periods == {1: 3.0}
    with pytest.raises(HydraException) as refused:  # an unknown key of its own: Hydra's advice is right
        compose_config(["model.widht=8"])
    assert train_module._replace_hint(refused.value, ["model.widht=8"]) is None


def test_a_run_folder_that_cannot_be_written_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import train as train_module

    (tmp_path / "file").write_text("")
    for option in (f"hydra.run.dir={tmp_path / 'file' / 'run'}", f"hydra.sweep.dir={tmp_path / 'file' / 's'}"):
        result = train(*(["-m", "seed=0,1"] if "sweep" in option else []), option, *TINY)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert f"error: cannot write into {option} ({tmp_path / 'file'} is a file, not a folder); choose another " \
               "folder" in result.stderr
    # an empty one would be the current folder
    work = tmp_path / "work"
    work.mkdir()
    for option in ("hydra.run.dir=", "hydra.sweep.dir="):
        result = train(*(["-m"] if "sweep" in option else []), option, *TINY, cwd=work)
        assert result.returncode == 2, result.stderr
        assert f"error: {option[:-1]} must name a folder; got ''" in result.stderr and not any(work.iterdir())
    # a folder the user may not write into (root writes anywhere, so its refusal is simulated here)
    assert train_module.why_unwritable(tmp_path / "new" / "run") is None

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(train_module.tempfile, "TemporaryFile", refused)
    assert train_module.why_unwritable(tmp_path / "new" / "run") == f"{tmp_path} cannot be written: Permission denied"


def test_full_traceback_on_request(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={tmp_path}", "model.width=-1"],
                            capture_output=True, text=True, env={**os.environ, "HYDRA_FULL_ERROR": "1"}, timeout=300)
    assert result.returncode != 0 and "Traceback" in result.stderr and "model.width" in result.stderr


def test_lbfgs_with_resampling_is_refused(tmp_path):
    result = train(f"hydra.run.dir={tmp_path}", *TINY, "optimizer=lbfgs", "trainer.resample_every=2")
    assert result.returncode == 2 and "trainer.resample_every" in result.stderr


def test_a_second_ctrl_c_still_names_the_checkpoint_to_resume_from(tmp_path):
    """A second Ctrl-C interrupts where it lands (here: the logger at step 3, after the step-2
    checkpoint); the run folder's last checkpoint is kept and named, with the resume command."""
    (tmp_path / "impatient.py").write_text(
        "from pinn.loggers import NullLogger\n"
        "class Impatient(NullLogger):\n"
        "    def scalar(self, tag, value, step):\n"
        "        if step == 3:\n"
        "            raise KeyboardInterrupt\n")
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run}", *TINY,
                             "trainer.checkpoint_every=2", "logger=none", "logger._target_=impatient.Impatient"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert f"interrupted; the last checkpoint is {run / 'checkpoints' / 'last.pt'}" in result.stderr
    assert f"resume={run} hydra.run.dir={run}" in result.stderr.split("Resume with: ")[1]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 2


def test_sigterm_before_training_leaves_the_folder_as_it_found_it(tmp_path):
    """A scheduler's stop during start-up (here: as the logger is built) is taken as Ctrl-C is:
    the new run's folder goes, one line, and SIGTERM's status (the process was killed outright)."""
    (tmp_path / "stopped.py").write_text(
        "import os, signal\n"
        "from pinn.loggers import NullLogger\n"
        "class Stopped(NullLogger):\n"
        "    def __init__(self, log_dir):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n")
    run = tmp_path / "run"
    result = train(f"hydra.run.dir={run}", *TINY, "logger=none", "logger._target_=stopped.Stopped", modules=tmp_path)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.stderr.endswith("interrupted by SIGTERM\n") and "Traceback" not in result.stderr, result.stderr
    assert not run.exists()


def test_sigterm_during_a_job_is_raised_and_between_jobs_deferred(monkeypatch, capsys):
    import train as train_module

    with pytest.raises(KeyboardInterrupt) as raised:  # caught in main as Ctrl-C is, its status 143
        train_module._RAISED_BY[signal.SIGTERM](signal.SIGTERM, None)
    assert isinstance(raised.value, train_module._Terminated)
    monkeypatch.setattr(train_module, "_finish_sweep", lambda: "<the command>")
    monkeypatch.setattr(train_module, "_interrupt_pending", 0)
    train_module._defer_interrupt(signal.SIGTERM, None)
    with pytest.raises(SystemExit) as stop:
        train_module._stop_sweep()
    assert stop.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == ("interrupted by SIGTERM between two jobs of the sweep; finish it with "
                                       "<the command>\n")


def test_a_second_sigterm_still_names_the_checkpoint_to_resume_from(tmp_path):
    # The first is a request to stop after the step; a second, more than a second later, lands
    # where it lands (here: in the logger at step 3, after the step-2 checkpoint).
    (tmp_path / "terminated.py").write_text(
        "import os, signal, time\n"
        "from pinn.loggers import NullLogger\n"
        "class Terminated(NullLogger):\n"
        "    def scalar(self, tag, value, step):\n"
        "        if step == 3 and tag == 'loss/total':\n"
        "            os.kill(os.getpid(), signal.SIGTERM)\n"
        "            time.sleep(1.2)\n"
        "            os.kill(os.getpid(), signal.SIGTERM)\n"
        "            time.sleep(5)\n")
    run = tmp_path / "run"
    result = train(f"hydra.run.dir={run}", *TINY, "trainer.checkpoint_every=2", "logger=none",
                   "logger._target_=terminated.Terminated", modules=tmp_path)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert f"interrupted by SIGTERM; the last checkpoint is {run / 'checkpoints' / 'last.pt'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 2


def test_ctrl_c_as_hydra_ends_the_run_is_one_word(tmp_path):
    # After main() has returned, in Hydra's own teardown: everything is written; no traceback.
    (tmp_path / "late.py").write_text(
        "from hydra.experimental.callback import Callback\n"
        "class Late(Callback):\n"
        "    def on_run_end(self, config, **kwargs):\n"
        "        raise KeyboardInterrupt\n")
    run = tmp_path / "run"
    result = train(f"hydra.run.dir={run}", *TINY, "+hydra.callbacks.late._target_=late.Late", modules=tmp_path)
    assert result.returncode == 128 + signal.SIGINT and result.stderr.endswith("interrupted\n"), result.stderr
    assert "Traceback" not in result.stderr and (run / "metrics.json").is_file()


@pytest.mark.parametrize("before", ["ignored"])  # (the default handler's case: the SIGINT tests above)
def test_a_second_signal_stops_at_once_also_where_it_was_ignored(before):
    """A background job of a script starts with SIGINT ignored; the first one is still a request
    to stop after a checkpoint, and a second one stops the process, as in a terminal."""
    script = ("import os, signal, time\n"
              "from pinn.trainer import _StopOnSignal\n"
              f"signal.signal(signal.SIGINT, signal.{'SIG_IGN' if before == 'ignored' else 'SIG_DFL'})\n"
              "with _StopOnSignal() as stop:\n"
              "    stop.REPEAT_SECONDS = 0.0\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(0.1)\n"
              "    assert stop.signum == signal.SIGINT, 'the first signal is a request'\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(2)\n"
              "print('still running')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGINT and "still running" not in result.stdout, result.stderr


def test_sigint_checkpoints_and_the_printed_command_resumes(tmp_path):
    run = tmp_path / "run"
    # (the printed command must quote the space and braces of the loss weights)
    args = [*TINY, "trainer.max_steps=1000000", "trainer.checkpoint_every=0", "trainer.eval_every=1000",
            "+trainer.loss_weights={boundary: 2.0}", "logger=tensorboard"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run}", *args],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((run / "tensorboard").glob("events.*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # let it train some steps
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "interrupted by SIGINT at step" in stderr and "Traceback" not in stderr
    command = stderr.split("Resume with: ")[1].strip()
    assert f"Resume with: {command}" in (run / "train.log").read_text()  # the run's log says why it stopped
    step = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert step > 0
    assert "'+trainer.loss_weights={boundary: 2.0}'" in command
    assert shlex.split(command)[:2] == ["python", str(ROOT / "train.py")]  # the script as it was launched
    resumed = train(*shlex.split(command)[2:], f"trainer.max_steps={step + 3}")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["steps"] == step + 3
    assert f"resuming {run} at step {step} of {step + 3}" in resumed.stdout + resumed.stderr
    assert f"resuming {run} at step {step} of {step + 3}" in (run / "train.log").read_text()


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="watches the libraries the process has loaded")
@pytest.mark.parametrize("script, signum", [("train.py", signal.SIGINT), ("evaluate.py", signal.SIGINT),
                                            ("train.py", signal.SIGTERM), ("evaluate.py", signal.SIGTERM)],
                         ids=["train.py", "evaluate.py", "train.py-SIGTERM", "evaluate.py-SIGTERM"])
def test_ctrl_c_while_torch_imports_says_interrupted_and_writes_nothing(script, signum, tmp_path):
    run = tmp_path / "run"
    arguments = [f"hydra.run.dir={run}", *TINY] if script == "train.py" else [f"run={run}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / script), *arguments],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    maps, deadline = f"/proc/{proc.pid}/maps", time.monotonic() + 60
    while time.monotonic() < deadline and "libtorch" not in open(maps).read():  # torch's import has begun
        time.sleep(0.002)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    said = "interrupted\n" if signum == signal.SIGINT else "interrupted by SIGTERM\n"
    assert proc.returncode == 128 + signum and stderr == said, stderr
    assert not run.exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_while_hydra_writes_the_record_leaves_the_folder_as_it_found_it(signum, tmp_path, monkeypatch, capsys):
    from omegaconf import OmegaConf

    import train as train_module

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    old, new = tmp_path / "old", tmp_path / "new"
    (old / ".hydra").mkdir(parents=True)  # a finished run's folder, relaunched into
    (old / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (old / "train.log").write_text("the run's log\n")
    for folder in (old, new):
        train_module.RunRecord().on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(folder)},
                                                                          "output_subdir": ".hydra"}}))
        (folder / ".hydra").mkdir(parents=True, exist_ok=True)  # Hydra is part way through this launch's record
        (folder / ".hydra" / "overrides.yaml").write_text("- seed=2\n")
        with open(folder / "train.log", "a") as log:
            log.write("this launch's line\n")
        with pytest.raises(SystemExit) as stop:
            train_module._interrupted_before_training(signum, None)
        assert stop.value.code == 128 + signum
        assert capsys.readouterr().err == ("interrupted\n" if signum == signal.SIGINT else "interrupted by SIGTERM\n")
    assert not new.exists()
    assert sorted(p.name for p in old.rglob("*")) == [".hydra", "overrides.yaml", "train.log"]
    assert (old / ".hydra" / "overrides.yaml").read_text() == "- seed=1\n"
    assert (old / "train.log").read_text() == "the run's log\n"


def test_resume_refuses_other_settings(tmp_path):
    assert train(f"hydra.run.dir={tmp_path / 'a'}", *TINY).returncode == 0
    result = train(f"hydra.run.dir={tmp_path / 'b'}", *TINY, "model.width=16", f"resume={tmp_path / 'a'}")
    assert result.returncode == 2
    assert "model.width: 8 in the checkpoint, 16 now" in result.stderr
    assert "here model.width=8," in result.stderr  # the override that continues it as trained
    result = train(f"hydra.run.dir={tmp_path / 'b'}", *TINY, "optimizer.betas=[0.5,0.6]", f"resume={tmp_path / 'a'}")
    assert result.returncode == 2  # lists are settings too
    assert "optimizer.betas: [0.9, 0.999] in the checkpoint, [0.5, 0.6] now" in result.stderr
    # how the derivatives are computed may change (a run trained with the GPU's kernels, resumed on a CPU)
    result = train(f"hydra.run.dir={tmp_path / 'c'}", *TINY, "derivatives.one_pass=false", f"resume={tmp_path / 'a'}")
    assert result.returncode == 0, result.stderr


def test_resume_past_max_steps_is_refused_and_at_max_steps_finishes(tmp_path):
    assert train(f"hydra.run.dir={tmp_path}", *TINY).returncode == 0  # 4 steps
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    result = train(f"hydra.run.dir={tmp_path}", *TINY, "trainer.max_steps=2", f"resume={tmp_path}")
    assert result.returncode == 2
    assert "has trained 4 steps already, more than trainer.max_steps=2; set trainer.max_steps to 4" in result.stderr
    said = result.stdout + result.stderr
    assert "never reaches L-BFGS" not in said and "pre-flight" not in said  # refused before either
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics  # nothing lost
    # A run stopped after its last step's checkpoint: resuming it only writes its metrics.
    (tmp_path / "metrics.json").unlink()
    result = train(f"hydra.run.dir={tmp_path}", *TINY, f"resume={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert again["steps"] == 4 and again["rel_l2"] == metrics["rel_l2"] and again["loss"] == metrics["loss"]
    # into another folder: its metrics come with the checkpoint they describe, which evaluate.py reads
    other = tmp_path / "other"
    result = train(f"hydra.run.dir={other}", *TINY, f"resume={tmp_path}")
    assert result.returncode == 0, result.stderr
    source, copy = (torch.load(p / "checkpoints" / "last.pt", weights_only=True) for p in (tmp_path, other))
    assert copy["step"] == 4 and all(torch.equal(copy["model"][k], v) for k, v in source["model"].items())
    assert torch.equal(copy["generator"], source["generator"]) and torch.equal(copy["torch"], source["torch"])
    assert json.loads((other / "metrics.json").read_text())["rel_l2"] == metrics["rel_l2"]


def test_a_new_run_never_overwrites_another_runs_checkpoint(tmp_path):
    assert train(f"hydra.run.dir={tmp_path / 'a'}", *TINY).returncode == 0
    assert train(f"hydra.run.dir={tmp_path / 'b'}", *TINY).returncode == 0
    kept = (tmp_path / "a" / "checkpoints" / "last.pt").read_bytes()
    for resume in ([], [f"resume={tmp_path / 'b'}"]):  # a fresh run, or another run's resume, into a
        result = train(f"hydra.run.dir={tmp_path / 'a'}", *TINY, "trainer.max_steps=6", *resume)
        assert result.returncode == 2
        assert f"the run folder {tmp_path / 'a'} already holds a run" in result.stderr
        assert f"continue that run with resume={tmp_path / 'a'}" in result.stderr
    assert (tmp_path / "a" / "checkpoints" / "last.pt").read_bytes() == kept
    # a checkpoint of the run's own folder, resumed in place, is that run
    copy = tmp_path / "a" / "checkpoints" / "step4.pt"
    copy.write_bytes(kept)
    result = train(f"hydra.run.dir={tmp_path / 'a'}", *TINY, "trainer.max_steps=6", f"resume={copy}")
    assert result.returncode == 0, result.stderr


def test_a_refused_launch_leaves_its_run_folder_as_it_found_it(tmp_path):
    run = tmp_path / "run"
    assert train(f"hydra.run.dir={run}", *TINY, "optimizer=adam").returncode == 0
    record = {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()}
    log = (run / "train.log").read_bytes()
    # in place, under other settings: the run's .hydra/ (its overrides, which the message points to) is kept
    result = train(f"hydra.run.dir={run}", *TINY, f"resume={run}")
    assert result.returncode == 2 and "trained with other settings" in result.stderr
    assert {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()} == record
    assert (run / "train.log").read_bytes() == log
    # a new run into the folder: refused, the same
    result = train(f"hydra.run.dir={run}", *TINY, "optimizer=adam", "trainer.max_steps=6")
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()} == record
    # refusals by the trainer itself, up to the first step's loss evaluation, the same; and the
    # finished run's metrics.json stays (it is removed only before a new checkpoint replaces its own)
    metrics = (run / "metrics.json").read_bytes()
    for refused, says in [(["trainer.max_steps=2"], "has trained 4 steps already"),
                          (["+trainer.loss_weights={pdee: 2.0}", "trainer.max_steps=6"], "unknown loss terms ['pdee']")]:
        result = train(f"hydra.run.dir={run}", *TINY, "optimizer=adam", f"resume={run}", *refused)
        assert result.returncode == 2 and says in result.stderr, result.stderr
        assert {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()} == record
        assert (run / "metrics.json").read_bytes() == metrics
        assert (run / "train.log").read_bytes() == log  # the launch's pre-flight and warnings went with it
    # an unexpected error before training (a traceback, exit status 1): the same
    (tmp_path / "boom.py").write_text("class Boom:\n    def __init__(self, log_dir):\n"
                                      "        raise RuntimeError('the logger broke')\n")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run}", *TINY, "optimizer=adam",
                             "trainer.max_steps=6", f"resume={run}", "logger=none", "logger._target_=boom.Boom"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1 and "RuntimeError('the logger broke')" in result.stderr
    assert {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()} == record
    assert (run / "train.log").read_bytes() == log
    # a folder the launch made (and the folders above it, and one made on the way) are removed;
    # one that was there stays, empty
    result = train(f"hydra.run.dir={tmp_path / 'gone' / '..' / 'new' / 'deeper'}", *TINY, f"resume={run}")
    assert result.returncode == 2 and not (tmp_path / "new").exists() and not (tmp_path / "gone").exists()
    (tmp_path / "there").mkdir()
    result = train(f"hydra.run.dir={tmp_path / 'there' / '..' / 'newest'}", *TINY, "optimizer=lbfgs",
                   "loss.weighting=grad_norm")  # refused in the trainer; the path as Hydra resolves it
    assert result.returncode == 2 and "updates its weights at Adam steps" in result.stderr
    assert not (tmp_path / "newest").exists() and list((tmp_path / "there").iterdir()) == []
    (tmp_path / "empty").mkdir()
    result = train(f"hydra.run.dir={tmp_path / 'empty'}", *TINY, "model.width=-1")
    assert result.returncode == 2 and list((tmp_path / "empty").iterdir()) == []
    # an output_dir apart from Hydra's folder, made by the launch: removed with it
    result = train(f"hydra.run.dir={tmp_path / 'hydra'}", f"output_dir={tmp_path / 'out' / 'here'}", *TINY,
                   "model.width=-1")
    assert result.returncode == 2 and not (tmp_path / "hydra").exists() and not (tmp_path / "out").exists()
    # a resume that is accepted records its own launch
    result = train(f"hydra.run.dir={run}", *TINY, "optimizer=adam", "trainer.max_steps=6", f"resume={run}")
    assert result.returncode == 0, result.stderr
    assert "trainer.max_steps=6" in (run / ".hydra" / "overrides.yaml").read_text()


def test_a_refused_launch_leaves_another_launchs_record_alone(tmp_path, monkeypatch):
    # Two launches into one folder: the refused one restores nothing once the other has written its record.
    from omegaconf import OmegaConf

    import train as train_module

    folder = tmp_path / "shared"
    config = OmegaConf.create({"hydra": {"run": {"dir": str(folder)}, "output_subdir": ".hydra"}})
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    record = train_module.RunRecord()
    record.on_run_start(config)
    (folder / ".hydra").mkdir(parents=True)  # what Hydra writes for this launch
    (folder / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    record.on_job_start(config)
    (folder / ".hydra" / "overrides.yaml").write_text("- seed=1\n")  # another launch, a moment later
    train_module.restore_run_folder()
    assert (folder / ".hydra" / "overrides.yaml").read_text() == "- seed=1\n"
    # alone, the same launch removes the folder it made
    other = OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path / "alone")}, "output_subdir": ".hydra"}})
    record.on_run_start(other)
    (tmp_path / "alone" / ".hydra").mkdir(parents=True)
    (tmp_path / "alone" / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    record.on_job_start(other)
    train_module.restore_run_folder()
    assert not (tmp_path / "alone").exists()


def test_a_refused_resume_names_the_group_choice_it_was_trained_with(tmp_path):
    assert train(f"hydra.run.dir={tmp_path / 'a'}", *TINY, "optimizer=adam").returncode == 0
    result = train(f"hydra.run.dir={tmp_path / 'b'}", *TINY, f"resume={tmp_path / 'a'}")  # adam_lbfgs, the default
    assert result.returncode == 2
    restore = result.stderr.split(", here ")[1].split(", and change only")[0]
    assert shlex.split(restore)[0] == "optimizer=adam"
    resumed = train(f"hydra.run.dir={tmp_path / 'b'}", *TINY, "trainer.max_steps=6", f"resume={tmp_path / 'a'}",
                    *shlex.split(restore))
    assert resumed.returncode == 0, resumed.stderr


def test_a_sweep_refuses_one_output_dir_for_all_its_jobs(tmp_path):
    result = train("-m", *TINY, "seed=0,1", f"output_dir={tmp_path / 'one'}", f"hydra.sweep.dir={tmp_path / 's'}")
    assert result.returncode == 2
    with open(tmp_path / "s" / "summary.csv") as f:
        statuses = [r["status"] for r in csv.DictReader(f)]
    assert len(statuses) == 2 and all("every job writes to its own folder" in s for s in statuses)
    assert not (tmp_path / "one").exists()
    # the jobs' folders are named with hydra.sweep.subdir
    result = train("-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path / 't'}", "hydra.sweep.subdir=s${seed}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t" / "s0" / "metrics.json").is_file() and (tmp_path / "t" / "s1" / "metrics.json").is_file()


def test_a_sweep_into_a_used_folder_is_refused_and_keeps_the_earlier_runs(tmp_path):
    assert train("-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=s/${seed}").returncode == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    # (a subfolder that cannot be resolved, too: the check of the earlier runs comes first)
    for subdir in ("s/${seed}", "s/${sed}"):
        result = train("-m", *TINY, "seed=1,2", f"hydra.sweep.dir={tmp_path}", f"hydra.sweep.subdir={subdir}")
        assert result.returncode == 2
        assert (f"the sweep folder {tmp_path} holds the runs of an earlier sweep (2, in the folder(s) s/0, s/1)"
                in result.stderr)
        assert "hydra.sweep.dir=" in result.stderr and "resume=<its folder>" in result.stderr
        assert "the same sweep again with resume=auto" in result.stderr
        # every file as it was: the runs' records (.hydra/), the sweep's record and its summary
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_sweep_may_resume_its_own_runs_in_place(tmp_path):
    assert train("-m", *TINY, "optimizer=adam", "seed=0,1", f"hydra.sweep.dir={tmp_path}").returncode == 0
    result = train("-m", *TINY, "optimizer=adam", "seed=0,1", "trainer.max_steps=6", f"hydra.sweep.dir={tmp_path}",
                   "resume=${hydra:runtime.output_dir}")
    assert result.returncode == 0, result.stderr
    assert [json.loads((tmp_path / job / "metrics.json").read_text())["steps"] for job in "01"] == [6, 6]
    assert "Warning" not in result.stderr  # the check of the sweep ran, and let it through
    # another sweep with the same resume= is refused before anything is written
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = train("-m", *TINY, "optimizer=adam", "seed=5,6", "trainer.max_steps=8", f"hydra.sweep.dir={tmp_path}",
                   "resume=${hydra:runtime.output_dir}")
    assert result.returncode == 2 and "must repeat the sweep that made its runs" in result.stderr, result.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_resume_auto_continues_a_run_where_there_is_one_and_finishes_an_interrupted_sweep(tmp_path):
    run = tmp_path / "run"
    for steps in (4, 6):  # a new run, then the same command again with more steps: continued
        result = train(f"hydra.run.dir={run}", *TINY, "optimizer=adam", f"trainer.max_steps={steps}", "resume=auto")
        assert result.returncode == 0, result.stderr
        assert json.loads((run / "metrics.json").read_text())["steps"] == steps
    assert "resume=auto: continuing the run in" in result.stdout + result.stderr
    # a sweep whose second job never ran (its folder gone), run again with resume=auto
    sweep = tmp_path / "sweep"
    assert train("-m", *TINY, "optimizer=adam", "seed=0,1", f"hydra.sweep.dir={sweep}").returncode == 0
    shutil.rmtree(sweep / "1")
    trained = (sweep / "0" / "checkpoints" / "last.pt").read_bytes()
    result = train("-m", *TINY, "optimizer=adam", "seed=0,1", f"hydra.sweep.dir={sweep}", "resume=auto")
    assert result.returncode == 0, result.stderr
    assert (sweep / "0" / "checkpoints" / "last.pt").read_bytes() == trained  # finished: its metrics again
    assert [json.loads((sweep / job / "metrics.json").read_text())["steps"] for job in "01"] == [4, 4]
    with open(sweep / "summary.csv") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["done", "done"]
    # another sweep (job 1 would be another run) into that folder: refused before anything is written
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    result = train("-m", *TINY, "optimizer=adam", "seed=1,0", f"hydra.sweep.dir={sweep}", "resume=auto")
    assert result.returncode == 2 and "must repeat the sweep that made its runs" in result.stderr
    assert "optimizer=adam seed=0,1; now: " in result.stderr and result.stderr.rstrip().endswith("optimizer=adam seed=1,0")
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before
    # without a folder of its own a run cannot be found again: the log says so
    result = train(*TINY, "optimizer=adam", "resume=auto", cwd=tmp_path)
    assert "resume=auto continues a run in its own folder, but this launch's folder is named by the time it " \
           "started" in result.stdout + result.stderr


def test_an_interrupted_sweep_job_says_how_to_finish_the_sweep(tmp_path):
    (tmp_path / "signalling.py").write_text(
        "import os, signal\n"
        "from pinn.loggers import NullLogger\n"
        "class Signalling(NullLogger):  # Ctrl-C at step 2\n"
        "    def scalar(self, tag, value, step):\n"
        "        if step == 2 and tag == 'lr':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *TINY, "seed=0,1", "logger=none",
                             "logger._target_=signalling.Signalling", f"hydra.sweep.dir={tmp_path / 's'}"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert "interrupted by SIGINT at step" in result.stderr
    assert f"Or finish the whole sweep: the same -m command with resume=auto hydra.sweep.dir={tmp_path / 's'}" \
        in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_between_two_jobs_of_a_sweep_stops_it_as_the_next_one_starts(signum, tmp_path):
    # Raised where it lands, inside Hydra's composition of the next job, it showed a traceback
    # from there, or left that configuration half made (exit 1).
    (tmp_path / "ctrlc.py").write_text(
        "import os, signal\n"
        "from hydra.experimental.callback import Callback\n"
        "class CtrlC(Callback):  # as the first job has ended\n"
        "    def on_job_end(self, config, job_return, **kwargs):\n"
        "        if config.hydra.job.num == 0:\n"
        f"            os.kill(os.getpid(), {int(signum)})\n")
    sweep = tmp_path / "s"
    overrides = ["-m", *TINY, "seed=0,1,2", f"hydra.sweep.dir={sweep}"]
    result = train(*overrides, "+hydra.callbacks.ctrl_c._target_=ctrlc.CtrlC", modules=tmp_path)
    assert result.returncode == 128 + signum, result.stderr
    said = "interrupted" if signum == signal.SIGINT else "interrupted by SIGTERM"
    assert result.stderr.endswith(f"{said} between two jobs of the sweep; finish it with the same -m command with "
                                  f"resume=auto hydra.sweep.dir={sweep}\n"), result.stderr
    assert (sweep / "0" / "metrics.json").is_file() and not (sweep / "1" / "checkpoints").exists()
    assert not (sweep / "2").exists() and not (sweep / "summary.csv").exists()
    assert train(*overrides, "resume=auto").returncode == 0
    assert all((sweep / job / "metrics.json").is_file() for job in "012")


def test_a_sweep_with_nested_job_folders_lists_them_all(tmp_path):
    result = train("-m", *TINY, "model.width=-1,4", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=w/${model.width}")
    assert result.returncode == 2 and "1 of 2 jobs failed" in result.stderr
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"].split(":")[0]) for r in rows] == [("w/4", "done"), ("w/-1", "failed")]
    assert "error: model.width" in (tmp_path / "w" / "-1" / "train.log").read_text()  # the failed job's log says why


def test_a_sweep_that_sends_jobs_to_one_folder_is_refused_before_it_starts(tmp_path):
    result = train("-m", *TINY, "model.width=4,8", "seed=0", f"hydra.sweep.dir={tmp_path / 's'}",
                   "hydra.sweep.subdir=s${seed}")
    assert result.returncode == 2
    assert f"hydra.sweep.subdir=s${{seed}} names one folder, {tmp_path / 's' / 's0'}, for jobs 0, 1 of this sweep" \
        in result.stderr
    assert not (tmp_path / "s").exists()  # no job ran, no record was written
    # Told apart by the time alone: quick jobs start within the same second (here: the same minute)
    result = train("-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path / 's'}", "hydra.sweep.subdir=t${now:%M}")
    assert result.returncode == 2
    assert f"hydra.sweep.subdir=t${{now:%M}} names one folder, {tmp_path / 's' / 't'}" in result.stderr
    assert "(the time, unless to the microsecond, does not tell apart jobs that start close together" in result.stderr
    assert not (tmp_path / "s").exists()
    # ... unless to the microsecond
    result = train("-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'f'}", "hydra.sweep.subdir=t${now:%S%f}")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "f").glob("t*/metrics.json"))) == 2


def test_under_another_sweeper_a_job_does_not_take_the_run_of_another_in_its_folder(tmp_path):
    # A sweeper whose jobs are not known before they run: each job is checked where it starts.
    (tmp_path / "hydra_plugins" / "other").mkdir(parents=True)  # where Hydra looks for sweepers
    (tmp_path / "hydra_plugins" / "other" / "__init__.py").write_text("from hydra._internal.core_plugins.basic_sweeper import BasicSweeper\n"
                                       "class Sweeper(BasicSweeper):\n    pass\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *TINY, "optimizer=adam",
                             "trainer.resample_every=0,2", "hydra.sweeper._target_=hydra_plugins.other.Sweeper",
                             f"hydra.sweep.dir={tmp_path / 'one'}", "hydra.sweep.subdir=s0", "resume=auto"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "another job of this sweep has trained in the job folder" in result.stdout
    assert "hydra.sweep.subdir=s0 names one folder for several jobs" in result.stdout


def test_a_sweep_job_that_crashes_is_listed_and_the_sweep_goes_on(tmp_path):
    # An unexpected exception (not a configuration error): its traceback goes to the job's log.
    (tmp_path / "boom.py").write_text("class Boom:\n    def __init__(self, log_dir):\n"
                                      "        raise RuntimeError('the logger broke')\n")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *TINY, "logger=none",
                             "logger._target_=boom.Boom,pinn.loggers.NullLogger", f"hydra.sweep.dir={tmp_path / 's'}"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    with open(tmp_path / "s" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == [
        "failed: RuntimeError: the logger broke (traceback in the job's log)", "done"]
    assert "RuntimeError: the logger broke" in (tmp_path / "s" / "0" / "train.log").read_text()


def test_resume_accepts_a_setting_added_since_at_its_default(tmp_path):
    # A checkpoint written before optimizer.schedule existed: resuming at the default behaves as
    # that code did, so it is allowed; any other value is refused.
    assert train(f"hydra.run.dir={tmp_path / 'a'}", *TINY).returncode == 0
    path = tmp_path / "a" / "checkpoints" / "last.pt"
    payload = torch.load(path, weights_only=False)
    del payload["config"]["optimizer"]["schedule"]
    torch.save(payload, path)
    result = train(f"hydra.run.dir={tmp_path / 'a'}", *TINY, "optimizer.schedule=cosine", f"resume={tmp_path / 'a'}")
    assert result.returncode == 2
    assert "optimizer.schedule: None in the checkpoint, 'cosine' now" in result.stderr
    result = train(f"hydra.run.dir={tmp_path / 'a'}", *TINY, "trainer.max_steps=6", f"resume={tmp_path / 'a'}")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["steps"] == 6


def test_resume_of_a_missing_or_broken_checkpoint(tmp_path):
    result = train(f"hydra.run.dir={tmp_path / 'b'}", *TINY, f"resume={tmp_path / 'nothing'}")
    assert result.returncode == 2 and "no checkpoint" in result.stderr
    result = train(f"hydra.run.dir={tmp_path / 'b'}", *TINY, "resume=")
    assert result.returncode == 2 and "error: no checkpoint given (an empty path)" in result.stderr, result.stderr
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    result = train(f"hydra.run.dir={tmp_path / 'c'}", *TINY, f"resume={tmp_path / 'junk.pt'}")
    assert result.returncode == 2 and "is damaged or incomplete" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "weights_only" not in result.stderr, result.stderr


@pytest.mark.parametrize("stages", [[], ["optimizer=adam_lbfgs", "optimizer.switch_step=2", "optimizer.lbfgs_dtype=float64"]],
                         ids=["float32", "float64 last stage"])
def test_evaluate_command(tmp_path, stages):
    # evaluated on the same device, in the dtype the run ended in: the same numbers to the last bit,
    # the loss with the weights it was trained with
    assert train(f"hydra.run.dir={tmp_path}", *TINY, *stages, "device=cpu",
                 "trainer.loss_weights={boundary: 10.0}").returncode == 0
    result = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), f"run={tmp_path}", "device=cpu"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    trained = json.loads((tmp_path / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluated["rel_l2"] == trained["rel_l2"] and evaluated["max_abs_error"] == trained["max_abs_error"]
    assert evaluated["loss"] == trained["loss"]
    assert evaluated["steps"] == trained["steps"]
    assert trained["dtype"] == ("float64" if stages else "float32")
    assert "rel_l2" in result.stdout
    for name in ("solution.png", "error.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a checkpoint file outside a run folder: the results go beside it, not two folders up
    elsewhere = tmp_path / "kept" / "step_final.pt"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes((tmp_path / "checkpoints" / "last.pt").read_bytes())
    result = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), f"run={elsewhere}", "device=cpu"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((elsewhere.parent / "evaluation.json").read_text())["loss"] == trained["loss"]
    import evaluate  # and in Python: the trained network, to evaluate anywhere
    from pinn.trainer import Trainer

    torch.manual_seed(5)
    pde, model = evaluate.load(tmp_path, device="cpu")
    drawn = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(drawn, torch.rand(3))  # the caller's random state is left as it was
    assert next(model.parameters()).dtype == (torch.float64 if stages else torch.float32)
    tester = Trainer(n_test=64)  # as TINY sets trainer.n_test
    measured = tester.evaluate(pde, model, *tester.test_set(pde, "cpu"))
    assert measured["rel_l2"] == trained["rel_l2"]  # the trained weights, not fresh ones
    bad = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), f"run={tmp_path / 'nope'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no checkpoint")


def test_training_on_in_place_removes_the_evaluation_of_the_checkpoint_it_replaces(tmp_path, compose_config):
    import evaluate
    import train as train_module

    run = tmp_path / "run"
    settings = [*TINY, "device=cpu", "optimizer=adam", f"output_dir={run}"]
    train_module.run(compose_config(settings))
    before = set(run.iterdir())
    assert evaluate.main([f"run={run}", "device=cpu"]) == 0
    written = set(run.iterdir()) - before  # every file evaluate.py writes, also one added to it later
    assert {path.name for path in written} == {"evaluation.json", "solution.png", "error.png"}
    train_module.run(compose_config([*settings, "trainer.max_steps=6", f"resume={run}"]))
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6
    assert not any(path.exists() for path in written)  # they described step 4


def test_evaluate_takes_a_runs_checkpoints_folder_and_names_a_record_given_for_a_checkpoint(tmp_path, capsys,
                                                                                             compose_config):
    import evaluate
    import train as train_module

    run = tmp_path / "run"
    train_module.run(compose_config([*TINY, "device=cpu", f"output_dir={run}"]))
    trained = json.loads((run / "metrics.json").read_text())
    assert evaluate.main([f"run={run / 'checkpoints'}", "device=cpu"]) == 0
    assert json.loads((run / "evaluation.json").read_text())["loss"] == trained["loss"]  # in the run folder
    assert not (run / "checkpoints" / "evaluation.json").exists()
    capsys.readouterr()
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")  # as Hydra writes it for a launch
    (tmp_path / "summary.csv").write_text("job,overrides\n")  # a sweep's
    for record in (run / "metrics.json", run / ".hydra" / "config.yaml", tmp_path / "summary.csv"):
        assert evaluate.main([f"run={record}", "device=cpu"]) == 2
        assert capsys.readouterr().err == (f"error: {record} is a record of a run or a sweep, not a checkpoint; give a "
                                           "run folder or a .pt file\n")


def test_a_checkpoint_that_no_longer_fits_its_network_is_one_line(tmp_path, compose_config, capsys):
    import evaluate
    import train as train_module
    from pinn.checkpoint import save_checkpoint

    run = tmp_path / "run"
    train_module.run(compose_config([*TINY, "device=cpu", "logger=none", "optimizer=adam", f"output_dir={run}"]))
    checkpoint = run / "checkpoints" / "last.pt"
    payload = torch.load(checkpoint, weights_only=True)
    payload["config"]["model"]["width"] = 16  # as if the network's code had changed since
    save_checkpoint(checkpoint, payload)
    assert evaluate.main([f"run={run}", "device=cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {run} does not fit the network and PDE its configuration builds now (has "
                          "the code of the PDE or the network changed since?): Error(s) in loading state_dict for MLP: "
                          "size mismatch for net.0.weight") and err.count("\n") == 1
    # resumed into such a network by the trainer itself: the same, on one line
    from pinn.derivatives import AutogradEngine
    from pinn.errors import ConfigError
    from pinn.models import MLP
    from pinn.optim import Adam
    from pinn.pdes import Poisson
    from pinn.sampling import SobolSampler
    from pinn.trainer import Trainer

    with pytest.raises(ConfigError, match=r"does not fit this model \(different width, depth or PDE\?\): Error\(s\) "
                                          r"in loading state_dict for MLP: size mismatch") as refused:
        Trainer(max_steps=6, progress=False).fit(
            pde=Poisson(), model=MLP(2, 1, width=16, depth=2), engine=AutogradEngine(), optimizer=Adam(),
            sampler=SobolSampler(n_interior=32, n_boundary=8), generator=torch.Generator(), run_dir=tmp_path / "resumed",
            resume=checkpoint)
    assert "\n" not in str(refused.value)


def test_evaluate_prints_its_numbers_where_it_cannot_write_them(tmp_path, monkeypatch, capsys):
    import evaluate
    from pinn.checkpoint import CheckpointError

    assert train(f"hydra.run.dir={tmp_path}", *TINY, "device=cpu").returncode == 0

    def full(path, data):  # a read-only or full run folder
        raise CheckpointError(f"cannot write {path} (No space left on device); the file there before, if any, is kept")

    monkeypatch.setattr(evaluate, "write_json_atomically", full)
    assert evaluate.main([f"run={tmp_path}", "device=cpu"]) == 2
    out, err = capsys.readouterr()
    assert "rel_l2" in out and "loss" in out
    assert err == f"error: cannot write {tmp_path / 'evaluation.json'} (No space left on device); the file there " \
                  "before, if any, is kept\n"
    assert not (tmp_path / "evaluation.json").exists()


def test_a_point_set_a_pde_reads_without_asking_for_it_is_named(tmp_path):
    (tmp_path / "forgetful.py").write_text(
        "from pinn.pdes import Heat\n"
        "class Forgetful(Heat):\n"
        "    point_sets = ('interior', 'boundary')  # reads 'initial' all the same\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={tmp_path / 'run'}", *TINY,
                             "~pde", "+pde._target_=forgetful.Forgetful"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("error: Forgetful reads the point set 'initial', but its point_sets = "
                                     "('interior', 'boundary') do not ask for it; add 'initial' to point_sets")


def test_a_residual_of_the_wrong_shape_is_one_line_on_a_line_of_its_own(tmp_path):
    (tmp_path / "flat.py").write_text(
        "from pinn.pdes import Poisson\n"
        "from pinn.operators import laplacian\n"
        "class Flat(Poisson):\n"
        "    def residual(self, u, x):\n"
        "        return laplacian(u, x) + x[:, 0]  # (N,): broadcast to (N, N)\n")
    run = tmp_path / "run"
    result = train(f"hydra.run.dir={run}", *TINY, "trainer.progress=true", "pde._target_=flat.Flat", modules=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    # the progress bar is closed first: the message is not appended to its line
    assert result.stderr.splitlines()[-1] == (
        "error: Flat's residual 'pde' has shape (32, 32): an (N,) tensor broadcast against an (N, 1) one? Keep the "
        "column dimension of every term: x[:, 0:1], not x[:, 0] (or .reshape(-1, 1))"), result.stderr
    assert not run.exists()  # training had not started: the new folder is removed


@pytest.mark.parametrize("body, says", [
    # data of the wrong shape, found at the first step
    ("from pinn.conditions import Dirichlet\n"
     "class Mine(Poisson):\n"
     "    def __init__(self, **kwargs):\n"
     "        super().__init__(**kwargs)\n"
     "        self.boundary = Dirichlet(lambda x: 0 * x[:, 0])\n",
     "error: the Dirichlet data must be a function of the points (N, d) -> (N, 1); for points of shape (8, 2) it "
     "returned (8,), not (8, 1); keep the column dimension: x[:, 0:1], not x[:, 0]"),
    # observations of the wrong shape, found as the PDE is built
    ("import torch\n"
     "from pinn.conditions import PointData\n"
     "class Mine(Poisson):\n"
     "    def __init__(self, **kwargs):\n"
     "        super().__init__(**kwargs)\n"
     "        self.data = PointData(torch.zeros(5, 2), torch.zeros(5))\n",
     "error: PointData needs points (P, d) and values (P, k) with the same P > 0; got (5, 2) and (5,)"),
    # a domain that draws outside itself
    ("from pinn.geometry import Box\n"
     "class Shy(Box):\n"
     "    def contains(self, x):\n"
     "        return super().contains(x) & (x[:, 0] < 0)\n"
     "class Mine(Poisson):\n"
     "    def __init__(self, **kwargs):\n"
     "        super().__init__(**kwargs)\n"
     "        self.domain = Shy(-1.0, 1.0, dim=2)\n",
     "error: Mine's point set 'interior': "),
    # a loss of its own left unreduced
    ("class Mine(Poisson):\n"
     "    def losses(self, model, points, engine):\n"
     "        x, u = engine.evaluate(model, points['interior'])\n"
     "        return {'pde': self.residual(u, x).square()}\n",
     "error: Mine's loss 'pde' must be one number, a 0-dimensional tensor such as the mean squared residual "
     "r.square().mean(); got shape (32, 1)"),
], ids=["data", "observations", "domain", "loss"])
def test_a_pde_of_ones_own_that_gives_what_training_cannot_use_is_one_line(tmp_path, body, says):
    (tmp_path / "mine.py").write_text("from pinn.pdes import Poisson\n" + body)
    result = train(f"hydra.run.dir={tmp_path / 'run'}", *TINY, "pde._target_=mine.Mine", modules=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(says) and result.stderr.count("\n") == 1, result.stderr


def test_a_network_of_ones_own_that_drops_the_column_dimension_is_one_line(tmp_path):
    (tmp_path / "mynet.py").write_text(
        "from torch import nn\n"
        "class Flat(nn.Module):\n"
        "    def __init__(self, in_dim, out_dim, **options):  # the mlp choice's width, depth ...\n"
        "        super().__init__()\n"
        "        self.linear = nn.Linear(in_dim, out_dim)\n"
        "    def forward(self, x):\n"
        "        return self.linear(x)[:, 0]\n")
    for constraint in ("false", "true"):  # inside a hard constraint too
        result = train(f"hydra.run.dir={tmp_path / 'run'}", *TINY, "derivatives=autograd", "model._target_=mynet.Flat",
                       f"pde.hard_constraint={constraint}", modules=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("error: the network") and result.stderr.endswith(
            "returned shape (3,)\n" if constraint == "false" else "returned (3,) for points of shape (3, 2)\n"), result.stderr


def test_a_network_that_differentiates_only_where_training_turned_gradients_on_is_one_line(tmp_path):
    (tmp_path / "mynet.py").write_text(
        "import torch\n"
        "from pinn.models import MLP\n"
        "class Curl(torch.nn.Module):\n"
        "    def __init__(self, in_dim, out_dim, **options):\n"
        "        super().__init__()\n"
        "        self.psi_p = MLP(in_dim, 2, **options)\n"
        "    def forward(self, x):  # fails where x does not require gradients\n"
        "        psi_p = self.psi_p(x)\n"
        "        g = torch.autograd.grad(psi_p[:, 0].sum(), x, create_graph=True)[0]\n"
        "        return torch.stack([g[:, 1], -g[:, 0], psi_p[:, 1]], dim=1)\n")
    run = tmp_path / "run"
    result = train(f"hydra.run.dir={run}", *TINY, "pde=kovasznay", "model._target_=mynet.Curl", modules=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and not run.exists(), result.stderr
    assert result.stderr.startswith("error: the network (Curl) runs at points that require gradients but not with "
                                    "gradients on at points that do not") and result.stderr.count("\n") == 1, result.stderr


def test_evaluating_a_run_whose_pde_has_since_gone_wrong_is_one_line(tmp_path):
    module = tmp_path / "mine.py"
    module.write_text("from pinn.pdes import Poisson\nclass Mine(Poisson):\n    pass\n")
    run = tmp_path / "run"
    trained = train(f"hydra.run.dir={run}", *TINY, "logger=none", "pde._target_=mine.Mine", modules=tmp_path)
    assert trained.returncode == 0, trained.stderr
    module.write_text("from pinn.pdes import Poisson\nclass Mine(Poisson):\n"
                      "    def residual(self, u, x):\n        return x[:, 0]\n")
    result = train(f"run={run}", "device=cpu", script="evaluate.py", modules=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr == ("error: Mine's residual 'pde' must be a tensor (N, c), one row per point; got shape "
                             "(32,). Keep the column dimension: x[:, 0:1], not x[:, 0]\n")


def test_classes_of_ones_own_that_cannot_be_built_say_why(tmp_path):
    (tmp_path / "mine.py").write_text(
        "from pinn.pdes import Poisson\n"
        "class Mine(Poisson):\n"
        "    def __init__(self):\n"
        "        super().__init__(dim=2)\n"
        "class Lazy(Poisson):\n"
        "    def __init__(self, **kwargs):\n"
        "        import not_installed_anywhere  # noqa: F401\n")
    (tmp_path / "broken.py").write_text("this is not python\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    for target, says in [
        ("mine.Mine", "unexpected keyword argument 'dim'; the keys come from the pde choice's YAML (configs/pde/), so a "
                      "class of your own needs a YAML of its own (README: Your own PDE), or '~pde' "
                      "'+pde._target_=mine.Mine'"),
        ("mine.Nope", "pde: mine has no 'Nope'; check the class name in pde._target_=mine.Nope"),
        ("mine.Lazy", "pde: cannot import mine.Lazy (No module named 'not_installed_anywhere')"),
        ("broken.Thing", "pde: cannot import broken.Thing"),
        ("math.pi", "pde: Expected a callable target, got '3.141592653589793' of type 'float' (pde._target_=math.pi)"),
    ]:
        result = subprocess.run([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={tmp_path / 'run'}", *TINY,
                                 f"pde._target_={target}"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 2 and result.stderr.startswith(f"error: ") and says in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_more_random_directions_than_coordinates_are_pointed_at_the_exact_engine(tmp_path):
    said = []
    for samples in (16, 2):
        result = train(f"hydra.run.dir={tmp_path / str(samples)}", *TINY, "pde=poisson_ball", "pde.dim=5",
                       "derivatives=stochastic", f"derivatives.samples={samples}", "optimizer=adam")
        assert result.returncode == 0, result.stderr
        said.append(result.stdout + result.stderr)
    assert "derivatives.samples=16 random directions for 5 coordinates: the exact Laplacian (derivatives=forward)" \
        in said[0]
    assert "random directions for" not in said[1]


def test_joblib_launcher_runs_a_local_parallel_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    result = train("-m", *TINY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.width=4,8",
                   f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.glob("*/metrics.json"))) == 2
    assert (tmp_path / "summary.csv").is_file()


def test_submitit_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = train("hydra/launcher=submitit_slurm", "--cfg", "hydra")
    assert result.returncode == 0, result.stderr
    assert "submitit_folder" in result.stdout


def test_evaluate_stopped_by_sigterm_while_writing_leaves_no_temporary_file(tmp_path, capsys):
    import evaluate
    from pinn.checkpoint import write_atomically

    def stopped(f):  # the handler evaluate.py sets for SIGTERM, run as the signal lands mid-write
        f.write(b"half a figure")
        evaluate._interrupted(signal.SIGTERM, None)

    with pytest.raises(SystemExit) as stop:
        write_atomically(tmp_path / "solution.png", stopped)
    assert stop.value.code == 128 + signal.SIGTERM and capsys.readouterr().err == "interrupted by SIGTERM\n"
    assert list(tmp_path.iterdir()) == []


def test_evaluate_help_says_what_it_takes(capsys):
    import evaluate

    for flag in ("--help", "-h"):
        assert evaluate.main([flag]) == 0
        out = capsys.readouterr().out
        assert out.startswith("Evaluate a trained run: python evaluate.py run=") and "device=" in out
    assert evaluate.main(["--verbose"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown argument '--verbose'; usage: python evaluate.py run=")
    assert evaluate.main(["run=a", "run=b"]) == 2
    assert capsys.readouterr().err.startswith("error: run= is given twice ('a', then 'b'); give it once")
    assert evaluate.main(["run="]) == 2  # not "." (the current folder)
    assert capsys.readouterr().err.startswith("error: no checkpoint given (an empty path); give a run folder or")


def test_evaluate_repeats_the_stochastic_engines_loss_with_the_runs_directions(tmp_path, compose_config):
    import evaluate
    import train as train_module

    run = tmp_path / "run"
    trained = train_module.run(compose_config([*TINY, "device=cpu", "pde=poisson_ball", "pde.dim=5", "optimizer=adam",
                                               "derivatives=stochastic", "derivatives.samples=2", f"output_dir={run}"]))
    assert [evaluate.evaluate(run, "cpu")["loss"] for _ in range(2)] == [trained["loss"]] * 2  # not a fresh estimate


def test_evaluate_refuses_a_checkpoint_without_its_configuration_in_one_line(tmp_path, capsys):
    import evaluate
    from pinn.derivatives import AutogradEngine
    from pinn.models import MLP
    from pinn.optim import Adam
    from pinn.pdes import Poisson
    from pinn.sampling import SobolSampler
    from pinn.trainer import Trainer

    Trainer(max_steps=2, n_test=50, progress=False).fit(  # the Python API, without config=
        pde=Poisson(), model=MLP(2, 1, width=8, depth=2), engine=AutogradEngine(), optimizer=Adam(),
        sampler=SobolSampler(n_interior=32, n_boundary=8), generator=torch.Generator().manual_seed(0), run_dir=tmp_path)
    assert evaluate.main([f"run={tmp_path}", "device=cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} holds no configuration or no points (Trainer.fit without config=, say)")
    assert err.count("\n") == 1


def test_evaluate_names_a_setting_an_older_checkpoint_lacks(tmp_path, compose_config, capsys):
    import evaluate
    import train as train_module
    from pinn.checkpoint import save_checkpoint

    run = tmp_path / "run"
    train_module.run(compose_config([*TINY, "device=cpu", "optimizer=adam", f"output_dir={run}"]))
    checkpoint = run / "checkpoints" / "last.pt"
    payload = torch.load(checkpoint, weights_only=True)
    del payload["config"]["trainer"]["n_test"]
    save_checkpoint(checkpoint, payload)
    assert evaluate.main([f"run={run}", "device=cpu"]) == 2
    assert capsys.readouterr().err == (f"error: checkpoint {run}'s configuration has no trainer.n_test; evaluate.py "
                                       "needs the settings train.py writes into a checkpoint\n")
    del payload["config"]["dtype"], payload["dtype"]  # read before the network is built
    save_checkpoint(checkpoint, payload)
    assert evaluate.main([f"run={run}", "device=cpu"]) == 2
    assert capsys.readouterr().err.startswith(f"error: checkpoint {run}'s configuration has no dtype;")
