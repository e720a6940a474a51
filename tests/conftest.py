import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
sys.path.insert(0, str(ROOT))  # train.py lives at the top level, beside pinn/

#: Overrides that make any configuration train in well under a second.
TINY = [
    "trainer.max_steps=4", "trainer.log_every=1", "trainer.eval_every=2", "trainer.checkpoint_every=2",
    "trainer.n_test=64", "trainer.image_resolution=8", "trainer.progress=false",
    "sampler.n_interior=32", "sampler.n_boundary=8", "model.width=8", "model.depth=2",
]


@pytest.fixture
def compose_config():
    """Compose the real configs with Hydra's compose API, as train.py would."""
    from hydra import compose, initialize_config_dir

    def _compose(overrides=()):
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


@pytest.fixture
def float64():
    """Make float64 the default dtype for one test."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True, scope="session")
def reference_cache(tmp_path_factory):
    """Reference solutions are cached in a folder of the test session, not the user's home."""
    import os

    previous = os.environ.get("PINN_CACHE")
    os.environ["PINN_CACHE"] = str(tmp_path_factory.mktemp("pinn-cache"))
    yield
    if previous is None:
        os.environ.pop("PINN_CACHE", None)
    else:
        os.environ["PINN_CACHE"] = previous
