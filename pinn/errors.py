"""Exceptions that carry a message meant for the user, not a traceback."""

import math


class ConfigError(ValueError):
    """An invalid setting: the message names the setting, what was wrong, and the valid choices."""


class PDEError(ValueError):
    """A PDE's own code gave what training cannot use (a residual, reference values, boundary
    data, observations or a hard constraint's functions of the wrong shape, a loss that is not
    a number, a point set read but not asked for, points outside its own domain): the message
    names what was wrong and how to fix it."""


class PreflightError(RuntimeError):
    """The operator exactness check failed on this device and dtype; training would be meaningless."""


def check_positive(name: str, value, *, integer: bool = True, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a positive (or non-negative) number."""
    kind = "an integer" if integer else "a finite number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(value, bool) or not ok_type or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {kind} {bound}; got {value!r}")


def check_flag(name: str, value) -> bool:
    """Raise :class:`ConfigError` unless ``value`` is ``True`` or ``False``, and return it.

    A YAML or command-line ``no``/``off``/``0`` arrives as a string or a number, and Python
    would treat a non-empty string as true: a switch set to ``off`` would switch the feature on.
    """
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false; got {value!r}")
    return value


def check_auto_flag(name: str, value) -> bool | str:
    """``auto``, ``true`` or ``false`` (a bool), nothing else (not 1 or 0.0, which compare equal
    to the bools but are not flags)."""
    if value == "auto" or isinstance(value, bool):
        return value
    raise ConfigError(f"{name} must be auto, true or false; got {value!r}")


def check_choice(name: str, value, choices) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``, listing them."""
    if value not in choices:
        shown = ", ".join("null" if c is None else str(c) for c in choices)  # as YAML and overrides spell None
        raise ConfigError(f"unknown {name} {value!r}; valid choices: {shown}")
