"""Figures of a solution and its error, rendered to arrays for the logger (no pyplot, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn


def _render(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


@torch.no_grad()
def solution_slice(pde, model: nn.Module, resolution: int, device, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Prediction and exact solution on a line (d = 1) or on the (x0, x1) slice through the
    point a quarter of the way along every other axis (d > 1), where the usual manufactured
    solutions are far from zero. Points outside the domain are NaN.

    Returns ``(coords, predicted, exact)``: ``(R,)`` and ``(R,)`` arrays in 1-D, ``(2, R, R)``
    and ``(R, R)`` in more; ``exact`` is ``None`` when the PDE has no exact solution.
    """
    lo, hi = pde.domain.bounds
    r = resolution
    if pde.dim == 1:
        coords = torch.linspace(lo[0], hi[0], r, dtype=torch.float64)
        x, shape = coords.reshape(-1, 1), (r,)
    else:
        a = torch.linspace(lo[0], hi[0], r, dtype=torch.float64)
        b = torch.linspace(lo[1], hi[1], r, dtype=torch.float64)
        coords = torch.stack(torch.meshgrid(a, b, indexing="ij"))  # (2, r, r)
        x = (lo + 0.25 * (hi - lo)).repeat(r * r, 1)
        x[:, 0], x[:, 1] = coords[0].reshape(-1), coords[1].reshape(-1)
        shape = (r, r)
    outside = ~pde.domain.contains(x)
    predicted = model(x.to(device=device, dtype=dtype))[:, 0].double().cpu()
    predicted[outside] = float("nan")
    exact = pde.exact(x)
    if exact is not None:
        exact = exact[:, 0].clone()
        exact[outside] = float("nan")
        exact = exact.reshape(shape).numpy()
    return coords.numpy(), predicted.reshape(shape).numpy(), exact


def save_figures(coords: np.ndarray, predicted: np.ndarray, exact: np.ndarray | None, folder: str | Path) -> list[Path]:
    """Write ``solution.png`` (and ``error.png`` where the exact solution is known) into ``folder``."""
    folder = Path(folder)
    written = []
    panels = [("solution.png", "predicted u", predicted, "viridis")]
    if exact is not None:
        panels.append(("error.png", "|u - u_exact|", np.abs(predicted - exact), "magma"))
    for name, title, values, cmap in panels:
        fig = Figure(figsize=(5, 4), dpi=100)
        ax = fig.subplots()
        if coords.ndim == 1:
            ax.plot(coords, values)
            ax.set_xlabel("x0")
        else:
            extent = (coords[0].min(), coords[0].max(), coords[1].min(), coords[1].max())
            fig.colorbar(ax.imshow(values.T, origin="lower", extent=extent, cmap=cmap), ax=ax)
            ax.set_xlabel("x0")
            ax.set_ylabel("x1")
        ax.set_title(title)
        fig.tight_layout()
        FigureCanvasAgg(fig).print_png(str(folder / name))
        written.append(folder / name)
    return written


def solution_figure(coords: np.ndarray, predicted: np.ndarray, exact: np.ndarray | None, *,
                    labels: tuple[str, str] = ("x0", "x1"), title: str = "") -> np.ndarray:
    """Predicted field and pointwise error on a line (``coords`` ``(R,)``) or a slice
    (``coords`` ``(2, R, R)``, fields ``(R, R)``); returns an ``(H, W, 3)`` uint8 image."""
    panels = 1 if exact is None else 2
    fig = Figure(figsize=(5 * panels, 4), dpi=80)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if coords.ndim == 1:
        axes[0].plot(coords, predicted, label="predicted")
        if exact is not None:
            axes[0].plot(coords, exact, "--", label="exact")
            axes[1].semilogy(coords, np.abs(predicted - exact) + 1e-300)
            axes[1].set_title("|error|")
        axes[0].legend()
        axes[0].set_title("u")
    else:
        extent = (coords[0].min(), coords[0].max(), coords[1].min(), coords[1].max())
        im = axes[0].imshow(predicted.T, origin="lower", extent=extent, cmap="viridis")
        fig.colorbar(im, ax=axes[0])
        axes[0].set_title("predicted u")
        if exact is not None:
            im = axes[1].imshow(np.abs(predicted - exact).T, origin="lower", extent=extent, cmap="magma")
            fig.colorbar(im, ax=axes[1])
            axes[1].set_title("|error|")
        for ax in axes:
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _render(fig)
