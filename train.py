"""Train a PINN: ``python train.py pde=poisson`` (see README.md for the overrides).

The only file that touches Hydra: it composes the configuration, turns each group into an
object, checks the operators on the chosen device, and hands everything to the trainer.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import inspect
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


#: The signals that stop a launch (Ctrl-C; a scheduler's or ``timeout``'s stop), alike everywhere:
#: before training the folder is left as it was found, during it a checkpoint is written first.
#: Under torchrun SIGTERM keeps its default outside training (where the trainer takes it):
#: torchrun sends it to every process once one fails or it is stopped itself, and a process
#: blocked in a collective, waiting for one that has exited, cannot run a handler; it would wait
#: 30 s for torchrun's SIGKILL (and the run folder is not restored under torchrun anyway).
STOP_SIGNALS = (signal.SIGINT,) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else (signal.SIGINT, signal.SIGTERM)


def _interruption(signum: int) -> str:
    return "interrupted" if signum == signal.SIGINT else f"interrupted by {signal.Signals(signum).name}"


def _interrupted(signum: int, frame: Any) -> None:
    print(_interruption(signum), file=sys.stderr)  # nothing has been written yet (or it has been put back)
    sys.exit(128 + signum)


if __name__ == "__main__":  # Ctrl-C in the second or two that torch takes to import: no traceback from inside it
    for _signum in STOP_SIGNALS:
        signal.signal(_signum, _interrupted)

import hydra
import torch
import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import setup_globals
from hydra.errors import HydraException, InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from pinn.checkpoint import CheckpointError, load_checkpoint, write_atomically, write_text_atomically
from pinn.distributed import TORCH_STREAM, init_from_env, local_rank, rank_seed
from pinn.errors import ConfigError, PDEError, PreflightError, check_choice, check_flag
from pinn.pdes.base import PDE
from pinn.preflight import preflight
from pinn.trainer import CHECKPOINT_NAME, METRICS_NAME, TrainingDiverged, TrainingInterrupted

log = logging.getLogger("pinn")

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when a GPU is present; ``cuda`` without one is an error, not a fallback."""
    base = str(name).split(":")[0]
    check_choice("device", base, DEVICES)
    if base == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA GPU is available to PyTorch; use device=auto or device=cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name} is not a device; use auto, cpu, cuda or cuda:<index>") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name}, but PyTorch sees {torch.cuda.device_count()} CUDA GPU(s), "
                          f"numbered from 0; use device=cuda or an index below {torch.cuda.device_count()}")
    return device


def resolve_dtype(name: str) -> torch.dtype:
    check_choice("dtype", name, DTYPES)
    return DTYPES[name]


def tune_cpu_allocator() -> None:
    """Keep freed memory in glibc's heap instead of returning it to the system.

    Double-backward graphs allocate and free many buffers of 0.1-10 MB per step. Above
    glibc's default mmap threshold each is a fresh mapping whose pages fault and zero-fill on
    first touch; raising the threshold lets them be reused (measured: CPU training steps ~25 %
    faster). A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass


def _build(node: DictConfig, group: str, **runtime: Any) -> Any:
    """Instantiate one config group, turning Hydra's wrapped errors back into ConfigError."""
    if "_target_" not in node:
        raise ConfigError(f"{group}: its YAML names no _target_, the class to build (a line such as "
                          f"'_target_: my_module.MyClass'); its keys are {sorted(node)}")
    try:
        return instantiate(node, **runtime)
    except OmegaConfBaseException as exc:  # a value the YAML leaves to fill in (???), an interpolation that fails
        raise ConfigError(f"{group}: {str(exc).splitlines()[0]}") from exc
    except InstantiationException as exc:
        cause, target = exc.__cause__, str(node.get("_target_"))
        if isinstance(cause, (ConfigError, PDEError)):  # one line that says what is wrong
            raise cause
        if cause is None:  # Hydra's own refusal of the target (not callable, say): its message on one line
            reason = " ".join(line for line in str(exc).splitlines() if not line.startswith("full_key:"))
            raise ConfigError(f"{group}: {' '.join(reason.split())} ({group}._target_={target})") from exc
        if isinstance(cause, TypeError) and _from_the_call(cause, target):  # an unknown or missing key in the YAML
            hint = ""
            if "unexpected keyword argument" in str(cause) and not target.startswith("pinn."):
                # a class of one's own given the keys of the group's choice
                hint = (f"; the keys come from the {group} choice's YAML (configs/{group}/), so a class of your own "
                        f"needs a YAML of its own (README: Your own PDE), or '~{group}' '+{group}._target_={target}'")
            raise ConfigError(f"{group}: {cause}{hint}") from exc
        if isinstance(cause, ImportError):  # a _target_ in a module Python cannot find
            module, _, name = target.rpartition(".")
            found = sys.modules.get(module)  # the module Hydra imported, where it could
            if found is not None and not hasattr(found, name):
                raise ConfigError(f"{group}: {module} has no {name!r}; check the class name in {group}._target_="
                                  f"{target}") from exc
            reason = " ".join(str(cause.__cause__ or cause).split())  # one line: the module Python did not find
            raise ConfigError(f"{group}: cannot import {target} ({reason}); if it is in a module of your "
                              "own, put the module's folder on PYTHONPATH (for train.py and evaluate.py alike)") from exc
        if cause.__traceback__ is not None and cause.__traceback__.tb_next is not None:
            raise cause from None  # raised inside the target's own code: its traceback, which names the line
        raise


def _from_the_call(error: TypeError, target: str) -> bool:
    """Whether ``error`` comes from calling ``target`` with the YAML's keys (an unknown or a
    missing one), directly or passed on to a base class (``super().__init__(**options)``), and
    not from the code inside it (a call of its own with a wrong argument)."""
    frames = error.__traceback__
    if frames is None or frames.tb_next is None:  # nothing ran inside the target
        return True
    try:
        called = get_object(target)
    except Exception:  # noqa: BLE001 -- whatever it is, it was called: the message decides
        return False
    names = {getattr(called, "__name__", "")} | {base.__name__ for base in getattr(called, "__mro__", ())}
    return str(error).split("(")[0].split(".")[0] in names


