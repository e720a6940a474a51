r"""Values that depend on the collocation points alone, computed once per point set.

A residual such as Poisson's :math:`-\Delta u - f(x)` evaluates its source :math:`f` at every
step, and a Dirichlet condition its data :math:`g(x)`, at points that change only when the
trainer draws new ones. Each such evaluation is a few elementwise operations, and in a step
replayed as a CUDA graph every operation costs a few microseconds whatever its size (7 of the
51 operations of the 2-D Poisson step of ``benchmarks/step_kernels.py`` were its source and
boundary data).

While a :class:`PointCache` is active (:meth:`PointCache.active`), :func:`at_points` computes
``f(x)`` once for each of the point sets the cache tracks and hands out the stored value at later
calls. A stored value is brought up to date, in place, when its points have been written
since (a resampling copies new points into the tensors a captured step reads, which changes
their version counter): at the next call, or at :meth:`PointCache.refresh`, which the trainer
calls after such a copy, since a replayed graph reads the stored tensor without calling anything.

What is cached must be a function of the points alone: a manufactured source, prescribed
boundary or initial data (``pinn.conditions``' contract for data), the stacked point sets of
``derivatives.one_pass``, a hard constraint's base and scale with their derivatives; not data
that are drawn at random or change during training. A value is a tensor, a number, or a tuple
of them (``None`` among them): tensors are rewritten in place, numbers replaced (a captured
step keeps the number it was captured with, so what changes with the points belongs in a
tensor). A stored tensor counts as a point set in its own right: a function of it (of the
stacked sets, say) is stored too, and brought up to date after it. A stored value is handed
out to every caller: never modify it in place. A result that requires gradients (it depends
on something trained) is never stored, and nothing is stored while gradients are off (whether
it would require them cannot be seen then) or in inference mode, at points that require
gradients (the autograd engine differentiates through them), or at points the cache does not
track; at most :data:`MAX_STORED` values are (a function made anew at every call, say a lambda
inside ``residuals``, would otherwise add one per step). Under ``torch.compile`` the functions
run as they are: the compiler fuses them into the kernels around them.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Tensor

_ACTIVE: ContextVar[PointCache | None] = ContextVar("pinn_point_cache", default=None)

#: The most values one cache stores; later functions are computed at every call.
MAX_STORED = 64


def _memory(x: Tensor) -> tuple:
    """What identifies a point set: its memory, shape, strides, dtype and device (a detached
    view of a set, as the engines hand to residuals, is the same set)."""
    return x.data_ptr(), tuple(x.shape), x.stride(), x.dtype, x.device


@dataclass
class _Stored:
    fn: Callable[..., object]  # what computes it from the points
    value: Tensor | float | tuple
    versions: tuple[int, ...]  # the points' version counters when ``value`` was computed


class PointCache:
    """Stores functions of the tracked point sets (see the module's description).

    Args:
        uses_per_set: how many evaluations a point set serves before new points replace it (the
            trainer's ``resample_every``; ``inf`` where the points stay), for a function that
            can either store a value once per set or make a cheaper one at every evaluation
            (:func:`uses_per_set`).
    """

    def __init__(self, uses_per_set: float = math.inf):
        self.uses_per_set = uses_per_set
        self._sets: dict[tuple, Tensor] = {}  # memory -> the tracked set (held, so that it stays)
        # (key, the points' memories) -> value, in the order computed: a value computed from a
        # stored tensor comes after it, and is brought up to date after it
        self._stored: dict[tuple[Hashable, tuple], _Stored] = {}
        self._derived: dict[tuple, Tensor] = {}  # memory -> a stored tensor, usable as points
        self._uncached: set[Hashable] = set()  # functions whose results required gradients (MAX_STORED at most)

    def track(self, points: dict[str, Tensor]) -> None:
        """Store values at these point sets from now on (and forget those at sets no longer among them)."""
        sets = {_memory(x): x for x in points.values() if isinstance(x, Tensor)}
        if sets.keys() != self._sets.keys():
            self._sets, stored, self._stored, self._derived = sets, self._stored, {}, {}
            for (key, memories), entry in stored.items():  # in order: what a value is computed from comes first
                if all(m in sets or m in self._derived for m in memories):
                    self._keep((key, memories), entry)

    @contextlib.contextmanager
    def active(self, points: dict[str, Tensor]) -> Iterator[PointCache]:
        """Meanwhile, :func:`at_points` uses this cache, tracking ``points``."""
        self.track(points)
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def refresh(self) -> None:
        """Bring every stored value up to date with its points, in place."""
        for (_, memories), stored in self._stored.items():
            self._update([self._points(m) for m in memories], stored)

    def _points(self, memory: tuple) -> Tensor:
        return self._sets[memory] if memory in self._sets else self._derived[memory]

    def _keep(self, where: tuple[Hashable, tuple], stored: _Stored) -> None:
        self._stored[where] = stored
        if isinstance(stored.value, Tensor):
            self._derived.setdefault(_memory(stored.value), stored.value)

    def __len__(self) -> int:
        return len(self._stored)

    def value(self, key: Hashable, fn: Callable[..., object], *points: Tensor):
        """``fn(*points)``, stored under ``key`` where every one of ``points`` is a tracked set."""
        try:
            hash(key)
        except TypeError:  # a key that cannot be hashed (a callable dataclass, say): not stored
            return fn(*points)
        if key in self._uncached or not self._keeps(points):
            return fn(*points)
        memories = tuple(_memory(x) for x in points)
        found = self._stored.get((key, memories))
        if found is not None:
            return self._update(points, found)
        if not torch.is_grad_enabled() or len(self._stored) >= MAX_STORED:
            return fn(*points)
        value = fn(*points)
        parts = value if isinstance(value, tuple) else (value,)
        if any(isinstance(part, Tensor) and part.requires_grad for part in parts):
            if len(self._uncached) < MAX_STORED:
                self._uncached.add(key)
            return value
        # an expanded tensor is kept as one that can be rewritten
        parts = tuple(part.contiguous() if isinstance(part, Tensor) and not _writable(part) else part for part in parts)
        value = parts if isinstance(value, tuple) else parts[0]
        self._keep((key, memories), _Stored(fn, value, tuple(x._version for x in points)))
        return value

    def _keeps(self, points: tuple[Tensor, ...]) -> bool:
        """Whether values at ``points`` are kept: tracked sets (or stored tensors), outside
        inference mode, that the autograd engine does not differentiate through."""
        return (not torch.is_inference_mode_enabled() and not any(x.requires_grad or x.is_inference() for x in points)
                and all(_memory(x) in self._sets or _memory(x) in self._derived for x in points))

    @staticmethod
    def _update(points, stored: _Stored):
        versions = tuple(x._version for x in points)
        if versions != stored.versions:
            with torch.no_grad():
                fresh = stored.fn(*points)
            if isinstance(stored.value, tuple):
                if not (isinstance(fresh, tuple) and len(fresh) == len(stored.value)):
                    raise RuntimeError(f"{_name(stored.fn)} returned {type(fresh).__name__} at new points where it "
                                       f"returned a tuple of {len(stored.value)} before: a function of the points "
                                       "alone keeps its shape")
                stored.value = tuple(_rewritten(stored.fn, old, new) for old, new in zip(stored.value, fresh))
            else:
                stored.value = _rewritten(stored.fn, stored.value, fresh)
            stored.versions = versions
        return stored.value


def _name(fn: Callable) -> str:
    return repr(getattr(fn, "__qualname__", fn))


def _rewritten(fn: Callable, old, fresh):
    """A stored tensor ``old`` with ``fresh``'s numbers, written in place (a captured step reads
    it); a number (the same at any points) is replaced."""
    if not isinstance(old, Tensor):
        return fresh
    if not (isinstance(fresh, Tensor) and fresh.shape == old.shape):
        raise RuntimeError(
            f"{_name(fn)} returned {type(fresh).__name__} {tuple(getattr(fresh, 'shape', ()))} at new points where "
            f"it returned a tensor of shape {tuple(old.shape)} before, at as many: a function of the points alone "
            "keeps its shape")
    if fresh.data_ptr() != old.data_ptr():  # (the same memory: a view of the points)
        old.copy_(fresh)
    return old


def _writable(t: Tensor) -> bool:
    """Whether ``t`` can be written in place: no two of its elements share memory (as in an
    expanded tensor's)."""
    return all(stride != 0 or size == 1 for stride, size in zip(t.stride(), t.shape))


def at_points(key: Hashable, fn: Callable[..., object], *points: Tensor):
    """``fn(*points)``, from the active :class:`PointCache` where there is one and ``points``
    are among its sets; ``key`` names the function (the same key, the same function)."""
    if torch.compiler.is_compiling():  # first: the compiler cannot trace a context variable
        return fn(*points)
    cache = _ACTIVE.get()
    return fn(*points) if cache is None else cache.value(key, fn, *points)


def uses_per_set(*points: Tensor) -> float:
    """How many evaluations a value kept at ``points`` would serve: the active cache's
    ``uses_per_set`` where it keeps values there, 1 elsewhere (made at every call)."""
    cache = None if torch.compiler.is_compiling() else _ACTIVE.get()
    return 1 if cache is None or not cache._keeps(points) else cache.uses_per_set


def point_function(method: Callable[[object, Tensor], Tensor]) -> Callable[[object, Tensor], Tensor]:
    """Decorates a method ``f(self, x)`` that depends on the points ``x`` alone (a PDE's
    source): its values come from the active :class:`PointCache` (:func:`at_points`)."""
    @functools.wraps(method)
    def cached(self, x: Tensor) -> Tensor:
        return at_points((method, id(self)), lambda points: method(self, points), x)

    return cached
