"""Checkpoints written atomically and read back safely.

A checkpoint is written to a temporary file in the same folder and renamed over the old one,
so a crash during a save leaves the previous checkpoint intact. It is read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects: everything stored
is tensors, numbers, strings, lists and dicts.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import math
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

log = logging.getLogger("pinn")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, or not one of ours."""


REQUIRED_KEYS = ("format", "step", "model", "optimizer", "phase", "generator")
#: What to do about a checkpoint that cannot be read.
MOVE_ON = ("check that it is the checkpoint you meant (a run folder, or a file in its checkpoints/); a damaged one "
           "cannot be resumed: train in another folder, or move the file away")
FORMAT = "pinn-checkpoint-v1"


def _umask() -> int:
    """The process's file-creation mask: from Linux's /proc where it is there; elsewhere reading
    it means setting it, so it is set straight back (a moment in which another thread's new
    files would get 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_leftovers(path: str | Path) -> None:
    """Remove the temporary files that :func:`write_atomically` left beside ``path`` when its
    process was killed midway (a checkpoint's may be as large as the checkpoint)."""
    path = Path(path)
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        leftover.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    """Flush ``folder`` itself to disk: a rename is a change to the folder, and until that is
    written a power loss can undo it. Best effort: some systems cannot open or sync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(file)`` on a temporary file in ``path``'s folder, fsync it, rename it to
    ``path`` and fsync the folder: a crash or a full disk midway leaves the previous file intact,
    never half of one, and once this returns a power loss keeps the new file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp makes it private, 0600)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        # A full disk, a read-only folder: one line, not a traceback (torch.save wraps the OSError
        # in its own error; a file used wrongly is a bug, and an interrupt stays an interrupt).
        cause = exc if isinstance(exc, OSError) else (
            (exc.__cause__ or exc.__context__) if isinstance(exc, Exception) else None)
        if isinstance(cause, OSError) and not isinstance(cause, io.UnsupportedOperation):
            raise _unwritable(path, cause) from exc
        raise
    return path


def _unwritable(path: Path, exc: OSError) -> CheckpointError:
    return CheckpointError(f"cannot write {path} ({exc.strerror or exc}); the file there before, if any, is kept "
                           "as it was")


def write_text_atomically(path: str | Path, text: str) -> Path:
    """:func:`write_atomically` for UTF-8 text (``metrics.json`` and the like)."""
    return write_atomically(path, lambda f: f.write(text.encode()))


def write_json_atomically(path: str | Path, data: dict[str, Any]) -> Path:
    """:func:`write_text_atomically` of ``data`` as JSON, indented. JSON has no NaN or infinity
    (Python writes them, but strict readers refuse the file): a number that is not finite is
    written as ``null``, with a warning that names it."""
    replaced: list[str] = []

    def finite(value, name: str):
        if isinstance(value, dict):
            return {k: finite(v, f"{name}.{k}" if name else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v, f"{name}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, float) and not math.isfinite(value):
            replaced.append(f"{name}={value}")
            return None
        return value

    text = json.dumps(finite(data, ""), indent=2, allow_nan=False) + "\n"
    if replaced:
        log.warning("%s: %s not finite, written as null", Path(path).name, ", ".join(replaced))
    return write_text_atomically(path, text)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, rename)."""
    return write_atomically(path, lambda f: torch.save({"format": FORMAT, **payload}, f))


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a clear error for anything else.
    With ``mmap`` its tensors are mapped from the file and read only where used (for a look at
    its config without reading, say, a dense BFGS matrix of a gigabyte)."""
    if not str(path).strip():  # Path("") would be the current folder
        raise CheckpointError("no checkpoint given (an empty path); give a run folder or a .pt file")
    path = Path(path)
    if path.is_dir():  # a run folder, or its checkpoints folder
        found = [c for c in (path / "checkpoints" / "last.pt", path / "last.pt") if c.is_file()]
        if not found:
            raise CheckpointError(f"{path} is a folder without checkpoints/last.pt or last.pt; give a run folder or "
                                  "a .pt file")
        path = found[0]
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.suffix in (".json", ".yaml", ".log", ".png", ".csv") or path.name.startswith("events.out.tfevents"):
        raise CheckpointError(f"{path} is a record of a run or a sweep, not a checkpoint; give a run folder or a .pt file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        # Not torch.load's own message: it suggests weights_only=False, which would run whatever
        # code a foreign file holds.
        raise CheckpointError(f"{path} is damaged or incomplete, not a file written by torch.save, or one holding "
                              f"objects other than tensors and plain data, which are not loaded; {MOVE_ON}") from exc
    except Exception as exc:  # truncated files fail in many ways; the first line says which
        reason = (str(exc).strip().splitlines() or [""])[0]
        if "_use_new_zipfile_serialization" in reason:  # torch's advice, to the writer of a file it cannot map
            reason = "not the zip archive torch.save writes"
        raise CheckpointError(f"{path} is damaged or incomplete, not a readable pinn checkpoint "
                              f"({type(exc).__name__}: {reason}); {MOVE_ON}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or any(k not in payload for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not a pinn checkpoint (expected format {FORMAT!r})")
    return payload
