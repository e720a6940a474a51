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
