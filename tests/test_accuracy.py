"""Accuracy targets: long runs, excluded from the default suite (run with `python -m pytest -m slow`)."""

import pytest
from conftest import ROOT  # noqa: F401  (puts train.py on the path)

import train


@pytest.mark.slow
def test_default_poisson_reaches_1e_3(compose_config, tmp_path):
    # The default configuration, as `python train.py pde=poisson` runs it (about a minute on 2 cores).
    metrics = train.run(compose_config([f"output_dir={tmp_path}", "logger=none", "trainer.progress=false"]))
    assert metrics["rel_l2"] <= 1e-3


@pytest.mark.slow
def test_forward_engine_reaches_the_same_accuracy(compose_config, tmp_path):
    metrics = train.run(compose_config([f"output_dir={tmp_path}", "logger=none", "trainer.progress=false",
                                        "derivatives=forward"]))
    assert metrics["rel_l2"] <= 1e-3


@pytest.mark.slow
def test_heat_inverse_recovers_the_diffusivity(compose_config, tmp_path):
    # The heat_inverse recipe with half the Adam steps: α from 50 observations with 1 % noise.
    metrics = train.run(compose_config([
        "experiment=heat_inverse", f"output_dir={tmp_path}", "logger=none", "trainer.progress=false",
        "optimizer.switch_step=1000", "trainer.max_steps=1150",
    ]))
    assert metrics["alpha_rel_error"] <= 0.01
    assert metrics["rel_l2"] <= 1e-2


@pytest.mark.slow
def test_kovasznay_reaches_1e_3(compose_config, tmp_path):
    # The kovasznay recipe (hard boundary constraint) at reduced size: 1,500 points, 1,500 Adam
    # steps, 100 self-scaling BFGS steps.
    metrics = train.run(compose_config([
        "experiment=kovasznay", f"output_dir={tmp_path}", "logger=none", "trainer.progress=false",
        "sampler.n_interior=1500", "optimizer.switch_step=1500",
        "optimizer.decay_steps=1500", "trainer.max_steps=1600",
    ]))
    assert metrics["rel_l2"] <= 1e-3
