"""A small on-disk cache for reference solutions that take seconds to compute.

Arrays are stored as ``.npz`` files under ``$PINN_CACHE`` (default ``~/.cache/pinn``), named
after the solver, its parameters and the source of the module that computes them (so an edited
solver never serves its predecessor's results); a file is written to a temporary name and renamed, so an
interrupted write never leaves a half-written cache entry. Where the folder cannot be written
the result is simply recomputed next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: Bump to invalidate every cached file when something a solver uses outside its own module changes.
VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("PINN_CACHE", Path.home() / ".cache" / "pinn"))


def cached(name: str, params: dict, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute()`` once per (``name``, ``params``); later calls load the saved arrays."""
    source = hashlib.sha256(Path(compute.__code__.co_filename).read_bytes()).hexdigest()
    key = json.dumps({"name": name, "params": params, "version": VERSION, "source": source}, sort_keys=True)
    path = cache_dir() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError):  # unreadable entry: recompute and replace it
            pass
    arrays = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass
    return arrays
