"""train.py as a user runs it: a real process, real run folders, one-line errors."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, TINY


def train(*overrides, cwd=None):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd or ROOT,
                          capture_output=True, text=True, env=env, timeout=300)


def test_train_writes_checkpoint_metrics_and_tensorboard(tmp_path):
    result = train(f"hydra.run.dir={tmp_path}", *TINY)
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

    assert train(f"hydra.run.dir={tmp_path}", *TINY).returncode == 0
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


def test_multirun_gives_one_folder_per_job(tmp_path):
    result = train("-m", *TINY, "model.width=4,8", "seed=0,1", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    metrics = sorted(tmp_path.glob("*/metrics.json"))
    assert len(metrics) == 4


@pytest.mark.parametrize("override,match", [
    ("model.activation=relu", "unknown model.activation 'relu'; valid choices: tanh"),
    ("sampler.n_interior=-5", "sampler.n_interior must be an integer > 0"),
    ("dtype=float16", "unknown dtype 'float16'; valid choices: float32, float64"),
    ("device=tpu", "unknown device 'tpu'; valid choices: auto, cpu, cuda"),
    ("trainer.max_steps=0", "trainer.max_steps must be an integer > 0"),
])
def test_bad_values_end_in_one_line(override, match, tmp_path):
    result = train(f"hydra.run.dir={tmp_path}", *TINY, override)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and match in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_group_choice_lists_the_options(tmp_path):
    result = train(f"hydra.run.dir={tmp_path}", "pde=nosuch")
    assert result.returncode != 0
    assert "Could not find 'pde/nosuch'" in result.stderr and "poisson" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_key_is_refused(tmp_path):
    result = train(f"hydra.run.dir={tmp_path}", "model.widht=8")
    assert result.returncode != 0
    assert "widht" in result.stderr and "Traceback" not in result.stderr
