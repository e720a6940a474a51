"""Every YAML in every group composes, instantiates, and trains a few steps."""

import json
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, TINY
from omegaconf import OmegaConf

import train
from pinn.errors import ConfigError

GROUPS = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())
CHOICES = [(group, yaml.stem) for group in GROUPS if group != "experiment"  # experiments: tested below
           for yaml in sorted((CONFIGS / group).glob("*.yaml"))]


def test_every_group_is_present():
    assert set(GROUPS) >= {"pde", "model", "optimizer", "sampler", "trainer", "logger", "derivatives", "loss"}


@pytest.mark.parametrize("group,choice", CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_every_choice_composes_instantiates_and_trains(group, choice, compose_config, tmp_path):
    overrides = [f"{group}={choice}", f"output_dir={tmp_path}", "device=cpu", *TINY]
    if group == "optimizer" and choice == "adam_lbfgs":
        overrides.append("optimizer.switch_step=2")
    if group == "optimizer" and choice in ("lbfgs", "adam_lbfgs"):
        overrides.append("optimizer.max_iter=2")
    if group == "sampler" and choice in ("rad", "rar"):  # adaptive: they act at resampling steps
        overrides += ["trainer.resample_every=2", "sampler.n_candidates=64"]
    cfg = compose_config(overrides)
    assert cfg[group]["_target_"].startswith("pinn.")
    metrics = train.run(cfg)
    assert metrics["steps"] == 4
    assert (tmp_path / "metrics.json").is_file()
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 4


def test_documented_overrides_take_effect(compose_config, tmp_path):
    cfg = compose_config([
        f"output_dir={tmp_path}", "trainer.max_steps=3", "optimizer=adam", "optimizer.lr=0.01", "model.width=12",
        "model.depth=2", "model.activation=sin", "sampler.n_interior=40", "sampler.n_boundary=12", "seed=3",
        "device=cpu", "dtype=float64", "pde.dim=3", "logger=none", "trainer.n_test=50", "trainer.progress=false",
    ])
    metrics = train.run(cfg)
    assert metrics["dtype"] == "float64" and metrics["device"] == "cpu" and metrics["steps"] == 3
    # 3 inputs -> 12 -> 12 -> 1 parameters
    assert metrics["n_parameters"] == (3 * 12 + 12) + (12 * 12 + 12) + (12 + 1)
    assert not (tmp_path / "tensorboard").exists()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["config"]["optimizer"]["lr"] == 0.01
    assert ckpt["points"]["interior"].shape == (40, 3)
    # The top-level points and random state are rank 0's own, stored once.
    assert ckpt["points"]["interior"].data_ptr() == ckpt["ranks"][0]["points"]["interior"].data_ptr()
    assert torch.equal(ckpt["generator"], ckpt["ranks"][0]["generator"])


def test_same_seed_same_result(compose_config, tmp_path):
    results = []
    for run in ("a", "b"):
        cfg = compose_config([f"output_dir={tmp_path / run}", "dtype=float64", "device=cpu", "logger=none", *TINY])
        results.append(train.run(cfg)["loss"])
    assert results[0] == results[1]


@pytest.mark.parametrize("override,match", [
    ("model.activation=relu", "model.activation"),
    ("model.width=-4", "model.width"),
    ("sampler.n_interior=0", "sampler.n_interior"),
    ("trainer.max_steps=0", "trainer.max_steps"),
    ("optimizer.lr=-1", "optimizer.lr"),
    ("dtype=float16", "dtype"),
    ("device=tpu", "device"),
    ("pde.dim=0", "pde.dim"),
    ("pde._target_=builtins.dict", r"pde._target_=builtins.dict made a dict, not a PDE: name a subclass of pinn.pdes.PDE"),
])
def test_invalid_values_raise_config_error(override, match, compose_config, tmp_path):
    cfg = compose_config([f"output_dir={tmp_path}", *TINY, override])
    with pytest.raises(ConfigError, match=match):
        train.run(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on a machine without a GPU")
def test_cuda_without_gpu_is_an_error(compose_config, tmp_path):
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train.run(compose_config([f"output_dir={tmp_path}", *TINY, "device=cuda"]))


def test_auto_device_picks_what_is_there():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert train.resolve_device("auto").type == expected


def test_engine_is_chosen_by_group_or_key(compose_config, tmp_path):
    from pinn.derivatives import ForwardEngine, StochasticEngine

    for overrides, kind in ((["derivatives=forward"], ForwardEngine), (["derivatives.engine=stochastic"], StochasticEngine)):
        cfg = compose_config([f"output_dir={tmp_path}", *overrides])
        assert isinstance(train._build(cfg.derivatives, "derivatives"), kind)


def test_an_error_inside_a_class_of_ones_own_is_its_own_not_the_yamls(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    (tmp_path / "mine.py").write_text(
        "from pinn.geometry import Box\n"
        "from pinn.pdes import Poisson\n"
        "class Passes(Poisson):\n"
        "    def __init__(self, **options):\n"
        "        super().__init__(**options)\n"
        "class Misnames(Poisson):\n"
        "    def __init__(self, **options):\n"
        "        super().__init__(**options)\n"
        "        self.domain = Box(-1.0, 1.0, dimension=2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # a key the class passes on to its base, which takes no such key: the YAML's mistake, in one line
    with pytest.raises(ConfigError, match=r"pde: Poisson.__init__\(\) got an unexpected keyword argument 'dimm'"):
        train._build(OmegaConf.create({"_target_": "mine.Passes", "dimm": 2}), "pde")
    # a call of the class's own with a wrong argument: its own error, whose traceback names the line
    with pytest.raises(TypeError, match=r"Box.__init__\(\) got an unexpected keyword argument 'dimension'") as error:
        train._build(OmegaConf.create({"_target_": "mine.Misnames", "dim": 2}), "pde")
    assert error.traceback[-1].path.name == "mine.py" and error.value.__suppress_context__


@pytest.mark.parametrize("node,match", [
    ({"dim": 2}, r"pde: its YAML names no _target_, the class to build .*; its keys are \['dim'\]"),
    ({"_target_": "pinn.pdes.Poisson", "dim": "???"}, r"pde: Missing mandatory value: dim"),
    ({"_target_": "pinn.pdes.Poisson", "dim": "${oops}"}, r"pde: Interpolation key 'oops' not found"),
], ids=["no target", "value left to fill in", "interpolation"])
def test_a_yaml_of_ones_own_that_cannot_be_built_is_one_line(node, match):
    from omegaconf import OmegaConf

    with pytest.raises(ConfigError, match=match):
        train._build(OmegaConf.create(node), "pde")


EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_trains(name, compose_config, tmp_path):
    """The recipes of docs/results.md, shrunk to a few steps (the command line wins over them)."""
    overrides = [f"experiment={name}", f"output_dir={tmp_path}", "device=cpu", "logger=none", *TINY]
    recipe = compose_config(overrides)
    if "switch_step" in recipe.optimizer:  # reach the L-BFGS stage within the few steps
        overrides += ["optimizer.switch_step=2", "optimizer.max_iter=2"]
    cfg = compose_config(overrides)
    assert cfg.pde._target_ == recipe.pde._target_ and cfg.pde._target_.startswith("pinn.pdes.")
    metrics = train.run(cfg)
    assert metrics["steps"] == 4 and metrics["loss"] == metrics["loss"]


@pytest.mark.parametrize("path", sorted((CONFIGS / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_file_lists_every_option_of_its_network(path):
    # So that any option can be set on any choice (model=rwf model.fourier_features=16), without `+`.
    import inspect

    from hydra.utils import get_object
    from omegaconf import OmegaConf

    node = OmegaConf.load(path)
    options = set(inspect.signature(get_object(node._target_)).parameters) - {"in_dim", "out_dim"}
    assert options <= set(node.keys()), f"{path.name} lacks {sorted(options - set(node.keys()))}"


def test_the_printed_resume_command_relaunches_as_many_processes():
    run = Path("runs/x")
    assert train._resume_command(run) == "python train.py resume=runs/x hydra.run.dir=runs/x"
    assert train._resume_command(run, 4, 4).startswith("torchrun --standalone --nproc_per_node=4 train.py ")
    # across machines only the run's own launch options know the nodes and the rendezvous
    assert train._resume_command(run, 8, 4).startswith("torchrun <the launch options the run was started with> train.py ")


def test_an_adaptive_sampler_resamples_without_another_override(compose_config):
    # sampler=rad and sampler=rar act only at resampling steps: choosing one sets them going.
    assert compose_config([]).trainer.resample_every == 0
    for sampler in ("rad", "rar"):
        assert compose_config([f"sampler={sampler}"]).trainer.resample_every == 100
        assert compose_config([f"sampler={sampler}", "trainer.resample_every=7"]).trainer.resample_every == 7
    assert compose_config(["experiment=burgers"]).trainer.resample_every == 500  # a recipe's own value wins


def test_a_refused_resume_names_an_adaptive_sampler_by_its_choice(compose_config):
    saved = train._settings(OmegaConf.to_container(compose_config(["sampler=rad", "sampler.k=2"])))
    choice, settings = train._choice_of("sampler", saved)
    assert choice == "sampler=rad" and settings["sampler.k"] == 1.0 and "sampler.trainer.resample_every" not in settings


@pytest.mark.parametrize("text,where", [
    ("pde:\n  dim: 3\n   k: 2\n", ", line 3, column 5 is not valid YAML (mapping values are not allowed"),
    ("a: [1, 2\n", ", line 2, column 1 is not valid YAML (did not find expected ',' or ']')"),
    (b"a: \xff\n", " is not valid YAML ('utf-8' codec can't decode byte 0xff"),
])
def test_a_file_of_the_launch_that_is_not_yaml_is_one_line(text, where, tmp_path, capsys):
    # Hydra would print its YAML loader's traceback; named directly, or chosen by a file named
    (tmp_path / "pde").mkdir()
    (tmp_path / "experiment").mkdir()
    broken = tmp_path / "pde" / "broken.yaml"
    broken.write_bytes(text if isinstance(text, bytes) else text.encode())
    (tmp_path / "experiment" / "mine.yaml").write_text("defaults:\n  - override /pde: broken\n")
    for argv in (["--config-dir", str(tmp_path), "pde=broken"], [f"--config-dir={tmp_path}", "-m", "experiment=heat,mine"]):
        with pytest.raises(SystemExit) as exit_:
            train._refuse_invalid_yaml(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {broken}{where}") and err.count("\n") == 1, err


def test_a_broken_file_the_launch_does_not_read_is_left_alone(tmp_path):
    (tmp_path / "pde").mkdir()
    (tmp_path / "pde" / "broken.yaml").write_text("a: [1, 2\n")
    train._refuse_invalid_yaml(["--config-dir", str(tmp_path), "pde=heat", "model.width=8"])  # no exit
