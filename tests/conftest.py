import os
import sys
from pathlib import Path

import pytest
import torch

# Without a CUDA GPU, Triton's kernels (pinn.fused) run in its CPU interpreter, so that the
# tests can check them anywhere. Triton reads this when it is first imported, which importing
# torch does not do. (Asked of PyTorch, not of /dev/nvidiactl, which a sandboxed GPU machine
# may not show.)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
sys.path.insert(0, str(ROOT))  # train.py lives at the top level, beside pinn/

# pytest-xdist runs the tests in several worker processes: share the cores among them instead
# of giving each worker's torch all of them (subprocesses started by the tests keep the default).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

#: Overrides that make any configuration train in well under a second. Without TensorBoard,
#: whose figures (matplotlib's import, and each drawing) take about a second of each launch: the
#: tests of what it records add logger=tensorboard after these.
TINY = [
    "trainer.max_steps=4", "trainer.log_every=1", "trainer.eval_every=2", "trainer.checkpoint_every=2",
    "trainer.n_test=64", "trainer.image_resolution=8", "trainer.progress=false",
    "sampler.n_interior=32", "sampler.n_boundary=8", "model.width=8", "model.depth=2", "logger=none",
]


def tensorboard_steps(folder, tag):
    """The steps of ``tag`` as TensorBoard's own server reads them (its plugins' reader: the
    first session start in a folder begins the run, each later one drops the steps from its own
    on; the older ``event_accumulator`` drops them at any start)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return [e.step for e in events.Tensors(tag)]


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
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True, scope="session")
def reference_cache(tmp_path_factory):
    """Reference solutions are cached in a folder of the test session, not the user's home
    (one folder for all of the session's workers: a cache entry is written atomically)."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the run's own folder, above each worker's
    cache = root / "pinn-cache"
    cache.mkdir(exist_ok=True)
    previous = os.environ.get("PINN_CACHE")
    os.environ["PINN_CACHE"] = str(cache)
    yield
    if previous is None:
        os.environ.pop("PINN_CACHE", None)
    else:
        os.environ["PINN_CACHE"] = previous