#: Settings a resumed run must share with its checkpoint; trainer, logger and device may change.
RESUME_MUST_MATCH = ("pde", "model", "derivatives", "sampler", "optimizer", "loss", "seed", "dtype")
#: ... but for these: how the derivatives are computed (the GPU's fused kernels, the point sets
#: in one pass, Gram matrices), not what they are, so that a run trained with the kernels can
#: continue on a machine without them.
RESUME_MAY_CHANGE = ("derivatives.triton", "derivatives.one_pass", "derivatives.gram")


def check_complete(cfg: DictConfig) -> None:
    """Refuse a configuration without one of the groups or settings of ``configs/config.yaml``
    (removed with ``~key`` on the command line): training reads every one of them."""
    primary = OmegaConf.to_container(OmegaConf.load(Path(__file__).parent / "configs" / "config.yaml"), resolve=False)
    groups = {k: v for entry in primary["defaults"] if isinstance(entry, dict)
              for k, v in entry.items() if v is not None}
    for key, choice in groups.items():
        if key not in cfg:
            raise ConfigError(f"no {key} chosen (removed with '~{key}'?); choose one with {key}=<name> "
                              f"(configs/{key}/; {key}={choice} by default), or give a class of your own with "
                              f"'+{key}._target_=...'")
    for key, value in primary.items():
        if key not in ("defaults", "hydra") and key not in cfg:
            shown = "null" if value is None else value
            raise ConfigError(f"{key} is not set (removed with '~{key}'?); give it a value ({key}={shown} by default)")


def build_problem(cfg: DictConfig) -> tuple[Any, torch.nn.Module]:
    """The PDE and the (untrained) network a config describes."""
    pde = _build(cfg.pde, "pde")
    if not isinstance(pde, PDE):
        raise ConfigError(f"pde._target_={cfg.pde._target_} made a {type(pde).__name__}, not a PDE: name a subclass of "
                          "pinn.pdes.PDE (examples/custom_pde has one)")
    pde.check_definition()
    model = _build(cfg.model, "model", in_dim=pde.dim, out_dim=pde.n_outputs)
    return pde, pde.constrain(model)


def _default_of(cfg: DictConfig, key: str) -> Any:
    """The default of the constructor argument ``group.name`` of a group's ``_target_``
    (``inspect.Parameter.empty`` where there is none)."""
    group, _, name = key.partition(".")
    target = OmegaConf.select(cfg, f"{group}._target_")
    if target is None or "." in name:
        return inspect.Parameter.empty
    parameter = inspect.signature(get_object(target)).parameters.get(name)
    return inspect.Parameter.empty if parameter is None else parameter.default


