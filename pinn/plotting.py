"""Figures of a solution and its error, rendered to arrays for the logger or written as PNG files
(no pyplot, no display). Every output of the PDE gets its own panel, titled with its name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from .checkpoint import write_atomically
from .geometry import SpaceTime


@dataclass
class Slice:
    """A solution sampled on a line (d = 1) or a plane slice (d > 1).

    ``coords`` is ``(R,)`` on a line and ``(2, R, R)`` on a slice; ``predicted`` and ``exact``
    (``None`` where no exact solution is known) are ``(R, C)`` or ``(R, R, C)`` for ``C``
    outputs, NaN outside the domain. ``labels`` name the two axes, and ``aspect`` is ``"equal"``
    where both are space and ``"auto"`` where one is time (seconds and metres share no scale).
    ``where`` says where the other coordinates are held (``"x2 = -0.5, t = 0.25"``; empty where
    there are none).
    """

    coords: np.ndarray
    predicted: np.ndarray
    exact: np.ndarray | None
    names: tuple[str, ...]
    labels: tuple[str, str] = ("x0", "x1")
    aspect: str = "equal"
    where: str = ""

    @property
    def title(self) -> str:
        """What a figure of the slice says above its panels: where the slice is held."""
        return f"slice at {self.where}" if self.where else ""

    @property
    def error(self) -> np.ndarray | None:
        return None if self.exact is None else np.abs(self.predicted - self.exact)


@torch.no_grad()
def solution_slice(pde, model: nn.Module, resolution: int, device, dtype) -> Slice:
    """Prediction and exact solution on a line (d = 1) or on the (x0, x1) slice through the
    point a quarter of the way along every other axis (d > 1), where the usual manufactured
    solutions are far from zero, or through the middle of the bounding box where that slice
    misses the domain (a ball in six or more dimensions). ``resolution`` (at least 2) points per
    axis, edges included."""
    lo, hi = pde.domain.bounds
    r = resolution
    labels, aspect = ("x0", "x1"), "equal"
    if isinstance(pde.domain, SpaceTime) and pde.domain.space.dim == 1:
        labels, aspect = ("x", "t"), "auto"  # (x, t): the slice is the whole space-time domain
    if pde.dim == 1:
        coords = torch.linspace(lo[0], hi[0], r, dtype=torch.float64)
        x, shape = coords.reshape(-1, 1), (r,)
        labels = ("x0", "")
    else:
        a = torch.linspace(lo[0], hi[0], r, dtype=torch.float64)
        b = torch.linspace(lo[1], hi[1], r, dtype=torch.float64)
        coords = torch.stack(torch.meshgrid(a, b, indexing="ij"))  # (2, r, r)
        for anchor in (lo + 0.25 * (hi - lo), (lo + hi) / 2):
            x = anchor.repeat(r * r, 1)
            x[:, 0], x[:, 1] = coords[0].reshape(-1), coords[1].reshape(-1)
            if pde.domain.contains(x).any():
                break
        shape = (r, r)
    outside = ~pde.domain.contains(x)
    predicted = model(x.to(device=device, dtype=dtype)).double().cpu()
    predicted[outside] = float("nan")
    exact = pde.exact(x)
    if exact is not None:
        exact = exact.clone()
        exact[outside] = float("nan")
        exact = exact.reshape(*shape, -1).numpy()
    names = tuple(getattr(pde, "outputs", ())) or tuple(f"u{k}" for k in range(predicted.shape[1]))
    where = _held(x[0, 2:].tolist(), time_last=isinstance(pde.domain, SpaceTime)) if pde.dim > 2 else ""
    return Slice(coords.numpy(), predicted.reshape(*shape, -1).numpy(), exact, names, labels, aspect, where)


def _held(values: list[float], *, time_last: bool) -> str:
    """The coordinates x2, x3, ... (the last one t where ``time_last``) held at ``values``."""
    names = [f"x{i}" for i in range(2, 2 + len(values))]
    if time_last:
        names[-1] = "t"
    space = len(values) - time_last
    parts = []
    if space > 2 and len(set(values[:space])) == 1:  # x2..x99 = -0.5
        parts.append(f"{names[0]}..{names[space - 1]} = {values[0]:.3g}")
    else:
        parts += [f"{n} = {v:.3g}" for n, v in zip(names[:space], values[:space])][:4] + (["..."] if space > 4 else [])
    if time_last:
        parts.append(f"t = {values[-1]:.3g}")
    return ", ".join(parts)


def _draw(fig: Figure, ax: Axes, s: Slice, values: np.ndarray, title: str, cmap: str, *,
          log: bool = False, overlay: np.ndarray | None = None) -> None:
    """One panel: a curve on a line, an image on a slice (``log``: a logarithmic y axis on a line;
    ``overlay``: the exact curve, dashed)."""
    if s.coords.ndim == 1:
        log = log and bool((values > 0).any())
        # on a log axis, points of zero error (on a hard constraint's boundary) are left out: at
        # 1e-300 they stretched the axis over 300 decades
        plot = ax.semilogy if log else ax.plot
        plot(s.coords, np.where(values > 0, values, np.nan) if log else values, label="predicted")
        if overlay is not None:
            ax.plot(s.coords, overlay, "--", label="exact")
            ax.legend()
        ax.set_xlabel(s.labels[0])
    else:
        # Each value sits at a grid point, edges included, so pixels reach half a step beyond.
        a, b = s.coords[0][:, 0], s.coords[1][0, :]
        da, db = (a[-1] - a[0]) / (len(a) - 1), (b[-1] - b[0]) / (len(b) - 1)
        extent = (a[0] - da / 2, a[-1] + da / 2, b[0] - db / 2, b[-1] + db / 2)
        image = ax.imshow(values.T, origin="lower", extent=extent, cmap=cmap, aspect=s.aspect)
        fig.colorbar(image, ax=ax)
        ax.set_xlabel(s.labels[0])
        ax.set_ylabel(s.labels[1])
    ax.set_title(title)


def _grid(rows: int, cols: int, dpi: int) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(5 * cols, 4 * rows), dpi=dpi)
    return fig, fig.subplots(rows, cols, squeeze=False)


def save_figures(s: Slice, folder: str | Path) -> list[Path]:
    """Write ``solution.png`` (every output) and, where the exact solution is known,
    ``error.png`` (every output's pointwise error) into ``folder``, each atomically."""
    folder = Path(folder)
    # (title, values, colour map, log axis, exact curve on a line)
    figures = {"solution.png": [(name, s.predicted[..., k], "viridis", False, None if s.exact is None else s.exact[..., k])
                                for k, name in enumerate(s.names)]}
    if s.error is not None:
        figures["error.png"] = [(f"|{name} - {name}_exact|", s.error[..., k], "magma", True, None)
                                for k, name in enumerate(s.names)]
    written = []
    for file_name, panels in figures.items():
        fig, axes = _grid(1, len(panels), 100)
        for ax, (title, values, cmap, log, exact) in zip(axes[0], panels):
            _draw(fig, ax, s, values, title, cmap, log=log, overlay=exact)
        if s.title:
            fig.suptitle(s.title)
        fig.tight_layout()
        path = write_atomically(folder / file_name, lambda f, fig=fig: FigureCanvasAgg(fig).print_png(f))
        written.append(path)
    return written


def solution_figure(s: Slice, *, title: str = "") -> np.ndarray:
    """Every output's prediction (with the exact curve on a line) and, where the exact solution
    is known, its pointwise error, one row per output; an ``(H, W, 3)`` uint8 image."""
    error = s.error
    fig, axes = _grid(len(s.names), 1 if error is None else 2, 80)
    for k, name in enumerate(s.names):
        exact = None if s.exact is None else s.exact[..., k]
        _draw(fig, axes[k, 0], s, s.predicted[..., k], f"predicted {name}", "viridis", overlay=exact)
        if error is not None:
            _draw(fig, axes[k, 1], s, error[..., k], f"|{name} - {name}_exact|", "magma", log=True)
    title = title or s.title
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
