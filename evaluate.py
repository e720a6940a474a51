"""Evaluate a trained run: python evaluate.py run=<run folder or checkpoint> [device=auto|cpu|cuda]

Loads the checkpoint and the configuration stored in it, rebuilds the PDE and the network,
prints the error against the exact solution and the loss terms on the run's own points, and
writes evaluation.json, solution.png (every output) and, where an exact solution is known,
error.png into the run folder (beside the checkpoint, for a file outside a run folder).

  run=     a run folder (outputs/<date>/<time>), its checkpoints folder, or a checkpoint file
  device=  auto (a CUDA GPU where there is one), cpu or cuda
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any


def _interrupted(signum: int, frame: Any) -> None:
    # Each file is written whole or not at all (write_atomically), its temporary file removed.
    print("interrupted" if signum == signal.SIGINT else f"interrupted by {signal.Signals(signum).name}", file=sys.stderr)
    sys.exit(128 + signum)


if __name__ == "__main__":  # Ctrl-C (or SIGTERM) at any point, torch's import included: one line, not a traceback
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, _interrupted)

import torch
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

import train
from pinn.checkpoint import CheckpointError, load_checkpoint, write_json_atomically
from pinn.errors import ConfigError, PDEError
from pinn.plotting import save_figures, solution_slice
from pinn.trainer import Trainer

USAGE = "usage: python evaluate.py run=<run folder or checkpoint> [device=auto|cpu|cuda]"


def parse(argv: list[str]) -> dict[str, str]:
    options, given = {"device": "auto"}, {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in ("run", "device"):
            raise ConfigError(f"unknown argument {arg!r}; {USAGE}")
        if key in given:
            raise ConfigError(f"{key}= is given twice ({given[key]!r}, then {value!r}); give it once")
        options[key] = given[key] = value
    if "run" not in options:
        raise ConfigError(f"missing run=<folder>; {USAGE}")
    return options


def output_folder(run: Path) -> Path:
    """Where the results go: the run folder, also for its ``checkpoints`` folder and the files
    in it; beside any other checkpoint file."""
    if run.is_dir():
        return run.parent if run.name == "checkpoints" and not (run / "checkpoints").is_dir() else run
    return run.parent.parent if run.parent.name == "checkpoints" else run.parent


def load(run: str | Path, device: str = "auto") -> tuple[torch.nn.Module, torch.nn.Module]:
    """The PDE and the trained network of a saved run (a run folder or a checkpoint file), on
    ``device``, in the dtype its last stage trained in: ``pde, model = load(run)``, then
    ``model(x)`` for points ``x`` ``(N, d)`` of that dtype, or the operators on it."""
    pde, model, *_ = _restore(run, device)
    return pde, model


def _restore(run: str | Path, device: str) -> tuple[torch.nn.Module, torch.nn.Module, dict, torch.device, torch.dtype]:
    payload = load_checkpoint(run)
    if not payload.get("config") or "points" not in (payload.get("ranks") or [payload])[0]:
        raise CheckpointError(f"{run} holds no configuration or no points (Trainer.fit without config=, say): "
                              "evaluate.py rebuilds the run from them, so it needs a checkpoint that train.py wrote")
    cfg = OmegaConf.create(payload["config"])
    # The dtype the run ended in (a float64 L-BFGS stage after float32 Adam, say), so that the
    # trained weights are evaluated as they were trained, not rounded.
    device_ = train.resolve_device(device)
    try:
        dtype = train.resolve_dtype(payload["dtype"] if "dtype" in payload else cfg.dtype)
        with torch.random.fork_rng(devices=[]):  # its fresh weights draw from the caller's random state
            pde, model = train.build_problem(cfg)
    except ConfigAttributeError as exc:
        raise _lacks(run, exc) from None
    # Converted before loading: loading float64 weights into float32 ones would round them.
    model.to(device=device_, dtype=dtype).eval()
    pde.to(device=device_, dtype=dtype)
    try:
        model.load_state_dict(payload["model"])
        pde.load_state_dict(payload.get("pde", {}))
    except RuntimeError as exc:  # PyTorch's list of the keys and shapes that differ, on one line
        raise ConfigError(f"checkpoint {run} does not fit the network and PDE its configuration builds now (has the "
                          f"code of the PDE or the network changed since?): {' '.join(str(exc).split())}") from exc
    return pde, model, payload, device_, dtype


def evaluate(run: str | Path, device: str = "auto") -> dict:
    """Metrics of a saved run; also writes them and the figures into the run folder (where they
    cannot be written, ``not_written`` says why)."""
    pde, model, payload, device_, dtype = _restore(run, device)
    try:
        return _measure(run, pde, model, payload, device_, dtype)
    except ConfigAttributeError as exc:
        raise _lacks(run, exc) from None


def _lacks(run, exc: ConfigAttributeError) -> ConfigError:
    """The error for a checkpoint whose configuration lacks a setting (one older than it, say)."""
    return ConfigError(f"checkpoint {run}'s configuration has no {exc.full_key}; evaluate.py needs the settings "
                       "train.py writes into a checkpoint")


def _measure(run, pde, model, payload: dict, device_: torch.device, dtype: torch.dtype) -> dict:
    cfg = OmegaConf.create(payload["config"])
    trainer = Trainer(n_test=cfg.trainer.n_test, image_resolution=cfg.trainer.image_resolution, progress=False,
                      loss_weights=cfg.trainer.get("loss_weights"))  # the total as it was trained
    test_x, test_exact = trainer.test_set(pde, device_)
    metrics = trainer.evaluate(pde, model, test_x, test_exact)
    engine = train._build(cfg.derivatives, "derivatives")
    engine.check_pde(pde)
    # The loss as training reported it: each process's on its own points (and, for self-adaptive
    # weighting, with its own point weights), averaged over the processes.
    values = []
    for rank in payload.get("ranks") or [payload]:
        if "loss" in cfg:  # the loss as it was trained: weights, causal and self-adaptive weighting
            trainer.balance = train._build(cfg.loss, "loss")
            trainer.balance.load(rank.get("balance", payload.get("balance", {})), device_)
            trainer.balance.to(dtype=dtype)  # as the trainer does: weights in the network's dtype
        points = {k: v.to(device=device_, dtype=dtype) for k, v in rank["points"].items()}
        with torch.random.fork_rng(devices=[device_] if device_.type == "cuda" else []):
            if engine.name == "stochastic":  # the directions the run's last loss took (on the device it ran on)
                _random_state_of(rank, device_)
            total, terms = trainer.losses(pde, model, engine, points)
        values.append(trainer.reported(total, terms))
    total, terms, plain = trainer.unpack(torch.stack(values).mean(dim=0), list(terms))
    metrics.update(loss=total.item(), **{f"loss_{k}": v.item() for k, v in terms.items()},
                   **{f"mse_{k}": v.item() for k, v in plain.items()}, steps=int(payload["step"]))

    folder = output_folder(Path(run))
    try:
        write_json_atomically(folder / "evaluation.json", metrics)
        metrics["figures"] = [str(p) for p in save_figures(solution_slice(pde, model, 201, device_, dtype), folder)]
    except (CheckpointError, OSError) as exc:  # a read-only run folder, say: the numbers are still worth printing
        metrics["not_written"] = str(exc) if isinstance(exc, CheckpointError) else f"cannot write into {folder} ({exc})"
    return metrics


def _random_state_of(rank: dict, device: torch.device) -> None:
    """Set the random state a checkpoint saved for ``rank`` (its process), where it has one for
    ``device``: the state the run's final loss drew its random directions from."""
    if device.type == "cuda":
        states = rank.get("cuda") or []
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index < len(states):
            torch.cuda.set_rng_state(states[index], device)
    elif "torch" in rank:
        torch.set_rng_state(rank["torch"])


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip())
        return 0
    try:
        options = parse(argv)
        metrics = evaluate(options["run"], options["device"])
    except (ConfigError, PDEError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    not_written = metrics.pop("not_written", None)
    for key, value in metrics.items():
        shown = f"{value:.4e}" if isinstance(value, float) else ", ".join(value) if isinstance(value, list) else value
        print(f"{key:>16}: {shown}")
    if not_written is not None:
        print(f"error: {not_written}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