def _settings(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config to ``{"optimizer.betas": [0.9, 0.999], ...}``: every leaf, lists and nulls included."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _choice_of(group: str, saved: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The config of ``configs/<group>/`` that the flat settings ``saved`` were made from: of those
    with the saved ``_target_``, the one whose values they share most (mlp, not fourier, for an
    MLP without Fourier features). Returns ``group=name`` and that config's flat settings."""
    best = None
    for path in sorted((Path(__file__).parent / "configs" / group).glob("*.yaml")):
        text = path.read_text()
        config = OmegaConf.to_container(OmegaConf.create(text))
        if text.startswith("# @package _global_"):  # one that also sets another group's keys
            config = config.get(group, {})
        flat = _settings(config, f"{group}.")
        if flat.get(f"{group}._target_") != saved.get(f"{group}._target_"):
            continue
        shared = sum(saved.get(k, object()) == v for k, v in flat.items())
        if best is None or shared > best[0]:
            best = (shared, f"{group}={path.stem}", flat)
    return best[1:] if best else None


def check_resume(cfg: DictConfig) -> None:
    """Refuse to resume a checkpoint under settings it was not trained with, or with fewer
    ``trainer.max_steps`` than it has trained. A setting added since the checkpoint was written
    matches if it is left at its default, which is how the code behaved before it existed."""
    payload = load_checkpoint(cfg.resume, mmap=True)
    steps, max_steps = int(payload["step"]), cfg.trainer.get("max_steps")
    if isinstance(max_steps, int) and not isinstance(max_steps, bool) and steps > max_steps:  # before any warning
        raise ConfigError(f"resume={cfg.resume} has trained {steps} steps already, more than trainer.max_steps="
                          f"{max_steps}; set trainer.max_steps to {steps} or more")
    saved = _settings({k: v for k, v in payload["config"].items() if k in RESUME_MUST_MATCH})
    now = _settings({k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k in RESUME_MUST_MATCH})

    def default(key: str) -> Any:
        value = _default_of(cfg, key)
        return list(value) if isinstance(value, tuple) else value  # a YAML list arrives as a list

    added = {k for k in now.keys() - saved.keys() if now[k] == default(k)}
    differ = sorted(k for k in saved.keys() | now.keys() - added
                    if saved.get(k) != now.get(k) and k not in RESUME_MAY_CHANGE)
    if differ:
        shown = ", ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in differ[:4])
        # The overrides that restore the checkpoint's values (also where a default has changed since):
        # another class in a group is another choice of it (optimizer=adam_lbfgs), and a key the
        # current choice lacks is added (++key=value).
        choices = {k.split(".")[0]: _choice_of(k.split(".")[0], saved) for k in differ
                   if k.endswith("._target_") and k in saved}
        choices = {group: found for group, found in choices.items() if found}
        restore = [choice for choice, _ in choices.values()]
        for k in sorted(k for k in saved if k.split(".")[0] in choices or k in differ):
            group = choices.get(k.split(".")[0])
            if group is None:  # a group kept as it is: the keys that differ
                restore.append(f"{'' if k in now else '++'}{k}={json.dumps(saved[k])}")
            elif group[1].get(k, object()) != saved[k]:  # a group switched: the keys its choice sets otherwise
                restore.append(f"++{k}={json.dumps(saved[k])}")
        restore = shlex.join(restore)
        raise ConfigError(
            f"resume={cfg.resume} was trained with other settings ({shown}). Repeat the run's own overrides "
            f"(its .hydra/overrides.yaml){f', here {restore},' if restore else ''} and change only trainer.*, "
            f"logger, device, preflight and {', '.join(RESUME_MAY_CHANGE)}"
        )


def check_run_folder(run_dir: Path, resume: str | None) -> None:
    """Refuse to train into a folder that holds another run's checkpoint (unless resuming that
    run in place): it would be overwritten, and the two runs' logs mixed."""
    checkpoint = run_dir / "checkpoints" / CHECKPOINT_NAME
    if not checkpoint.is_file():
        return
    if _multirun():  # before a resume in place: a job of this sweep must not take another's run for its own
        record = Path(HydraConfig.get().sweep.dir) / "multirun.yaml"  # written as this sweep started
        if record.is_file() and checkpoint.stat().st_mtime >= record.stat().st_mtime:
            raise ConfigError(f"another job of this sweep has trained in the job folder {run_dir}: "
                              f"hydra.sweep.subdir={HydraConfig.get().sweep.subdir} names one folder for several "
                              "jobs; make it differ per job (name every swept setting in it, or use ${hydra.job.num})")
    if resume is not None:
        source = Path(resume).resolve()
        if source == run_dir.resolve() or run_dir.resolve() in source.parents:  # this run's own checkpoint
            return
    if _multirun():
        raise ConfigError(f"the job folder {run_dir} already holds a run ({checkpoint}); "
                          "choose a new folder for this sweep with hydra.sweep.dir=...")
    raise ConfigError(
        f"the run folder {run_dir} already holds a run ({checkpoint}); continue that run with resume={run_dir} "
        f"hydra.run.dir={run_dir}, or train in another folder (hydra.run.dir=..., or delete this one)"
    )


def rank_share(sampler_cfg: DictConfig, comm, point_sets=("interior", "boundary", "initial")) -> dict[str, int]:
    """Each rank's equal share of the collocation points of the sets the problem uses (equal
    shares make the averaged gradient exactly the gradient over all points), and of an adaptive
    sampler's candidates and added points, so that a run's point budget does not depend on how
    many processes share it."""
    if not comm.active:
        return {}
    share, cfg = {}, OmegaConf.create({"sampler": sampler_cfg})
    for key in [f"n_{name}" for name in point_sets] + ["n_candidates", "n_add"]:
        n = sampler_cfg.get(key, _default_of(cfg, f"sampler.{key}"))  # a count left out: the sampler's default
        if not isinstance(n, int) or isinstance(n, bool):  # not the sampler's, or refused by the sampler itself
            continue
        if n % comm.world:
            raise ConfigError(f"sampler.{key}={n} does not split evenly over {comm.world} processes; "
                              f"use a multiple of {comm.world}")
        share[key] = n // comm.world
    return share


#: Where a sweep job that failed leaves its one-line reason (one that finished leaves METRICS_NAME).
FAILURE = "error.txt"


def _multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not inside a Hydra run
        return False


def _record_failure(reason: str) -> None:
    """Leave a failed sweep job's one-line reason in its folder, for the sweep's summary."""
    try:
        write_text_atomically(_job_folder() / FAILURE, f"{reason}\n")
    except (OSError, CheckpointError):  # the job's folder itself was the problem: the summary says to see the log
        pass


def _job_folder() -> Path:
    """The folder Hydra made for this job (where its .hydra/ and log are, and a sweep's summary looks)."""
    return Path(HydraConfig.get().runtime.output_dir)


#: What the run folder held before Hydra wrote this launch's record (RunRecord), until training starts.
_before_launch: dict[str, Any] = {}


class RunRecord(Callback):
    """Lets a launch refused before training leave its run folder as it found it.

    Hydra writes each launch's configuration into the run folder's ``.hydra/`` before train.py
    starts. A launch refused there (a resume under other settings, a folder that holds another
    run) would replace the record of the run in that folder, whose overrides the refusal tells
    you to repeat, or leave behind a new folder that holds nothing but its own record. This
    notes what the folder held before Hydra writes, and what Hydra wrote;
    :func:`restore_run_folder` puts the folder back, unless another launch has written there
    since. Single runs of one process only: a sweep's job folders are made without a callback
    in between, and the processes of a torchrun launch write their records at their own pace."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _before_launch.clear()
        _refuse_folder("hydra.run.dir", config.hydra.run.dir)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return
        folder = Path(os.path.abspath(config.hydra.run.dir))  # as Hydra resolves it ("a/../b" is b)
        record = None if config.hydra.output_subdir is None else folder / config.hydra.output_subdir
        created = _outermost_missing(folder)  # the outermost folder that this launch creates
        # Hydra makes the folder as written, so "gone/../b" makes "gone" too, outside "b"
        as_written = Path(os.path.join(os.getcwd(), config.hydra.run.dir)).parents
        beside = {Path(os.path.abspath(p)) for p in as_written if not os.path.exists(os.path.abspath(p))}
        beside = [p for p in beside if created is None or not p.is_relative_to(created)]
        _before_launch.update(folder=folder, record=record, created=created, kept=_record_files(record),
                              logs={path: path.stat().st_size for path in folder.glob("*.log")}, beside=beside)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _before_launch:  # Hydra has written this launch's record: what it wrote, to tell it from another's
            _before_launch["ours"] = _record_files(_before_launch["record"])


def _interrupted_before_training(signum: int, frame: Any) -> None:
    """Ctrl-C (or SIGTERM) while Hydra composes the configuration and writes the launch's
    record, before :func:`main` takes over: the run folder as it found it (as for a refused
    launch), one line, and the signal's exit status."""
    if _before_launch and "ours" not in _before_launch:  # Hydra was still writing this launch's record
        _before_launch["ours"] = _record_files(_before_launch["record"])
    restore_run_folder()
    _interrupted(signum, frame)


def why_unwritable(folder: Path) -> str | None:
    """Why files cannot be written into ``folder``, or made with it where it is missing
    (``None``: they can). Tries a temporary file in the folder, or in the nearest parent that
    exists, and leaves it as it was."""
    folder = Path(os.path.abspath(folder))
    missing = _outermost_missing(folder)
    existing = folder if missing is None else missing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"{existing} cannot be written: {exc.strerror}"
    return None


def _refuse_folder(key: str, value: Any) -> None:
    """Exit with status 2 where ``hydra.run.dir`` or ``hydra.sweep.dir`` (``key``) names no folder
    or one that cannot be written: Hydra would fail with a traceback as it writes its log there
    (or write into the current folder, for an empty one)."""
    if not isinstance(value, str) or not value.strip():
        reason = f"{key} must name a folder; got {value!r}. Leave it at its default or give a path"
    else:
        why = why_unwritable(Path(value))
        reason = None if why is None else f"cannot write into {key}={value} ({why}); choose another folder"
    if reason is not None:
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(2)


def _outermost_missing(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist (``None``: it exists)."""
    if folder.exists():
        return None
    while not folder.parent.exists():
        folder = folder.parent
    return folder


def _record_files(record: Path | None) -> dict[Path, bytes]:
    """The record's files and their contents (none where there is no record)."""
    return {path: path.read_bytes() for path in record.glob("*.yaml")} if record and record.is_dir() else {}


def restore_run_folder() -> None:
    """Undo what Hydra wrote for a launch refused before training (see :class:`RunRecord`): a
    folder it created goes, if it holds only Hydra's record and log (and an empty one made on the
    way, as "gone" of "gone/../b"); in a folder that was there, the record is put back as it was
    (or removed, where there was none), and Hydra's log as it was (a new one removed, an earlier
    one cut back to its length: the launch's lines go).
    Where the record is no longer the one this launch wrote (another launch into the same
    folder), nothing is touched. An ``output_dir`` apart from Hydra's folder that the launch
    made goes too, if nothing has been written into it."""
    if not _before_launch or "ours" not in _before_launch:
        _before_launch.clear()
        return
    folder, record, created, kept, logs, ours = (_before_launch[k] for k in
                                                 ("folder", "record", "created", "kept", "logs", "ours"))
    output_dir = _before_launch.get("output_dir")  # made by this launch, away from Hydra's folder
    beside = _before_launch["beside"]
    _before_launch.clear()
    if output_dir is not None and not any(p.is_file() for p in output_dir.rglob("*")):
        shutil.rmtree(output_dir, ignore_errors=True)
    for path in sorted(beside, key=lambda p: len(p.parts), reverse=True):  # innermost first, where still empty
        with contextlib.suppress(OSError):
            path.rmdir()
    if _record_files(record) != ours:
        return
    if created is not None:
        found = {p for p in created.rglob("*") if p.is_file()}
        # .hydra/*.yaml and Hydra's log file (train.log) in the run folder; nothing else
        if all(p in ours or (p.parent == folder and p.suffix == ".log") for p in found):
            shutil.rmtree(created, ignore_errors=True)
        return
    for path in ours.keys() - kept.keys():
        path.unlink(missing_ok=True)
    for path, content in kept.items():
        write_atomically(path, lambda f, content=content: f.write(content))
    if record and record.is_dir() and not any(record.iterdir()):
        record.rmdir()
    for log_file in folder.glob("*.log"):  # Hydra's log file: this launch's lines go
        if log_file not in logs:
            log_file.unlink()
        elif log_file.stat().st_size > logs[log_file]:
            os.truncate(log_file, logs[log_file])


def run(cfg: DictConfig) -> dict[str, Any]:
    """Build everything from a composed config and train; return the final metrics."""
    check_complete(cfg)
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed < 2**63:
        raise ConfigError(f"seed must be an integer from 0 to 2**63 - 1; got {cfg.seed!r}")
    if cfg.resume == "auto":  # the run folder's own checkpoint where it has one (a requeued job, a sweep again)
        _warn_if_no_fixed_folder()
        own = Path(str(cfg.output_dir))
        cfg.resume = str(own) if cfg.output_dir and (own / "checkpoints" / CHECKPOINT_NAME).is_file() else None
        log.info("resume=auto: %s", f"continuing the run in {own}" if cfg.resume else "no checkpoint here yet, a new run")
    if cfg.resume is not None:
        check_resume(cfg)
    comm = init_from_env(device.type)  # a world of one unless launched by torchrun
    if comm.active:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank())
            torch.cuda.set_device(device)
        if not comm.is_main:
            log.setLevel(logging.WARNING)
    if not isinstance(cfg.output_dir, str) or not cfg.output_dir.strip():  # Path("") is the current folder
        raise ConfigError(f"output_dir must name a folder; got {cfg.output_dir!r}. Leave it at its default (the run "
                          "folder, hydra.run.dir) or give a path")
    run_dir = Path(cfg.output_dir)
    if comm.active:  # each process names its folder by its own start time: a second apart, two folders
        chosen = comm.gather((socket.gethostname(), os.path.abspath(run_dir)))
        for host in {h for h, _ in chosen}:  # the same path on each machine (checkouts may lie elsewhere on others)
            folders = sorted({folder for h, folder in chosen if h == host})
            if len(folders) > 1:
                raise ConfigError(f"the processes of this run chose different run folders ({', '.join(folders)}); "
                                  "give them one with hydra.run.dir=...")
    # A sweep's summary reads each job's results from the job's own folder.
    if _multirun() and run_dir.resolve() != _job_folder().resolve():
        raise ConfigError(f"in a sweep every job writes to its own folder, not output_dir={cfg.output_dir}; leave "
                          "output_dir at its default and choose the folders with hydra.sweep.dir (and "
                          "hydra.sweep.subdir, such as 'hydra.sweep.subdir=s${seed}')")
    if _before_launch and not run_dir.exists():  # an output_dir of its own: removed again if refused
        _before_launch["output_dir"] = _outermost_missing(run_dir.absolute())
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder {run_dir} ({exc.strerror}); "
                          "choose another hydra.run.dir or output_dir") from None
    for folder in (run_dir, run_dir / "checkpoints"):  # found now, not at the first checkpoint
        why = why_unwritable(folder) if folder.is_dir() else None
        if why is not None:
            raise ConfigError(f"cannot write into the run folder {run_dir} ({why}); choose another hydra.run.dir "
                              "or output_dir")
    check_run_folder(run_dir, cfg.resume)
    if _multirun():  # a sweep folder reused: an earlier job's failure must not pass for this one's
        (_job_folder() / FAILURE).unlink(missing_ok=True)
    torch.manual_seed(cfg.seed)  # the network's initial weights, the same on every rank
    generator = torch.Generator().manual_seed(rank_seed(cfg.seed, comm))  # this rank's collocation points

    pde, model = build_problem(cfg)
    engine = _build(cfg.derivatives, "derivatives")
    sampler = _build(cfg.sampler, "sampler", **rank_share(cfg.sampler, comm, pde.point_sets))
    optimizer = _build(cfg.optimizer, "optimizer")
    trainer = _build(cfg.trainer, "trainer")
    balance = _build(cfg.loss, "loss")
    model.to(device=device, dtype=dtype)
    if comm.active:  # the weights are built, the same on every rank; what is drawn from here on
        torch.manual_seed(rank_seed(cfg.seed, comm, TORCH_STREAM))  # (random directions) is not

    # What the engine refuses (a setting, the network, the device) is said before the pre-flight
    # check, which runs the engine's kernels with derivatives.triton.
    engine.check(model)
    engine.check_pde(pde)
    engine.check_device(device)
    pde.check_network(model)
    if engine.name == "stochastic" and engine.samples >= pde.dim and comm.is_main:
        log.warning("derivatives.samples=%d random directions for %d coordinates: the exact Laplacian "
                    "(derivatives=forward) takes %d directions, no more work, and has no variance",
                    engine.samples, pde.dim, pde.dim)
    if check_flag("preflight", cfg.preflight):
        report = preflight(device, dtype, model=model, in_dim=pde.dim, triton=engine.triton)
        log.info("pre-flight: operators exact on %s in %s (%d checks, %.0f ms)",
                 device, cfg.dtype, len(report) - 1, 1000 * report["seconds"])

    logger = _build(cfg.logger, "logger", log_dir=str(run_dir))
    log.info("training %s with %s on %s (%s), %d parameters; run folder %s",
             pde, type(model).__name__, device, cfg.dtype, sum(p.numel() for p in model.parameters()), run_dir)
    metrics = trainer.fit(
        pde=pde, model=model, engine=engine, sampler=sampler, optimizer=optimizer, generator=generator,
        run_dir=run_dir, device=device, dtype=dtype, logger=logger,
        config=OmegaConf.to_container(cfg, resolve=True), resume=cfg.resume, comm=comm, balance=balance,
        started=_before_launch.clear,  # from then on the folder holds this run: a failure keeps its record
    )
    error = f"rel L2 {metrics['rel_l2']:.3e}, " if "rel_l2" in metrics else ""
    log.info("done: %sloss %.3e, %d steps in %.1f s (%.2f ms/step); metrics in %s", error, metrics["loss"],
             metrics["steps"], metrics["train_seconds"], metrics["ms_per_step"], run_dir / "metrics.json")
    return metrics


def _warn_if_no_fixed_folder() -> None:
    """resume=auto finds a run only in a folder named the same at every launch."""
    try:
        given = [*HydraConfig.get().overrides.hydra, *HydraConfig.get().overrides.task]
    except ValueError:  # not inside a Hydra run
        return
    keys = ("hydra.sweep.dir=",) if _multirun() else ("hydra.run.dir=", "output_dir=")
    if not any(str(o).lstrip("+~").startswith(keys) for o in given):
        log.warning("resume=auto continues a run in its own folder, but this launch's folder is named by the time it "
                    "started, new at every launch; give the folder with %s...", keys[0])


def _resume_command(run_dir: Path, processes: int = 1, per_node: int = 1) -> str:
    try:
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(("resume=", "hydra.run.dir="))]
    except ValueError:  # not inside a Hydra run
        overrides = []
    # A checkpoint of several processes resumes with as many (pinn.distributed); across several
    # machines, with the launch options the run was started with.
    if processes == 1:
        launch = "python"
    elif per_node == processes:
        launch = f"torchrun --standalone --nproc_per_node={processes}"
    else:
        launch = "torchrun <the launch options the run was started with>"
    script = sys.argv[0] if Path(sys.argv[0]).name == "train.py" else "train.py"  # as launched: from another folder too
    return f"{launch} {shlex.join([script, *overrides, f'resume={run_dir}', f'hydra.run.dir={run_dir}'])}"


def _launch_resume_command(run_dir: Path) -> str:
    """:func:`_resume_command` for this launch's processes (torchrun sets ``WORLD_SIZE`` and
    ``LOCAL_WORLD_SIZE``)."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    return _resume_command(run_dir, processes, int(os.environ.get("LOCAL_WORLD_SIZE", str(processes))))


def _tell(message: str, *, in_log: bool = True) -> None:
    """Print a closing message to stderr and, with ``in_log``, keep it in the run's log file
    (``train.log``) too, as Hydra's file handler writes it, without the console showing it twice."""
    print(message, file=sys.stderr)
    if in_log and int(os.environ.get("RANK", "0")) == 0:  # one train.log for all the processes of a run
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)


def _refuse_invalid_yaml(argv: list[str]) -> None:
    """Exit with status 2, in one line, where a YAML file this launch reads is not valid YAML:
    Hydra would stop with its loader's traceback. The files checked are ``config.yaml`` and the
    group files that it, the command line (``group=choice``, every choice of a sweep) and the
    files so chosen (``override /group: choice``) name, in this project's ``configs/`` and in a
    folder given with ``--config-dir``. A syntax check only, which leaves other mistakes to
    Hydra."""
    folders = [Path(__file__).resolve().parent / "configs"]
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            folders.append(Path(argv[i + 1]))
        elif arg.startswith("--config-dir="):
            folders.append(Path(arg.split("=", 1)[1]))
    named = [arg.lstrip("+~").split("=", 1) for arg in argv if not arg.startswith("-") and "=" in arg]
    to_read = ["config"] + [f"{group}/{choice}" for group, value in named if "." not in group and "/" not in group
                            for choice in value.split(",")]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    seen = set()
    while to_read:
        name = to_read.pop()
        for path in (folder / f"{name}.yaml" for folder in folders):
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            try:
                with open(path, encoding="utf-8") as f:
                    content = yaml.load(f, Loader=loader)
            except OSError:
                continue  # unreadable: Hydra says so
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                print(f"error: {path}{where} is not valid YAML ({problem}); mend that file", file=sys.stderr)
                sys.exit(2)
            defaults = content.get("defaults") if isinstance(content, dict) else None
            for entry in defaults if isinstance(defaults, list) else []:  # - group: choice, - override /group: choice
                for key, choice in entry.items() if isinstance(entry, dict) else []:
                    if isinstance(choice, str):
                        to_read.append(f"{key.removeprefix('override').strip().strip('/')}/{choice}")


#: Whether this launch has reached :func:`main` (before that, Hydra composes the configuration).
_reached_main = False
#: Ctrl-C (or SIGTERM: its number) between two jobs of a sweep, noted to stop the sweep as the
#: next job starts: the interrupt itself, raised inside Hydra's composition of that job, could
#: leave its configuration half made (and show a traceback from inside Hydra).
_interrupt_pending = 0


def _defer_interrupt(signum: int, frame: Any) -> None:
    global _interrupt_pending
    _interrupt_pending = signum


class _Terminated(KeyboardInterrupt):
    """SIGTERM raised where it lands during a job, as Python raises Ctrl-C: a launch stopped
    before training is cleaned up alike (during training the trainer takes both signals)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated


#: How each stop signal is raised during a job.
_RAISED_BY = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _raise_terminated}


def _finish_sweep() -> str:
    """The command that finishes the sweep this job belongs to."""
    return f"the same -m command with resume=auto hydra.sweep.dir={shlex.quote(str(HydraConfig.get().sweep.dir))}"


def _stop_sweep() -> None:
    print(f"{_interruption(_interrupt_pending)} between two jobs of the sweep; finish it with {_finish_sweep()}",
          file=sys.stderr)
    sys.exit(128 + _interrupt_pending)


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    global _reached_main
    _reached_main = True
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) in (_interrupted_before_training, _defer_interrupt):  # the handlers below
            signal.signal(signum, _RAISED_BY[signum])
    if _interrupt_pending:  # pressed after the previous job of the sweep ended: this one does not start
        _stop_sweep()
    tune_cpu_allocator()
    try:
        run(cfg)
        if torch.distributed.is_initialized():
            # Every rank finishes together: rank 0 evaluates and writes after the last step, and
            # a rank that tears its process group down while a peer still holds the connection
            # can abort.
            torch.distributed.barrier()
    except TrainingInterrupted as exc:
        if int(os.environ.get("RANK", "0")) == 0:  # one message for the run, not one per process
            _tell(f"{exc}.\nResume with: {_launch_resume_command(Path(cfg.output_dir))}")
            if _multirun():
                _tell(f"Or finish the whole sweep: {_finish_sweep()}")
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM before training started (or twice): nothing to save
        # A launch whose folder is put back as it was leaves no line in its log (RunRecord).
        signum = signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT
        restored = bool(_before_launch)
        restore_run_folder()  # where training has not started
        checkpoint = Path(cfg.output_dir) / "checkpoints" / CHECKPOINT_NAME
        if checkpoint.is_file() and int(os.environ.get("RANK", "0")) == 0:  # the run's last one, kept
            _tell(f"{_interruption(signum)}; the last checkpoint is {checkpoint}.\nResume with: "
                  f"{_launch_resume_command(Path(cfg.output_dir))}", in_log=not restored)
        else:
            _tell(_interruption(signum), in_log=not restored)
        if _multirun():
            _tell(f"Finish the sweep with {_finish_sweep()}")
        sys.exit(128 + signum)
    except (ConfigError, PDEError, PreflightError, CheckpointError, TrainingDiverged) as exc:
        # A user error (in a setting, or in a PDE of one's own) or a failed check: one line that
        # says what and how to fix it.
        # HYDRA_FULL_ERROR=1 shows the traceback as well.
        restored = bool(_before_launch)
        restore_run_folder()  # where training has not started
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _tell(f"error: {exc}", in_log=not restored)
        if _multirun():  # the sweep goes on; its summary lists this job as failed, and the sweep exits 2
            _record_failure(str(exc))
            return
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 -- an unexpected failure: a traceback, and in a sweep the next job
        if not _multirun():
            restore_run_folder()  # where training has not started
            raise
        log.exception("this sweep job failed")
        cause = exc.__cause__ if isinstance(exc, InstantiationException) and exc.__cause__ else exc  # not Hydra's wrapper
        reason = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
        print(f"error: {reason}", file=sys.stderr)  # the log has the traceback
        _record_failure(f"{reason} (traceback in the job's log)")
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        if _multirun():  # until the next job starts
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is _RAISED_BY[signum]:
                    signal.signal(signum, _defer_interrupt)
        elif signal.getsignal(signal.SIGTERM) is _raise_terminated:  # the run is over: SIGTERM ends the process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as it would have (not a traceback from Hydra's teardown)


def _sweep_defining(overrides: list[str]) -> list[str]:
    """The overrides that decide which run each job of a sweep is: all but ``resume=`` and the
    settings a resume may change (``trainer.*``, ``logger``, ``device``, ``preflight``,
    :data:`RESUME_MAY_CHANGE`) where they are not swept, in their order (which numbers the jobs)."""
    may_change = ("trainer", "logger", "device", "preflight")
    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    return [o.input_line for o in parsed if o.key_or_group != "resume" and (
        o.is_sweep_override() or (o.key_or_group.split(".")[0].lstrip("+~") not in may_change
                                  and o.key_or_group.lstrip("+~") not in RESUME_MAY_CHANGE))]


def _shared_job_folders(config: DictConfig) -> dict[Path, list[int]]:
    """The folders that ``hydra.sweep.subdir`` names for more than one job of this sweep, each
    with its jobs' numbers. Each job's configuration is composed as Hydra's basic sweeper and
    launcher will compose it, job k as if it started k milliseconds after the first: a subfolder
    that only the time (``${now:...}``) tells apart, unless to the microsecond, names one folder
    for them, as it does for a quick job (a refused one, say) and the next, whose records would
    replace each other. (A ``${now:...}`` that the sweep folder's name has resolved already, such
    as ``${now:%H-%M-%S}`` under the default ``hydra.sweep.dir``, keeps that value in every job,
    as it does when the jobs run.) A sweep under another sweeper (whose jobs are not known before
    they run) is not looked at here: each of its jobs is refused where it finds another's run
    (:func:`check_run_folder`)."""
    subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False)["subdir"])  # as written
    if config.hydra.sweeper.get("_target_") != f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
        return {}
    if subdir.strip() == "${hydra.job.num}":  # one folder per job by construction
        return {}
    loader = GlobalHydra.instance().config_loader()
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    sweep_config = HydraConfig.instance().cfg  # what the ${hydra:...} resolvers read, set to each job's in turn
    folders: dict[Path, list[int]] = {}
    start, job_num = datetime.now().replace(microsecond=0), [0]
    OmegaConf.register_new_resolver(  # the clock of job k: k milliseconds after the first job's
        "now", lambda pattern: (start + timedelta(milliseconds=job_num[0])).strftime(pattern), use_cache=True,
        replace=True)
    try:
        (jobs,) = BasicSweeper.split_arguments(OverridesParser.create(config_loader=loader).parse_overrides(
            [*params, *(str(o) for o in task)]), None)
        for num, overrides in enumerate(jobs):
            job_num[0] = num
            job = loader.load_sweep_config(config, list(overrides))
            with open_dict(job):
                job.hydra.job.id = job.hydra.job.num = num
            HydraConfig.instance().set_config(job)
            folder = Path(os.path.normpath(Path(str(job.hydra.sweep.dir)).absolute() / str(job.hydra.sweep.subdir)))
            folders.setdefault(folder, []).append(num)
    except (HydraException, OmegaConfBaseException):  # Hydra's own checks say what is wrong as the sweep starts
        return {}
    finally:
        HydraConfig.instance().cfg = sweep_config
        setup_globals()  # Hydra's resolvers again: ${now:...} with a running clock
    return {folder: nums for folder, nums in folders.items() if len(nums) > 1}


class SweepSummary(Callback):
    """After ``python train.py -m ...``: one row per job of this sweep (its overrides, rel L2,
    time, and the reason where it failed), printed and saved as ``summary.csv`` in the sweep
    folder. A sweep with a failed job exits with status 2 once the table is out.

    A sweep into a folder that holds an earlier sweep's runs is refused before it starts: Hydra
    writes each job's record (``.hydra/``) and the sweep's (``multirun.yaml``) before train.py
    runs, so its jobs would replace those runs' records, whose overrides resume them, even where
    the jobs themselves are refused. So is a sweep whose ``hydra.sweep.subdir`` names one folder
    for several of its jobs: each would write its record over the one before."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # (Hydra turns an exception raised here into a warning and goes on: each check must finish.)
        _refuse_folder("hydra.sweep.dir", config.hydra.sweep.dir)
        self._refuse_earlier_runs(config)
        shared = _shared_job_folders(config)
        if shared:
            folder, nums = next(iter(shared.items()))
            jobs = ", ".join(map(str, nums[:5])) + (", ..." if nums[5:] else "")
            more = f" (and {len(shared) - 1} more folder(s) like it)" if len(shared) > 1 else ""
            subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False)["subdir"]  # as written
            clock = " (the time, unless to the microsecond, does not tell apart jobs that start close together, " \
                "as a quick one and the next do)" if "${now:" in subdir else ""
            print(f"error: hydra.sweep.subdir={subdir} names one folder, {folder}, for jobs {jobs} of this "
                  f"sweep{clock}{more}; make it differ per job (name every swept setting in it, or use "
                  "${hydra.job.num})", file=sys.stderr)
            sys.exit(2)

    @staticmethod
    def _refuse_earlier_runs(config: DictConfig) -> None:
        """Exit where the sweep folder holds an earlier sweep's runs, unless this is that sweep
        again, resuming them."""
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = sorted(p.parent.parent for p in sweep_dir.glob(f"**/checkpoints/{CHECKPOINT_NAME}")) \
            if sweep_dir.is_dir() else []
        # As written, not resolved: resume=${hydra:runtime.output_dir} cannot be resolved before a job runs
        task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        if runs and any(str(o).startswith("resume=") for o in task):
            # The same sweep again, resuming its runs: job k must be the earlier job k, so what is
            # swept, and every setting a resume must keep, has to be as it was.
            earlier = sweep_dir / "multirun.yaml"
            before = OmegaConf.to_container(OmegaConf.load(earlier).hydra.overrides.task, resolve=False) \
                if earlier.is_file() else None
            if before is not None and _sweep_defining(before) == _sweep_defining(task):
                return
            shown = shlex.join(_sweep_defining(before)) if before is not None else "(no multirun.yaml)"
            print(f"error: a sweep with resume= into {sweep_dir} must repeat the sweep that made its runs: the same "
                  "overrides in the same order, apart from resume= and single values of trainer.*, logger, device, "
                  f"preflight and {', '.join(RESUME_MAY_CHANGE)}; before: {shown}"
                  f"; now: {shlex.join(_sweep_defining(task))}", file=sys.stderr)
            sys.exit(2)
        if runs:
            names = ", ".join(str(p.relative_to(sweep_dir)) for p in runs[:4]) + (", ..." if runs[4:] else "")
            print(f"error: the sweep folder {sweep_dir} holds the runs of an earlier sweep ({len(runs)}, in the "
                  f"folder(s) {names}); sweep into a new folder with hydra.sweep.dir=..., or continue that sweep: "
                  "the same sweep again with resume=auto, or one of its runs on its own with python train.py "
                  "<its overrides, from its .hydra/overrides.yaml> resume=<its folder> hydra.run.dir=<its folder>",
                  file=sys.stderr)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        # Job folders left by an earlier sweep into the same folder predate this sweep's record.
        started = (sweep_dir / "multirun.yaml").stat().st_mtime if (sweep_dir / "multirun.yaml").is_file() else 0.0
        rows = []
        # The job folders, at any depth (hydra.sweep.subdir=w/${model.width}), named by their paths in the sweep's.
        jobs = sorted((str(p.parent.parent.relative_to(sweep_dir)) for p in sweep_dir.glob("**/.hydra/overrides.yaml")),
                      key=lambda name: (len(name), name))
        for job in jobs:
            job_dir = sweep_dir / job
            overrides_file = job_dir / ".hydra" / "overrides.yaml"
            if overrides_file.stat().st_mtime < started:
                continue
            overrides = " ".join(OmegaConf.load(overrides_file))
            metrics_file, failure_file = job_dir / METRICS_NAME, job_dir / FAILURE
            failed = failure_file.is_file()  # then a metrics.json beside it is an earlier sweep's, not this job's
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() and not failed else {}
            failure = failure_file.read_text().strip() if failed else "no metrics.json (see its log)"
            rows.append({
                "job": job,
                "overrides": overrides,
                "rel_l2": metrics.get("rel_l2", ""),
                "loss": metrics.get("loss", ""),
                "train_seconds": metrics.get("train_seconds", ""),
                "status": "done" if metrics else f"failed: {failure}",
            })
        if not rows:
            return
        with open(sweep_dir / "summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        width = max(len(r["overrides"]) for r in rows)
        lines = [f"{'job':>4}  {'overrides':<{width}}  {'rel_l2':>10}  {'seconds':>8}  status"]
        for r in rows:
            rel = f"{r['rel_l2']:.3e}" if r["rel_l2"] != "" else "-"
            sec = f"{r['train_seconds']:.1f}" if r["train_seconds"] != "" else "-"
            lines.append(f"{r['job']:>4}  {r['overrides']:<{width}}  {rel:>10}  {sec:>8}  {r['status']}")
        print("\n".join(lines) + f"\nsummary saved to {sweep_dir / 'summary.csv'}")
        failed = sum(r["status"] != "done" for r in rows)
        if failed:
            print(f"error: {failed} of {len(rows)} jobs failed", file=sys.stderr)
            sys.exit(2)


def _replace_hint(error: BaseException, argv: list[str]) -> str | None:
    """How to add to or replace a dict setting, where Hydra refused a key that ``KEY={...}`` on
    the command line brought into it: such an override merges into the configured dict
    (``model=periodic``'s ``periods: {0: 2.0}``, say), which takes no key that it does not hold.
    Hydra's own message says how to add (``+KEY={...}``), not how to replace."""
    error = error.__cause__ or error  # Hydra's ConfigCompositionException, caused by OmegaConf's refusal
    key = getattr(error, "full_key", None)
    if not isinstance(error, ConfigKeyError) or not key or "." not in key:
        return None
    parent = key.rsplit(".", 1)[0]
    given = [arg for arg in argv if arg.startswith(f"{parent}=") and arg.partition("=")[2].lstrip().startswith("{")]
    if not given:
        return None
    return (f"{given[-1]} is merged into the configured {parent}, which has no key {key.rsplit('.', 1)[1]}: "
            f"{shlex.quote('+' + given[-1])} adds the key to it, {parent}=null {shlex.quote(given[-1])} replaces it")


if __name__ == "__main__":
    # Hydra builds the callbacks by importing ``train``: let that be this module, not a second
    # copy of it with globals of its own (RunRecord's notes are read here, in main).
    sys.modules.setdefault("train", sys.modules[__name__])
    for _signum in STOP_SIGNALS:
        signal.signal(_signum, _interrupted_before_training)
    _refuse_invalid_yaml(sys.argv[1:])
    try:
        main()
    except SystemExit as exc:
        # Hydra refuses a command line (an unknown group choice or key, a malformed override) with
        # status 1, its exception the context of its exit; bad input exits with 2 here, as train.py's own.
        if exc.code == 1 and not _reached_main and isinstance(exc.__context__, (HydraException, OmegaConfBaseException)):
            hint = _replace_hint(exc.__context__, sys.argv[1:])
            if hint:
                print(hint, file=sys.stderr)
            sys.exit(2)
        raise
    except KeyboardInterrupt:  # Ctrl-C after the run's own handling of it (in Hydra's teardown): all is written
        print("interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    if _interrupt_pending:  # Ctrl-C after the sweep's last job: every job has run
        print(f"{_interruption(_interrupt_pending)} after the sweep's last job", file=sys.stderr)
        sys.exit(128 + _interrupt_pending)
